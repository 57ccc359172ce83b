"""Running one plugin handler: under the timeout, isolated from the others, measured."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clerk_sync.events import metric_event_type
from clerk_sync.storage.store import unavailable

if TYPE_CHECKING:
    from clerk_sync.events import Event
    from clerk_sync.observability.metrics import Metrics
    from clerk_sync.plugins import Context, Subscription
    from clerk_sync.storage.reach import Reachability

_MAX_ERROR = 500


async def run_handler(
    sub: Subscription,
    event: Event,
    ctx: Context[Any],
    limit: float,
    metrics: Metrics,
    reach: Reachability,
) -> tuple[dict[str, Any], bool]:
    """Run one handler; return its outcome for the delivery record and whether MongoDB was down.

    A handler may raise anything: the error is recorded and logged, never propagated. A timeout
    counts as MongoDB being down when the driver lost the server while the handler ran."""
    started = time.perf_counter()
    status, error, store_down = "ok", None, False
    mark = reach.mark()
    try:
        async with asyncio.timeout(limit):
            await sub.func(event, ctx)
    except TimeoutError:
        status, error = "timeout", f"handler timed out after {limit:g} s"
        store_down = reach.lost_since(mark)
        ctx.log.warning("handler_timed_out", handler=sub.name, error=error, mongodb_lost=store_down)
    except Exception as exc:  # a plugin may raise anything; it must not affect the others
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        store_down = unavailable(exc)
        ctx.log.warning("handler_failed", handler=sub.name, error=error)
    elapsed = time.perf_counter() - started
    duration, failures = metrics.handler(sub.plugin, metric_event_type(event.type))
    duration.observe(elapsed)
    if status != "ok":
        failures.inc()
    return {"status": status, "at": datetime.now(UTC), "error": error}, store_down
