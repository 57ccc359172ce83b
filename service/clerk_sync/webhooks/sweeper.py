"""The stale-delivery sweeper: re-runs deliveries a crash left `processing`, with no command run.

A delivery whose attempt died (SIGKILL, OOM, a lost node) before its outcome was written stays
`processing` with an expired lease until Svix redelivers it, which may be hours away or never.
Every CLERK_SYNC_STALE_SWEEP_SECONDS one replica at a time (the `stale-sweeper` lease) replays
them through the `Receiver`, as `clerk-sync events replay --stale` does: only handlers that have
not succeeded run, under the same takeover rule, so a sweep racing a redelivery runs nothing
twice. Every replica sets `clerk_sync_stale_deliveries` to what is still stale after its look.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from clerk_sync.errors import StoreUnavailable
from clerk_sync.storage.leases import LEASES, Lease

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.observability.metrics import Metrics
    from clerk_sync.storage.store import Store
    from clerk_sync.webhooks.pipeline import Receiver

LEASE_NAME = "stale-sweeper"
#: deliveries replayed per sweep at most; the rest wait for the next one
BATCH = 100


def stale_query(now: datetime) -> dict[str, Any]:
    """Deliveries left `processing` by an attempt whose lease has expired."""
    return {"status": "processing", "lease_until": {"$lt": now}}


class Sweeper:
    """One replica's sweeper; `run` loops until cancelled."""

    def __init__(
        self,
        store: Store,
        receiver: Receiver,
        metrics: Metrics,
        log: FilteringBoundLogger,
        interval: float,
    ) -> None:
        self.store, self.receiver, self.metrics, self.log = store, receiver, metrics, log
        self.interval = interval
        holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease = Lease(store.db[LEASES], LEASE_NAME, holder)
        self.holding = False

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.sweep()
                except StoreUnavailable as error:  # MongoDB away: the monitor says so
                    self.log.warning("stale_sweep_skipped", error=str(error))
                except Exception:  # a bug must not end the sweeping for good
                    self.log.exception("stale_sweep_failed")
        finally:
            if self.holding:  # at shut-down: the next replica need not wait for it to expire
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.lease.release()

    async def sweep(self) -> int:
        """Replay the stale deliveries if this replica holds the lease; how many it replayed."""
        now = self._now()
        replayed = 0
        self.holding = await self.lease.take(now, timedelta(seconds=self.interval * 3))
        if self.holding:
            for svix_id in await self._stale_ids(now):
                answer = await self.receiver.replay(svix_id)
                replayed += 1
                self.log.info(
                    "stale_delivery_replayed",
                    svix_id=svix_id,
                    outcome=answer.outcome,
                    status=answer.status,
                )
        await self._count()
        return replayed

    async def _stale_ids(self, now: datetime) -> list[str]:
        events = self.store.events.collection
        cursor = events.find(stale_query(now), {"_id": 1}).sort("received_at", 1).limit(BATCH)
        try:
            return [d["_id"] async for d in cursor]
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {type(error).__name__}") from error

    async def _count(self) -> None:
        events = self.store.events.collection
        try:
            stale = await events.count_documents(stale_query(self._now()))
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {type(error).__name__}") from error
        self.metrics.stale_deliveries.set(stale)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.receiver.clock(), tz=UTC)
