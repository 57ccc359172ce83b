"""The accept path's second half: run a claimed delivery's handlers, then write or queue the
outcome and answer (DESIGN.md webhook contract, step 6). Plain async, no Quart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clerk_sync.errors import StoreUnavailable
from clerk_sync.plugins import Context, Router, Subscription
from clerk_sync.storage.store import Finished
from clerk_sync.webhooks.answers import Answer, DeliveryAccepted, DeliveryBusy, DeliveryFailed
from clerk_sync.webhooks.handlers import run_handler

if TYPE_CHECKING:
    from odmantic import AIOEngine
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.events import Event
    from clerk_sync.observability.metrics import Metrics
    from clerk_sync.settings import Settings
    from clerk_sync.storage.reach import Reachability
    from clerk_sync.storage.store import DeliveryLog
    from clerk_sync.webhooks.outcomes import OutcomeWriter

#: seconds of lease that must remain after the next flush for an outcome to be queued
_QUEUE_MARGIN = 2.0


@dataclass(slots=True)
class Delivery:
    """What the delivery's log line reports, filled in as the pipeline learns it."""

    svix_id: str
    event_type: str | None = None
    handlers: dict[str, str] = field(default_factory=dict)


class Dispatcher:
    """Runs the pending handlers of one claimed delivery and settles its outcome. Built once
    per app by the `Receiver`, which attaches the started store to it."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        log: FilteringBoundLogger,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.settings, self.router, self.log, self.metrics = settings, router, log, metrics
        self.clock = clock
        self.timeout = settings.clerk_sync_handler_timeout
        self.events: DeliveryLog | None = None
        self.engine: AIOEngine | None = None
        self.reach: Reachability | None = None
        self.writer: OutcomeWriter | None = None
        self._plugin_logs: dict[str, FilteringBoundLogger] = {}

    async def dispatch(
        self, event: Event, subs: list[Subscription], d: Delivery, token: str, lease_end: float
    ) -> Answer:
        """Run `subs` under the lease `token` (ending at `lease_end`); each handler's status
        goes into `d.handlers` before the outcome is written."""
        by_key, store_down = await self.run(event, subs)
        d.handlers = {k: v["status"] for k, v in by_key.items()}
        return await self._settle(d.svix_id, token, by_key, store_down, lease_end)

    async def run(
        self, event: Event, subs: Sequence[Subscription]
    ) -> tuple[dict[str, dict[str, Any]], bool]:
        """Run `subs` concurrently, each isolated and under the handler timeout; their outcomes
        for the delivery record by handler key, and whether MongoDB was lost meanwhile."""
        if len(subs) == 1:
            results = [await self._run(subs[0], event)]
        else:
            results = await asyncio.gather(*(self._run(sub, event) for sub in subs))
        by_key = {sub.key: outcome for sub, (outcome, _) in zip(subs, results, strict=True)}
        return by_key, any(down for _, down in results)

    async def _settle(
        self,
        svix_id: str,
        token: str,
        by_key: dict[str, dict[str, Any]],
        store_down: bool,
        lease_end: float,
    ) -> Answer:
        ok = all(o["status"] == "ok" for o in by_key.values())
        status = "processed" if ok else "failed"
        if ok and self._can_queue(lease_end):
            assert self.writer is not None
            # written after the answer, within the flush interval
            self.writer.queue(Finished(svix_id, token, status, by_key))
            return Answer.of(
                200, DeliveryAccepted(status="processed", svix_id=svix_id), "processed"
            )
        assert self.events is not None
        owned = await self.events.finish(svix_id, token=token, status=status, outcomes=by_key)
        if not owned:
            return Answer.of(
                409,
                DeliveryBusy(error="lease expired; another attempt took over", svix_id=svix_id),
                "in_progress",
            )
        if ok:
            return Answer.of(
                200, DeliveryAccepted(status="processed", svix_id=svix_id), "processed"
            )
        if store_down:  # recorded as failed; the retry re-runs only what did not succeed
            raise StoreUnavailable("a handler could not reach MongoDB")
        failed = DeliveryFailed(status="failed", svix_id=svix_id, error="a handler failed")
        return Answer.of(500, failed, "failed")

    def _can_queue(self, lease_end: float) -> bool:
        """Group commit only while the lease outlasts the next flush by a clear margin; a
        failed outcome is never queued (a 500 only once it is durable)."""
        if self.writer is None:
            return False
        return self.clock() + self.writer.interval + _QUEUE_MARGIN < lease_end

    async def _run(self, sub: Subscription, event: Event) -> tuple[dict[str, Any], bool]:
        assert self.engine is not None
        assert self.reach is not None
        plugin_log = self._plugin_logs.get(sub.plugin)
        if plugin_log is None:  # bound once per plugin and app, then per delivery
            plugin_log = self._plugin_logs[sub.plugin] = self.log.bind(plugin=sub.plugin)
        ctx: Context[Any] = Context(
            engine=self.engine,
            log=plugin_log.bind(svix_id=event.svix_id, event_type=event.type),
            settings=self.router.plugin_settings(sub.plugin),
            app_settings=self.settings,
            plugin=sub.plugin,
        )
        return await run_handler(sub, event, ctx, self.timeout, self.metrics, self.reach)
