"""Recording deliveries: one insert-or-read per claim, and concurrent claims in one command.

A claim first *records* the delivery: an upsert that only inserts (`$setOnInsert`) and, when the
document already exists, reads it instead (projection without the payload). New deliveries, the
vast majority, are claimed by that one command; so is every duplicate and every delivery being
processed elsewhere, because what was read answers them. Only a delivery that is `failed`, or
`processing` with an expired lease, takes a second, conditional command (`DeliveryLog.reclaim`)
that takes the lease atomically, so two replicas never both win it.

The record is a plain operator update rather than an update pipeline: MongoDB parses and applies
it with less work, and the embedded mongoeco store spends about half the CPU on it (see
docs/performance.md). Claims that arrive while a record is in flight are sent together as one
unordered `update` command when it returns (natural batching: a lone claim never waits for a
timer, and at one sender nothing changes); the inserted ones are told apart by the upserted ids
of the reply, the others are read with one `find`. The batching itself is `batching.Batcher`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bson.errors import BSONError
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from clerk_sync.storage.batching import outcome

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

type Before = dict[str, Any] | None
type Outcome = Before | BaseException

#: what a claim reads of an existing delivery: everything but the (possibly large) payload
WITHOUT_PAYLOAD = {"payload": 0}
_DUPLICATE_KEY = 11000


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt to record, or take over, the delivery `svix_id`."""

    svix_id: str
    target: str
    token: str
    now: datetime
    lease_until: datetime | None
    on_insert: Mapping[str, Any]

    def document(self) -> dict[str, Any]:
        """The delivery as this claim inserts it when it is new (`_id` comes from the filter)."""
        return {
            "status": self.target,
            "lease_until": self.lease_until,
            "lease_token": self.token,
            "last_attempt_at": self.now,
            "attempts": 1,
            "handlers": {},
            "received_at": self.now,
            **self.on_insert,
        }

    def record(self) -> UpdateOne:
        return UpdateOne({"_id": self.svix_id}, {"$setOnInsert": self.document()}, upsert=True)


def claimable(stored: Mapping[str, Any], now: datetime) -> bool:
    """Whether an existing delivery may be taken over: without a status, `failed`, or
    `processing` whose lease has expired or that has none (held by nobody). The same condition
    as `DeliveryLog.reclaim`'s pipeline, where a missing lease compares below any date."""
    status = stored.get("status")
    if status is None or status == "failed":
        return True
    lease = stored.get("lease_until")
    return status == "processing" and (lease is None or lease < now)


async def record_one(collection: AsyncIOMotorCollection[dict[str, Any]], claim: Claim) -> Before:
    """Insert the delivery, or read it (without payload) when it exists; None when inserted."""
    try:
        return await collection.find_one_and_update(
            {"_id": claim.svix_id},
            {"$setOnInsert": claim.document()},
            projection=WITHOUT_PAYLOAD,
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
    except OperationFailure as error:
        if error.code != _DUPLICATE_KEY:
            raise  # the caller decides whether the document is at fault
        # a concurrent insert of the same id won the race: it exists now
        found = await collection.find_one({"_id": claim.svix_id}, WITHOUT_PAYLOAD)
        if found is None:
            # not this id's race (a unique index of another field), or it is gone again:
            # nothing was recorded, so this must not read as an insert
            raise
        return found


async def record_many(
    collection: AsyncIOMotorCollection[dict[str, Any]], claims: Sequence[Claim]
) -> list[Outcome]:
    """Record several claims in one `update` command, then read the ones that existed.

    Returns, per claim, None (inserted), the stored document, or the error that claim alone
    met. A batch the driver cannot encode (a payload BSON cannot hold) is recorded one claim
    at a time, so that one bad payload does not fail the others."""
    try:
        written = await collection.bulk_write([c.record() for c in claims], ordered=False)
        inserted = set(written.upserted_ids or {})
        refused: dict[int, BaseException] = {}
    except BulkWriteError as error:
        inserted = {int(u["index"]) for u in error.details.get("upserted", [])}
        refused = {
            int(e["index"]): OperationFailure(e.get("errmsg", "write refused"), e.get("code"))
            for e in error.details.get("writeErrors", [])
            if e.get("code") != _DUPLICATE_KEY  # lost an insert race: it exists, read it below
        }
    except (BSONError, OverflowError):
        return [await outcome(record_one(collection, c)) for c in claims]
    existing = [c.svix_id for i, c in enumerate(claims) if i not in inserted and i not in refused]
    stored: dict[str, dict[str, Any]] = {}
    if existing:
        cursor = collection.find({"_id": {"$in": existing}}, WITHOUT_PAYLOAD)
        stored = {doc["_id"]: doc async for doc in cursor}
    results: list[Outcome] = []
    for i, c in enumerate(claims):
        if i in inserted:
            results.append(None)
        elif i in refused:
            results.append(refused[i])
        elif c.svix_id in stored:
            results.append(stored[c.svix_id])
        else:  # removed between the two commands (retention, `events purge`): record it again
            results.append(await outcome(record_one(collection, c)))
    return results
