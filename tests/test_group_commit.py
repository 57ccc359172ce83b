"""Group commit: a successful delivery's `processed` outcome follows its 200, batched.

What a sender and an operator observe: the 200 comes while the delivery is still `processing`
under its lease; the outcomes queued meanwhile reach MongoDB in one command (one batch in the
batch-size histogram) and at shut-down; a repeat of a queued delivery is a duplicate that runs
nothing; a failed outcome is durable before its 500; a failed write is logged, counted and
retried, never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from prometheus_client.parser import text_string_to_metric_families

from clerk_sync import Context, Event, Plugin, Settings
from clerk_sync.runtime import Runtime
from clerk_sync.storage.store import DeliveryLog
from clerk_sync.testing import envelope, new_svix_id
from tests.conftest import Runner, Running
from tests.test_handler_outcomes import log_lines


def counting_plugin(runs: list[str]) -> Plugin:
    plugin = Plugin("tally")

    @plugin.on("user.created")
    async def count(event: Event, ctx: Context[None]) -> None:
        runs.append(event.svix_id)
        if event.data.get("fail"):
            raise RuntimeError("told to fail")

    return plugin


def body(n: int, **data: Any) -> bytes:
    return envelope("user.created", {"id": f"user_{n}", "object": "user", **data})


@asynccontextmanager
async def held(running: Runner, runs: list[str]) -> AsyncIterator[Running]:
    """An app with the counting plugin whose group commit (1 s) is held: queued outcomes wait
    for `settle` or shut-down, whatever the machine's speed."""
    async with running(plugins=[counting_plugin(runs)], clerk_sync_outcome_flush_seconds=1) as r:
        await r.hold_outcomes()
        yield r


def writer_of(r: Running) -> Any:
    runtime: Runtime = r.app.extensions["clerk_sync"]
    assert runtime.writer is not None
    return runtime.writer


async def stored(r: Running, svix_id: str) -> dict[str, Any]:
    """The delivery as MongoDB holds it now, without writing anything queued first."""
    doc = await r.db.webhook_events.find_one({"_id": svix_id})
    assert doc is not None
    return doc


async def scrape(r: Running, name: str, **labels: str) -> float:
    """One sample of /metrics, by name and (a subset of) its labels."""
    text = (await (await r.client.get("/metrics")).get_data()).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"{name} not exposed")


async def test_the_200_comes_before_the_processed_outcome_which_keeps_the_lease(
    running: Runner,
) -> None:
    runs: list[str] = []
    svix_id = new_svix_id()
    async with held(running, runs) as r:
        status, answer = await r.post(body(1), msg_id=svix_id, settle=False)
        queued = await stored(r, svix_id)
        await r.settle()
        written = await stored(r, svix_id)
    assert (status, answer["status"]) == (200, "processed")
    assert queued["status"] == "processing"
    assert queued["lease_until"] > datetime.now(UTC)
    assert queued["handlers"] == {}
    assert written["status"] == "processed"
    assert written["lease_until"] is None
    assert written["handlers"]["tally:count"]["status"] == "ok"
    assert runs == [svix_id]


async def test_outcomes_queued_together_are_written_in_one_batch(running: Runner) -> None:
    runs: list[str] = []
    async with held(running, runs) as r:
        ids = [new_svix_id() for _ in range(3)]
        for n, svix_id in enumerate(ids):
            assert (await r.post(body(n), msg_id=svix_id, settle=False))[0] == 200
        await r.settle()
        batches = await scrape(r, "clerk_sync_outcome_batch_size_count")
        written = await scrape(r, "clerk_sync_outcome_batch_size_sum")
        statuses = [(await stored(r, i))["status"] for i in ids]
    assert (batches, written) == (1.0, 3.0)
    assert statuses == ["processed"] * 3


async def test_a_repeat_while_its_outcome_is_queued_is_a_duplicate_that_runs_nothing(
    running: Runner,
) -> None:
    runs: list[str] = []
    svix_id = new_svix_id()
    async with held(running, runs) as r:
        first = await r.post(body(1), msg_id=svix_id, settle=False)
        repeat = await r.post(body(1), msg_id=svix_id, settle=False)
        during = await stored(r, svix_id)
        await r.settle()
        after = await r.post(body(1), msg_id=svix_id)
        done = await stored(r, svix_id)
    assert first == (200, {"status": "processed", "svix_id": svix_id})
    assert repeat == (200, {"status": "duplicate", "svix_id": svix_id})
    assert after == (200, {"status": "duplicate", "svix_id": svix_id})
    assert runs == [svix_id]
    assert (during["status"], during["attempts"]) == ("processing", 1)
    assert (done["status"], done["attempts"]) == ("processed", 1)


async def test_a_failed_outcome_is_durable_before_its_500(running: Runner) -> None:
    runs: list[str] = []
    svix_id = new_svix_id()
    async with held(running, runs) as r:
        status, _ = await r.post(body(1, fail=True), msg_id=svix_id, settle=False)
        doc = await stored(r, svix_id)
        assert not writer_of(r).holds(svix_id)
    assert status == 500
    assert doc["status"] == "failed"
    assert doc["handlers"]["tally:count"]["status"] == "failed"


async def test_queued_outcomes_are_written_at_shut_down(
    running: Runner, make_settings: Any
) -> None:
    runs: list[str] = []
    settings: Settings = make_settings(clerk_sync_outcome_flush_seconds=1)
    ids = [new_svix_id() for _ in range(2)]
    async with running(plugins=[counting_plugin(runs)], settings=settings) as r:
        await r.hold_outcomes()
        for n, svix_id in enumerate(ids):
            assert (await r.post(body(n), msg_id=svix_id, settle=False))[0] == 200
        assert [(await stored(r, i))["status"] for i in ids] == ["processing"] * 2
    assert settings.mongodb_url is not None
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        settings.mongodb_url.get_secret_value(), tz_aware=True
    )
    try:
        docs = await client[settings.mongodb_db].webhook_events.find().to_list(None)
    finally:
        client.close()
    assert {d["_id"]: d["status"] for d in docs} == dict.fromkeys(ids, "processed")


async def test_a_failed_write_is_logged_counted_and_retried_not_dropped(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[str] = []
    svix_id = new_svix_id()
    unreachable: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200&connectTimeoutMS=200"
    )
    async with held(running, runs) as r:
        writer = writer_of(r)
        assert (await r.post(body(1), msg_id=svix_id, settle=False))[0] == 200
        reachable, writer.events = writer.events, DeliveryLog(unreachable.db.webhook_events)
        capsys.readouterr()
        refused = await writer.flush()
        failures = await scrape(r, "clerk_sync_outcome_flush_failures_total")
        still_queued = writer.holds(svix_id)
        writer.events = reachable
        retried = await writer.flush()
        doc = await stored(r, svix_id)
    unreachable.close()
    lines = [line for line in log_lines(capsys.readouterr().out) if line["event"] != "webhook"]
    assert (refused, failures, still_queued, retried) == (False, 1.0, True, True)
    assert doc["status"] == "processed"
    warned = [line for line in lines if line["event"] == "outcomes_not_written"]
    assert [(w["level"], w["deliveries"]) for w in warned] == [("warning", 1)]
    assert runs == [svix_id]


async def test_a_zero_flush_interval_writes_each_outcome_before_its_answer(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[str] = []
    svix_id = new_svix_id()
    async with running(plugins=[counting_plugin(runs)], clerk_sync_outcome_flush_seconds=0) as r:
        status, _ = await r.post(body(1), msg_id=svix_id, settle=False)
        doc = await stored(r, svix_id)
        writer = r.app.extensions["clerk_sync"].writer
        labels = {"event_type": "user.created", "outcome": "processed"}
        counted = await scrape(r, "clerk_sync_webhooks_total", **labels)
    assert status == 200
    assert writer is None
    assert doc["status"] == "processed"
    assert counted == 1.0
    answered = [line for line in log_lines(capsys.readouterr().out) if line["event"] == "webhook"]
    assert [(line["status"], line["outcome"]) for line in answered] == [(200, "processed")]


async def test_outcomes_mongodb_refuses_at_shut_down_are_logged_as_lost(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last write is retried; what is still unwritten is named in an error line (its
    delivery stays `processing` for `events replay --stale`)."""
    runs: list[str] = []
    svix_id = new_svix_id()
    unreachable: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200&connectTimeoutMS=200"
    )
    async with held(running, runs) as r:
        assert (await r.post(body(1), msg_id=svix_id, settle=False))[0] == 200
        writer_of(r).events = DeliveryLog(unreachable.db.webhook_events)
        capsys.readouterr()
    unreachable.close()
    lines = log_lines(capsys.readouterr().out)
    warned = [line for line in lines if line["event"] == "outcomes_not_written"]
    lost = [line for line in lines if line["event"] == "outcomes_lost_at_shutdown"]
    assert len(warned) == 3
    assert [(line["level"], line["deliveries"]) for line in lost] == [("error", 1)]
    assert lost[0]["remedy"] == (
        "their leases expire; `clerk-sync events replay --stale` finishes them"
    )


async def eventually(check: Any, within: float = 10.0) -> bool:
    """Poll `check()` (async) until true or `within` seconds pass; no timing is asserted."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_the_background_commit_writes_queued_outcomes_while_the_app_runs(
    running: Runner,
) -> None:
    """No settle, no shut-down: the writer's own loop writes the outcome, and the answers
    are counted under their outcomes."""
    runs: list[str] = []
    svix_id = new_svix_id()
    async with running(plugins=[counting_plugin(runs)], clerk_sync_outcome_flush_seconds=0.05) as r:
        first = await r.post(body(1), msg_id=svix_id, settle=False)

        async def processed() -> bool:
            return (await stored(r, svix_id))["status"] == "processed"

        written = await eventually(processed)
        labels = {"event_type": "user.created"}
        counted = await scrape(r, "clerk_sync_webhooks_total", outcome="processed", **labels)
    assert first == (200, {"status": "processed", "svix_id": svix_id})
    assert written, "the queued outcome was never written while the app ran"
    assert counted == 1.0


async def test_a_repeat_of_a_queued_delivery_is_counted_as_a_duplicate(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    svix_id = new_svix_id()
    async with held(running, []) as r:
        await r.post(body(1), msg_id=svix_id, settle=False)
        repeat = await r.post(body(1), msg_id=svix_id, settle=False)
        labels = {"event_type": "user.created"}
        duplicates = await scrape(r, "clerk_sync_webhooks_total", outcome="duplicate", **labels)
        processed = await scrape(r, "clerk_sync_webhooks_total", outcome="processed", **labels)
    assert repeat[0] == 200
    assert (duplicates, processed) == (1.0, 1.0)
    answered = [line for line in log_lines(capsys.readouterr().out) if line["event"] == "webhook"]
    assert [(line["status"], line["outcome"]) for line in answered] == [
        (200, "processed"),
        (200, "duplicate"),
    ]


async def test_the_background_commit_retries_a_failed_write_by_itself(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """MongoDB refuses the batch: the writer logs why, keeps the outcome, goes on answering
    new deliveries, and writes it at a later interval once MongoDB takes writes again, with no
    further delivery to wake it."""
    runs: list[str] = []
    first, second = new_svix_id(), new_svix_id()
    unreachable: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200&connectTimeoutMS=200"
    )
    async with running(plugins=[counting_plugin(runs)], clerk_sync_outcome_flush_seconds=0.05) as r:
        writer = writer_of(r)
        reachable, writer.events = writer.events, DeliveryLog(unreachable.db.webhook_events)
        capsys.readouterr()
        assert (await r.post(body(1), msg_id=first, settle=False))[0] == 200

        async def refused() -> bool:
            return await scrape(r, "clerk_sync_outcome_flush_failures_total") >= 1

        assert await eventually(refused)
        during = await r.post(body(2), msg_id=second, settle=False)

        async def refused_again() -> bool:  # the retry, woken by nothing but the failure
            return await scrape(r, "clerk_sync_outcome_flush_failures_total") >= 2

        assert await eventually(refused_again)
        writer.events = reachable

        async def both_processed() -> bool:
            docs = [await stored(r, i) for i in (first, second)]
            return [d["status"] for d in docs] == ["processed", "processed"]

        written = await eventually(both_processed)
    unreachable.close()
    warned = [
        line
        for line in log_lines(capsys.readouterr().out)
        if line["event"] == "outcomes_not_written"
    ]
    assert during == (200, {"status": "processed", "svix_id": second})
    assert written, "the refused outcome was not retried by the writer's own loop"
    assert warned
    assert all(line["error"].startswith("MongoDB refused the outcomes: ") for line in warned)
    assert runs == [first, second]


@pytest.mark.parametrize(
    ("aged", "queued"),
    [(2.9, True), (3.1, False)],
    ids=["lease outlasts the next flush by the margin", "lease too short: written at once"],
)
async def test_an_outcome_is_queued_only_while_its_lease_outlasts_the_next_flush(
    running: Runner, aged: float, queued: bool
) -> None:
    """A delivery whose handler (or claim) took so long that its lease ends within the next
    flush and a 2 s margin is written before its 200, so no takeover can meet it unwritten.
    The handler ages the receiver's clock; the lease is the 1 s timeout + 5 s, the interval
    1 s: 6 - 2.9 > 1 + 2 queues it, 6 - 3.1 does not."""
    svix_id = new_svix_id()
    offset = [0.0]
    plugin = Plugin("slowpoke")

    @plugin.on("user.created")
    async def age(event: Event, ctx: Context[None]) -> None:
        offset[0] = aged

    async with running(
        plugins=[plugin], clerk_sync_outcome_flush_seconds=1, clerk_sync_handler_timeout=1
    ) as r:
        await r.hold_outcomes()
        receiver = r.app.extensions["clerk_sync"].receiver
        real = receiver.clock
        receiver.clock = lambda: real() + offset[0]
        status, _ = await r.post(body(1), msg_id=svix_id, settle=False)
        doc = await stored(r, svix_id)
        held = writer_of(r).holds(svix_id)
    assert status == 200
    assert (held, doc["status"]) == ((True, "processing") if queued else (False, "processed"))


async def test_two_apps_never_hand_out_the_same_lease_token(running: Runner) -> None:
    """Lease tokens tell one attempt from another across replicas: two apps' first attempts
    (each left `failed`, which keeps its token) hold different tokens."""
    ids = [new_svix_id(), new_svix_id()]
    async with (
        running(plugins=[counting_plugin([])]) as a,
        running(plugins=[counting_plugin([])]) as b,
    ):
        for app, svix_id in zip((a, b), ids, strict=True):
            assert (await app.post(body(1, fail=True), msg_id=svix_id))[0] == 500
        tokens = [(await stored(a, i))["lease_token"] for i in ids]
    assert tokens[0] != tokens[1]
