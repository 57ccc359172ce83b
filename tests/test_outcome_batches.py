"""The group commit's bound, against a real MongoDB server: outcomes go out MAX_BATCH to a
command, a full batch is written without waiting for the interval, and a command that fails
leaves what it and the commands after it held queued, nothing lost."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from pymongo.errors import AutoReconnect

from clerk_sync.observability.logs import make_logger
from clerk_sync.observability.metrics import Metrics
from clerk_sync.storage.store import DeliveryLog, Finished
from clerk_sync.webhooks.outcomes import MAX_BATCH, OutcomeWriter
from tests.listeners import Commands, listened_log

NOW = datetime.now(UTC)
OK = {"status": "ok", "at": NOW, "error": None}


@dataclass
class Fixture:
    events: DeliveryLog
    statements: Commands
    metrics: Metrics

    def writer(self, interval: float) -> OutcomeWriter:
        return OutcomeWriter(
            self.events, interval, self.metrics, make_logger("info", "json", io.StringIO())
        )

    async def processing(self, count: int) -> list[Finished]:
        """`count` deliveries claimed under their own lease token, and their outcomes."""
        finished = []
        for n in range(count):
            svix_id = f"msg_{n}"
            await self.events.claim(
                svix_id,
                target="processing",
                token=f"t{n}",
                now=NOW,
                lease_until=NOW + timedelta(seconds=60),
                on_insert={"type": "user.created", "payload": {"n": n}},
            )
            finished.append(Finished(svix_id, f"t{n}", "processed", {"p:h": OK}))
        self.statements.clear()
        return finished

    async def statuses(self) -> dict[str, str]:
        cursor = self.events.collection.find({}, {"status": 1})
        return {doc["_id"]: doc["status"] async for doc in cursor}

    def batches(self) -> tuple[float, float]:
        """Count and sum of the outcome batch-size histogram, as /metrics shows them."""
        text = generate_latest(self.metrics.registry).decode()
        values = dict(
            line.rsplit(" ", 1)
            for line in text.splitlines()
            if line.startswith("clerk_sync_outcome_batch_size_")
        )
        return float(values["clerk_sync_outcome_batch_size_count"]), float(
            values["clerk_sync_outcome_batch_size_sum"]
        )


@pytest.fixture
async def fx(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Fixture]:
    async with listened_log(mongodb_url, mongodb_db) as (events, statements):
        yield Fixture(events, statements, Metrics())


async def test_a_flush_writes_everything_queued_at_most_max_batch_to_a_command(
    fx: Fixture,
) -> None:
    writer = fx.writer(interval=1)
    for finished in await fx.processing(2 * MAX_BATCH + 3):
        writer.queue(finished)
    assert await writer.flush()
    assert fx.statements.sizes() == [MAX_BATCH, MAX_BATCH, 3]
    assert fx.batches() == (3.0, 2 * MAX_BATCH + 3)
    assert set((await fx.statuses()).values()) == {"processed"}
    assert not writer.holds("msg_0")


async def test_a_full_batch_is_written_without_waiting_for_the_interval(fx: Fixture) -> None:
    """With an interval of an hour, only the size bound can have written them."""
    writer = fx.writer(interval=3600)
    running = asyncio.create_task(writer.run())
    try:
        for finished in await fx.processing(MAX_BATCH):
            writer.queue(finished)
        async with asyncio.timeout(30):
            while any(s != "processed" for s in (await fx.statuses()).values()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        running.cancel()
    assert fx.statements.sizes() == [MAX_BATCH]


async def test_a_failed_command_leaves_its_outcomes_and_the_later_ones_queued(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = fx.writer(interval=1)
    finished = await fx.processing(MAX_BATCH + 2)
    for one in finished:
        writer.queue(one)
    write = fx.events.finish_many
    calls = 0

    async def second_fails(batch: list[Finished]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise AutoReconnect("connection lost")
        await write(batch)

    monkeypatch.setattr(fx.events, "finish_many", second_fails)
    refused = await writer.flush()
    after_refusal = await fx.statuses()
    held = [one.svix_id for one in finished if writer.holds(one.svix_id)]
    retried = await writer.flush()
    assert refused is False
    assert [after_refusal[one.svix_id] for one in finished] == ["processed"] * MAX_BATCH + [
        "processing"
    ] * 2
    assert held == [one.svix_id for one in finished[MAX_BATCH:]]
    assert retried is True
    assert set((await fx.statuses()).values()) == {"processed"}


async def test_flushes_called_at_once_write_everything_once(fx: Fixture) -> None:
    """The background flush, a test's settle and the console's replay may flush together: each
    returns once what was queued before it is written, and nothing is written twice."""
    writer = fx.writer(interval=1)
    finished = await fx.processing(MAX_BATCH + 4)
    for one in finished[:MAX_BATCH]:
        writer.queue(one)
    first = asyncio.create_task(writer.flush())
    await asyncio.sleep(0)  # the first flush has taken its outcomes and is writing
    for one in finished[MAX_BATCH:]:
        writer.queue(one)
    results = await asyncio.gather(first, writer.flush(), writer.flush())
    assert results == [True, True, True]
    assert set((await fx.statuses()).values()) == {"processed"}
    assert sorted(fx.statements.sizes()) == [4, MAX_BATCH]
    assert not any(writer.holds(one.svix_id) for one in finished)
