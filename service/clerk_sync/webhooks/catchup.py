"""Catch-up: one plugin over the deliveries still in `webhook_events` (DESIGN.md "Catching up").

A plugin installed or enabled after deliveries arrived finds them recorded `ignored` (or
`processed` by the other plugins). Catch-up runs that plugin's handlers, and only those, over
every delivery of a type it subscribes to, oldest `event_timestamp` first. Each delivery is taken
with the pipeline's own lease (`DeliveryLog.take_for`), so a redelivery meanwhile is answered
409 and a delivery another attempt holds is left to it and looked at again once that attempt
is over: no handler runs twice at the same time for one delivery. One an interrupted attempt
left `processing` is skipped (`stale`): the sweeper or `events replay --stale` finishes it with
all its handlers first. Outcomes are merged into the
delivery like any attempt's; a delivery whose every recorded handler succeeded is `processed`,
so a later retry of that `svix-id` is a duplicate, and a second catch-up finds nothing to do.
Redacted deliveries (their secrets were removed before they were stored) are skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pymongo.errors import PyMongoError

from clerk_sync.errors import StoreUnavailable
from clerk_sync.events import EVENT_TYPES, Event
from clerk_sync.storage.claims import WITHOUT_PAYLOAD

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.plugins import Plugin, Subscription
    from clerk_sync.storage.store import DeliveryLog
    from clerk_sync.webhooks.dispatch import Dispatcher

type Result = Literal["applied", "already_done", "failed", "skipped"]
type Sleep = Callable[[float], Awaitable[None]]

RESULTS: tuple[Result, ...] = ("applied", "already_done", "failed", "skipped")
#: seconds between looks at deliveries another attempt holds
POLL_SECONDS = 0.5
#: what the listing reads of each delivery (the payload comes with the takeover)
_LISTED = {"_id": 1, "type": 1, "status": 1, "handlers": 1, "redacted": 1}
_BUSY, _STALE = "busy", "stale"


def subscribed_types(plugin: Plugin) -> list[str]:
    """The known event types any handler of `plugin` subscribes to, sorted."""
    return sorted(t for t in EVENT_TYPES if any(s.wants(t) for s in plugin.subscriptions))


def done(delivery: dict[str, Any], subs: Sequence[Subscription]) -> bool:
    """Whether every handler of `subs` already succeeded for this delivery."""
    handlers = delivery.get("handlers") or {}
    return all((handlers.get(s.key) or {}).get("status") == "ok" for s in subs)


@dataclass(slots=True)
class CatchUpReport:
    """A run's counts by result and one record per delivery looked at."""

    plugin: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, listed: dict[str, Any], result: Result, **detail: Any) -> None:
        self.counts[result] += 1
        record = {"svix_id": listed["_id"], "type": listed.get("type"), "result": result}
        self.deliveries.append(record | detail)

    def skipped(self, reason: str) -> int:
        return sum(1 for d in self.deliveries if d.get("reason") == reason)

    @property
    def ok(self) -> bool:
        """No handler failed and no delivery was left to another attempt."""
        return self.counts["failed"] == 0 and self.skipped(_BUSY) + self.skipped(_STALE) == 0

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, **self.counts, "deliveries": self.deliveries}


class CatchUp:
    """Catch-up of one plugin, on a started store and the dispatcher of a runtime."""

    def __init__(
        self,
        events: DeliveryLog,
        dispatcher: Dispatcher,
        plugin: Plugin,
        *,
        lease: timedelta,
        log: FilteringBoundLogger,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.events, self.dispatcher, self.plugin = events, dispatcher, plugin
        self.lease, self.clock, self.sleep = lease, clock, sleep
        self.log = log.bind(plugin=plugin.name)
        #: looks again at held deliveries for somewhat longer than one lease
        self.rounds = math.ceil((lease.total_seconds() + 1.0) / POLL_SECONDS)
        self._tokens = (f"catchup-{secrets.token_hex(6)}-{n:x}" for n in itertools.count())

    async def candidates(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """The deliveries of the plugin's types (received at or after `since`), oldest event
        first; `rejected` ones hold no event and are left out. MongoDB errors propagate."""
        query: dict[str, Any] = {
            "type": {"$in": subscribed_types(self.plugin)},
            "status": {"$ne": "rejected"},
        }
        if since is not None:
            query["received_at"] = {"$gte": since}
        order = [("event_timestamp", 1), ("received_at", 1), ("_id", 1)]
        # no index has this order: a large window sorts on disk rather than fail
        cursor = self.events.collection.find(query, _LISTED, allow_disk_use=True).sort(order)
        return [d async for d in cursor]

    async def run(
        self, listed: Sequence[dict[str, Any]], advance: Callable[[], None] = lambda: None
    ) -> CatchUpReport:
        """Catch up each listed delivery once; those another attempt holds are looked at again
        every POLL_SECONDS until its lease is over, then counted as skipped (`busy`)."""
        report = CatchUpReport(self.plugin.name)
        held = await self._pass(listed, report, advance)
        for _ in range(self.rounds):
            if not held:
                break
            await self.sleep(POLL_SECONDS)
            held = await self._pass(held, report, advance)
        for delivery in held:
            report.add(delivery, "skipped", reason=_BUSY)
            self.log.warning("catch_up_busy", svix_id=delivery["_id"])
            advance()
        return report

    async def _pass(
        self, listed: Sequence[dict[str, Any]], report: CatchUpReport, advance: Callable[[], None]
    ) -> list[dict[str, Any]]:
        held: list[dict[str, Any]] = []
        for delivery in listed:
            outcome = await self.one(delivery)
            if outcome is None:
                held.append(delivery)
                continue
            result, detail = outcome
            report.add(delivery, result, **detail)
            self.log.info(
                "catch_up",
                svix_id=delivery["_id"],
                event_type=delivery.get("type"),
                result=result,
                **detail,
            )
            advance()
        return held

    async def one(self, listed: dict[str, Any]) -> tuple[Result, dict[str, Any]] | None:
        """Catch up one delivery; None while another attempt holds it."""
        svix_id = listed["_id"]
        subs = [s for s in self.plugin.subscriptions if s.wants(str(listed.get("type")))]
        if listed.get("redacted") is True:
            return "skipped", {"reason": "redacted"}
        if done(listed, subs):
            return "already_done", {}
        at = self._now()
        token = next(self._tokens)
        keys = [s.key for s in subs]
        before = await self.events.take_for(
            svix_id, keys, token=token, now=at, lease_until=at + self.lease
        )
        if before is None:
            return await self._not_taken(svix_id, subs)
        try:
            event = Event.from_envelope(before["payload"], svix_id)
        except (KeyError, TypeError):  # recorded without an event: give the lease back
            await self.events.finish(svix_id, token=token, status=before["status"], outcomes={})
            return "skipped", {"reason": "no event"}
        return await self._apply(event, before, [s for s in subs if not done(before, [s])], token)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    async def _not_taken(
        self, svix_id: str, subs: Sequence[Subscription]
    ) -> tuple[Result, dict[str, Any]] | None:
        """Why a takeover failed: done meanwhile, gone (retention), redacted, left `processing`
        by an interrupted attempt (stale), or held by a running one (None)."""
        try:
            current = await self.events.collection.find_one({"_id": svix_id}, WITHOUT_PAYLOAD)
        except PyMongoError as error:
            raise StoreUnavailable("MongoDB is unavailable") from error
        if current is None:
            return "skipped", {"reason": "gone"}
        if current.get("redacted") is True:
            return "skipped", {"reason": "redacted"}
        if done(current, subs):
            return "already_done", {}
        lease = current.get("lease_until")
        if current.get("status") == "processing" and (lease is None or lease < self._now()):
            return "skipped", {"reason": _STALE}  # an interrupted attempt's: not ours to finish
        return None

    async def _apply(
        self, event: Event, before: dict[str, Any], pending: list[Subscription], token: str
    ) -> tuple[Result, dict[str, Any]]:
        """Run `pending` and write their outcomes under `token`, as the pipeline would; the
        status says whether every handler recorded for the delivery has now succeeded."""
        by_key, store_down = await self.dispatcher.run(event, pending)
        merged = {**(before.get("handlers") or {}), **by_key}
        ok = all(isinstance(o, dict) and o.get("status") == "ok" for o in merged.values())
        status = "processed" if ok else "failed"
        owned = await self.events.finish(event.svix_id, token=token, status=status, outcomes=by_key)
        if store_down:
            raise StoreUnavailable("a handler could not reach MongoDB")
        if not owned:
            return "failed", {"errors": ["lease expired; another attempt took over"]}
        errors = [
            f"{key}: {o['status']}: {o.get('error') or '-'}"
            for key, o in by_key.items()
            if o["status"] != "ok"
        ]
        return ("failed", {"errors": errors}) if errors else ("applied", {})
