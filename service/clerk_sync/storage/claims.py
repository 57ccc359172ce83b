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
of the reply, the others are read with one `find`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bson.errors import BSONError
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from clerk_sync.errors import StoreUnavailable

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
        outcome = await collection.bulk_write([c.record() for c in claims], ordered=False)
        inserted = set(outcome.upserted_ids or {})
        refused: dict[int, BaseException] = {}
    except BulkWriteError as error:
        inserted = {int(u["index"]) for u in error.details.get("upserted", [])}
        refused = {
            int(e["index"]): OperationFailure(e.get("errmsg", "write refused"), e.get("code"))
            for e in error.details.get("writeErrors", [])
            if e.get("code") != _DUPLICATE_KEY  # lost an insert race: it exists, read it below
        }
    except (BSONError, OverflowError):
        return [await _outcome(record_one(collection, c)) for c in claims]
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
            results.append(await _outcome(record_one(collection, c)))
    return results


async def _outcome(pending: Awaitable[Before]) -> Outcome:
    try:
        return await pending
    except (PyMongoError, BSONError, OverflowError) as error:
        return error


class ClaimBatcher:
    """Sends a lone claim at once; claims that arrive while one is in flight wait for it and
    then go out together. One per delivery log, used from one event loop."""

    def __init__(
        self,
        one: Callable[[Claim], Awaitable[Before]],
        many: Callable[[Sequence[Claim]], Awaitable[list[Outcome]]],
    ) -> None:
        self._one, self._many = one, many
        self._waiting: list[tuple[Claim, asyncio.Future[Before]]] = []
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, claim: Claim) -> Before:
        if self._busy:
            future: asyncio.Future[Before] = asyncio.get_running_loop().create_future()
            self._waiting.append((claim, future))
            return await future
        self._busy = True
        try:
            return await self._one(claim)
        finally:
            self._next()

    def _next(self) -> None:
        """Send whatever waited for the command that just returned, or become idle."""
        if not self._waiting:
            self._busy = False
            return
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Claim, asyncio.Future[Before]]]) -> None:
        claims = [claim for claim, _ in batch]
        try:
            if len(claims) == 1:
                results = [await _outcome(self._one(claims[0]))]
            else:
                results = await self._many(claims)
        except (PyMongoError, StoreUnavailable) as error:
            results = [error] * len(batch)
        except BaseException as error:  # cancelled, or a bug: no waiter may hang
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            raise
        finally:
            self._next()
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its request went away; the claim stands, its lease expires
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
