"""Group commit of successful outcomes: queued after the 200, written in one command.

DESIGN.md ("What the contract guarantees, and what it leaves free") lets the `processed` outcome
of a successful delivery follow the answer, batched with others, if it is written within one
second and at shut-down. The receiver queues it here with the attempt's lease token; `run`
writes whatever is queued at most every CLERK_SYNC_OUTCOME_FLUSH_SECONDS, or as soon as
MAX_BATCH outcomes wait, in `update` commands of at most MAX_BATCH outcomes sent one after
another, each delivery still guarded by its lease token. The bound keeps one write short: the
server works through a command's statements before the claims and handler writes queued
behind it, and on a slow store a batch of everything from a quarter second held every request
up at once (docs/performance.md). A failed write is logged, counted and
retried at the next interval; nothing is dropped while the process lives. A crash before the
write leaves the delivery `processing`; its lease expires and a redelivery or
`clerk-sync events replay --stale` runs its handlers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import TYPE_CHECKING

from pymongo.errors import PyMongoError

from clerk_sync.errors import StoreUnavailable

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.observability.metrics import Metrics
    from clerk_sync.storage.store import DeliveryLog, Finished

#: attempts of the last write at shut-down, when MongoDB refuses the first
SHUTDOWN_ATTEMPTS = 3
#: outcomes written by one command; this many queued are written without waiting any longer
MAX_BATCH = 16


class OutcomeWriter:
    """The queued outcomes of one app and the task that writes them."""

    def __init__(
        self, events: DeliveryLog, interval: float, metrics: Metrics, log: FilteringBoundLogger
    ) -> None:
        self.events, self.interval, self.metrics, self.log = events, interval, metrics, log
        self.queued: dict[str, Finished] = {}
        self.writing: dict[str, Finished] = {}
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._flushing = asyncio.Lock()

    def queue(self, finished: Finished) -> None:
        """Write `finished` with the next batch (at most `interval` seconds from now)."""
        self.queued[finished.svix_id] = finished
        self._wake.set()
        if len(self.queued) >= MAX_BATCH:
            self._full.set()

    def holds(self, svix_id: str) -> bool:
        """Whether an outcome of `svix_id` is queued or being written by this process."""
        return svix_id in self.queued or svix_id in self.writing

    async def run(self) -> None:
        """Write the queue `interval` seconds after something was queued, or once MAX_BATCH
        outcomes wait; until cancelled."""
        while True:
            await self._wake.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.interval)
            self._wake.clear()
            self._full.clear()
            if not await self.flush():
                self._wake.set()
                await asyncio.sleep(self.interval)  # retried a whole interval later, full or not

    async def flush(self) -> bool:
        """Write everything queued, MAX_BATCH outcomes a command; False when a command failed
        (what it and the commands after it held is queued again). A flush called while one is
        writing (the console's replay, shut-down) waits for it, then writes what is left."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        if not self.queued:
            return True
        self.writing, self.queued = self.queued, {}
        while self.writing:
            batch = list(itertools.islice(self.writing.values(), MAX_BATCH))
            try:
                await self.events.finish_many(batch)
            except (StoreUnavailable, PyMongoError) as error:
                self._requeue()
                self.metrics.outcome_flush_failures.inc()
                self.log.warning("outcomes_not_written", deliveries=len(batch), error=str(error))
                return False
            except BaseException:  # cancelled mid-write: whether it landed is unknown, so keep it
                self._requeue()
                raise
            for written in batch:
                del self.writing[written.svix_id]
            self.metrics.outcome_batch_size.observe(len(batch))
        return True

    async def close(self) -> None:
        """The last write, at shut-down before the store closes; retried a few times."""
        for _ in range(SHUTDOWN_ATTEMPTS):
            if await self.flush():
                return
        self.log.error(
            "outcomes_lost_at_shutdown",
            deliveries=len(self.queued),
            remedy="their leases expire; `clerk-sync events replay --stale` finishes them",
        )

    def _requeue(self) -> None:
        """Put the batch being written back, under anything queued for the same id since."""
        self.queued = {**self.writing, **self.queued}
        self.writing = {}
