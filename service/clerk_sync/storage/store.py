"""MongoDB access: the motor client, the ODMantic engine, indexes and the delivery log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from motor.motor_asyncio import AsyncIOMotorClient
from odmantic import AIOEngine
from pymongo import IndexModel, MongoClient, ReturnDocument, UpdateOne
from pymongo.errors import (
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from clerk_sync.errors import StoreUnavailable
from clerk_sync.storage.batching import Batcher
from clerk_sync.storage.claims import (
    WITHOUT_PAYLOAD,
    Before,
    Claim,
    claimable,
    record_many,
    record_one,
)
from clerk_sync.storage.finishing import finish_update
from clerk_sync.storage.indexes import REPLACED, query_indexes
from clerk_sync.storage.reach import Reachability

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection
    from odmantic import Model

EVENTS = "webhook_events"
TERMINAL = frozenset({"processed", "ignored", "rejected"})
SERVER_SELECTION_MS = 2000
INDEX_NOT_FOUND = 27  # MongoDB's error code for dropping an index that is not there


def unavailable(error: BaseException) -> bool:
    """Whether a pymongo error means the server cannot be reached (vs. a bad command)."""
    return isinstance(error, ConnectionFailure | ServerSelectionTimeoutError)


class Store:
    """One motor client and ODMantic engine per app; closed on shut-down."""

    def __init__(self, url: str, database: str) -> None:
        self.reach = Reachability()
        self.client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=SERVER_SELECTION_MS,
            connectTimeoutMS=SERVER_SELECTION_MS,
            appname="clerk-sync",
            event_listeners=[self.reach],
        )
        # the driver's own client under motor (motor's stub calls the property a method)
        driver: MongoClient[dict[str, Any]] = self.client.delegate
        self.reach.watch(lambda: driver.topology_description)
        self.engine = AIOEngine(client=self.client, database=database)
        self.db = self.client[database]
        self.events = DeliveryLog(self.db[EVENTS])

    async def ping(self, within: float = 1.0) -> bool:
        """True when the server answers a ping within `within` seconds."""
        try:
            async with asyncio.timeout(within):
                await self.client.admin.command("ping")
        except (TimeoutError, PyMongoError):
            return False
        return True

    async def ensure_indexes(self, models: Iterable[type[Model]], retention_days: int) -> None:
        """Create the delivery log's indexes (TTL included) and those of every plugin model."""
        await self.events.ensure_indexes(retention_days)
        await self.engine.configure_database(list(models), update_existing_indexes=True)

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True, slots=True)
class Finished:
    """The outcome of one attempt, to be written under the attempt's lease token."""

    svix_id: str
    token: str
    status: str
    outcomes: Mapping[str, Mapping[str, Any]]


class DeliveryLog:
    """The `webhook_events` collection: claims, leases and per-handler outcomes."""

    def __init__(self, collection: AsyncIOMotorCollection[dict[str, Any]]) -> None:
        self.collection = collection
        self._claims = Batcher[Claim, Before](
            partial(record_one, collection), partial(record_many, collection)
        )

    async def ensure_indexes(self, retention_days: int) -> None:
        ttl = int(timedelta(days=retention_days).total_seconds())
        existing = await self.collection.index_information()
        current = existing.get("received_at_ttl", {}).get("expireAfterSeconds")
        if current is not None and current != ttl:
            await self._drop_index("received_at_ttl")
        for name in REPLACED:
            if name in existing:
                await self._drop_index(name)
        ttl_index = IndexModel("received_at", name="received_at_ttl", expireAfterSeconds=ttl)
        await self.collection.create_indexes([ttl_index, *query_indexes()])

    async def _drop_index(self, name: str) -> None:
        """Drop `name`; one that another worker or replica starting at once dropped first is
        gone as wanted."""
        try:
            await self.collection.drop_index(name)
        except OperationFailure as error:
            if error.code != INDEX_NOT_FOUND:
                raise

    async def claim(
        self,
        svix_id: str,
        *,
        target: str,
        token: str,
        now: datetime,
        lease_until: datetime | None,
        on_insert: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        """Record or re-claim a delivery; return the document as it was before (no payload).

        A delivery is claimable when it is new, `failed`, or `processing` with an expired lease;
        a claim sets `status` to `target` and takes the lease. Otherwise nothing changes. A new
        delivery, a duplicate and one held by another attempt cost one command (shared with the
        claims sent beside it, see `clerk_sync.storage.claims`); a takeover costs two.
        """
        wanted = Claim(svix_id, target, token, now, lease_until, on_insert)
        try:
            before = await self._claims.submit(wanted)
            if before is None or not claimable(before, now):
                return before
            return await self.reclaim(wanted)
        except PyMongoError as error:
            if unavailable(error):
                raise StoreUnavailable("MongoDB is unavailable") from error
            raise  # e.g. OperationFailure: the caller decides whether the document is at fault

    async def reclaim(self, claim: Claim) -> dict[str, Any] | None:
        """Take over a delivery atomically if it is still claimable; the document before."""
        takeable = {
            "$or": [
                {"$eq": [{"$type": "$status"}, "missing"]},
                {"$eq": ["$status", "failed"]},
                {
                    "$and": [
                        {"$eq": ["$status", "processing"]},
                        {"$lt": ["$lease_until", claim.now]},
                    ]
                },
            ]
        }

        def when_claimed(value: object, current: str) -> dict[str, Any]:
            return {"$cond": [takeable, {"$literal": value}, f"${current}"]}

        stage: dict[str, Any] = {
            "status": when_claimed(claim.target, "status"),
            "lease_until": when_claimed(claim.lease_until, "lease_until"),
            "lease_token": when_claimed(claim.token, "lease_token"),
            "last_attempt_at": when_claimed(claim.now, "last_attempt_at"),
            "attempts": {
                "$cond": [takeable, {"$add": [{"$ifNull": ["$attempts", 0]}, 1]}, "$attempts"]
            },
            "handlers": {"$ifNull": ["$handlers", {"$literal": {}}]},
            "received_at": {"$ifNull": ["$received_at", {"$literal": claim.now}]},
        }
        # removed since it was read (retention): the upsert records it again
        for name, value in claim.on_insert.items():
            stage[name] = {"$ifNull": [f"${name}", {"$literal": value}]}
        return await self.collection.find_one_and_update(
            {"_id": claim.svix_id},
            [{"$set": stage}],
            projection=WITHOUT_PAYLOAD,
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )

    async def take_for(
        self,
        svix_id: str,
        keys: Iterable[str],
        *,
        token: str,
        now: datetime,
        lease_until: datetime,
    ) -> dict[str, Any] | None:
        """Take the lease of a recorded delivery to run the handlers `keys` (catch-up); the
        whole document before, or None when it is not takeable now.

        Takeable: finished (`processed`, `ignored`, `failed`), not redacted, and at least one of
        `keys` not yet `ok`. A `processing` delivery belongs to an attempt, running or
        interrupted, whose other handlers may not have run: it is left to that attempt, or to
        whatever finishes an interrupted one (a redelivery, the sweeper, `events replay
        --stale`), so no handler runs twice at once and none is skipped; `rejected` ones hold
        no event."""
        takeable = {
            "_id": svix_id,
            "status": {"$in": ["processed", "ignored", "failed"]},
            "redacted": {"$ne": True},  # its handlers would see "[redacted]", not the event
            "$or": [{f"handlers.{key}.status": {"$ne": "ok"}} for key in keys],
        }
        taken = {
            "status": "processing",
            "lease_until": lease_until,
            "lease_token": token,
            "last_attempt_at": now,
        }
        try:
            return await self.collection.find_one_and_update(
                takeable,
                {"$set": taken, "$inc": {"attempts": 1}},
                return_document=ReturnDocument.BEFORE,
            )
        except PyMongoError as error:
            raise StoreUnavailable("MongoDB is unavailable") from error

    async def finish(
        self,
        svix_id: str,
        *,
        token: str,
        status: str,
        outcomes: Mapping[str, Mapping[str, Any]],
    ) -> bool:
        """Write handler outcomes and the final status if this attempt still holds the lease.

        The write of `finishing.finish_update`; the lease token of the document it found
        says whether this attempt still owned the delivery.
        """
        query, update = finish_update(svix_id, token, status, outcomes)
        try:
            before = await self.collection.find_one_and_update(
                query,
                update,
                projection={"_id": 0, "lease_token": 1},
                return_document=ReturnDocument.BEFORE,
            )
        except PyMongoError as error:
            raise StoreUnavailable("MongoDB is unavailable") from error
        return before is not None and before.get("lease_token") == token

    async def finish_many(self, finished: Iterable[Finished]) -> None:
        """Write several `processed` outcomes in one `update` command (group commit).

        Each update keeps the lease guard of `finish`: it changes a delivery only while the
        attempt that queued the outcome still holds its lease token, so an outcome that comes
        too late for a takeover changes nothing."""
        updates = [
            UpdateOne(*finish_update(f.svix_id, f.token, f.status, f.outcomes)) for f in finished
        ]
        if not updates:
            return
        try:
            await self.collection.bulk_write(updates, ordered=False)
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB refused the outcomes: {error}") from error

    async def get(self, svix_id: str) -> dict[str, Any] | None:
        try:
            return await self.collection.find_one({"_id": svix_id})
        except PyMongoError as error:
            raise StoreUnavailable("MongoDB is unavailable") from error
