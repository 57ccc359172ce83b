"""Micro-benchmark of the webhook pipeline in one process, without HTTP: where the time goes.

    python -m bench micro [--deliveries 300]

A `Runtime` with the `users` plugin is built and started against a store in another process
(the embedded store, or BENCH_MONGODB_URL), so this process's CPU time (`time.process_time`,
all threads, motor's I/O threads included) is the pipeline's own. Each stage is timed over
fresh deliveries, then `Receiver.receive` end to end, for new deliveries and for duplicates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from clerk_sync_users import plugin as users_plugin

from bench.deliveries import Delivery, make_plan
from clerk_sync.events import Event, parse_envelope
from clerk_sync.observability.logs import make_logger
from clerk_sync.plugins import Context
from clerk_sync.runtime import Runtime
from clerk_sync.settings import Settings
from clerk_sync.testing import TEST_SECRET, signed_headers
from clerk_sync.webhooks.verify import parse_headers, verify


@dataclass(frozen=True, slots=True)
class Stage:
    """Microseconds per delivery for one step: this process's CPU, wall, the store's CPU."""

    name: str
    cpu_us: float
    wall_us: float
    what: str
    store_cpu_us: float | None = None


class StoreClock:
    """CPU seconds used so far by the store process (None when the store is not ours)."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid is not None else None

    def __call__(self) -> float | None:
        if self.process is None:
            return None
        times = self.process.cpu_times()
        return float(times.user + times.system)


def fresh(count: int, seed: int) -> list[tuple[Delivery, dict[str, str]]]:
    """`count` distinct signed deliveries (no duplicates) of the benchmark's mix."""
    plan = make_plan(count * 2, seed=seed, now_ms=int(time.time() * 1000))
    seen: set[str] = set()
    unique = [d for d in plan if not (d.svix_id in seen or seen.add(d.svix_id))][:count]
    return [(d, signed_headers(d.body, msg_id=d.svix_id)) for d in unique]


async def _timed(
    name: str,
    what: str,
    items: Iterable[Any],
    step: Callable[[Any], Awaitable[object] | object],
    store: StoreClock,
) -> Stage:
    items = list(items)
    store_before = store()
    cpu, wall = time.process_time(), time.perf_counter()
    for item in items:
        result = step(item)
        if isinstance(result, Awaitable):
            await result
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    store_after = store()
    store_us = None
    if store_before is not None and store_after is not None:
        store_us = (store_after - store_before) / len(items) * 1e6
    return Stage(name, cpu / len(items) * 1e6, wall / len(items) * 1e6, what, store_us)


def build_runtime(url: str, database: str, log_path: Path) -> Runtime:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        clerk_webhook_signing_secret=TEST_SECRET,  # type: ignore[arg-type]
        mongodb_url=url,  # type: ignore[arg-type]
        mongodb_db=database,
        log_format="json",
    )
    runtime = Runtime.build(settings, plugins=[users_plugin])
    # the service logs to stdout; here the same lines go to a file, formatted the same way
    runtime.receiver.log = make_logger("info", "json", stream=log_path.open("a"))
    return runtime


async def measure(
    url: str, database: str, count: int, log_path: Path, store_pid: int | None = None
) -> list[Stage]:
    runtime = build_runtime(url, database, log_path)
    await runtime.start(monitor=False)
    try:
        return await _stages(runtime, count, StoreClock(store_pid))
    finally:
        await runtime.stop()


async def _stages(runtime: Runtime, count: int, store: StoreClock) -> list[Stage]:
    receiver = runtime.receiver
    assert receiver.events is not None
    assert receiver.engine is not None
    events, engine = receiver.events, receiver.engine
    batch = fresh(count, seed=901)
    now = time.time()
    parsed = [(d, parse_headers(h)) for d, h in batch]
    envelopes = [(d, Event.from_envelope(parse_envelope(d.body), d.svix_id)) for d, _ in batch]
    sub = receiver.router.handlers_for("user.updated")[0]
    ctx: Context[Any] = Context(engine, receiver.log, None, runtime.settings, sub.plugin)
    at = datetime.now(UTC)
    token = uuid.uuid4().hex

    def claim(item: tuple[Delivery, Event]) -> Awaitable[object]:
        d, event = item
        on_insert = {
            "type": event.type,
            "payload": event.raw,
            "event_timestamp": event.timestamp,
            "instance_id": event.instance_id,
        }
        return events.claim(
            d.svix_id, target="processing", token=token, now=at, lease_until=at, on_insert=on_insert
        )

    outcome = {"status": "ok", "at": at, "error": None}
    steps: list[tuple[str, str, list[Any], Callable[[Any], Awaitable[object] | object]]] = [
        (
            "verify",
            "parse the svix headers, HMAC-SHA256 over the body",
            parsed,
            lambda p: verify(p[0].body, p[1], receiver.keys, now),
        ),
        (
            "parse",
            "orjson parse, envelope checks, Event",
            batch,
            lambda p: Event.from_envelope(parse_envelope(p[0].body), p[0].svix_id),
        ),
        (
            "record: claim",
            "a lone new delivery: one findAndModify, $setOnInsert with the payload (motor)",
            envelopes,
            claim,
        ),
        (
            "dispatch: users handler",
            "project the user, conditional upsert (motor)",
            envelopes,
            lambda p: sub.func(p[1], ctx),
        ),
        (
            "record: finish",
            "one outcome written alone (what a failed delivery pays before its 500; motor)",
            envelopes,
            lambda p: events.finish(
                p[0].svix_id, token=token, status="processed", outcomes={sub.key: outcome}
            ),
        ),
        (
            "log line",
            "the per-delivery structlog JSON line, redaction included",
            batch,
            lambda p: receiver.log.info(
                "webhook",
                svix_id=p[0].svix_id,
                event_type=p[0].event_type,
                outcome="processed",
                status=200,
                duration_ms=3.21,
                handlers={sub.key: "ok"},
            ),
        ),
    ]
    stages = [await _timed(*step, store) for step in steps]
    await _clear(runtime)
    second = fresh(count, seed=902)
    writer = runtime.writer

    async def receive_then_flush(p: tuple[Delivery, dict[str, str]]) -> None:
        """One delivery end to end; the group commit's write counted at the batch's end."""
        await receiver.receive(p[0].body, p[1])
        if writer is not None and p is second[-1]:
            await writer.flush()

    stages.append(
        await _timed(
            "receive (new delivery)",
            "Receiver.receive end to end, the group commit of its outcome included",
            second,
            receive_then_flush,
            store,
        )
    )
    stages.append(
        await _timed(
            "receive (duplicate)",
            "Receiver.receive of an already processed delivery",
            second,
            lambda p: receiver.receive(p[0].body, p[1]),
            store,
        )
    )
    return stages


async def _clear(runtime: Runtime) -> None:
    assert runtime.store is not None
    for name in ("webhook_events", "users"):
        await runtime.store.db[name].delete_many({})


def run(
    url: str, database: str, count: int, workdir: Path, store_pid: int | None = None
) -> list[Stage]:
    return asyncio.run(measure(url, database, count, workdir / "micro.log", store_pid))
