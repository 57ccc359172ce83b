"""The webhook contract of DESIGN.md, one test per row: status codes, bodies, stored records."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from clerk_sync import Context, Event, Plugin
from clerk_sync.events import MAX_ENVELOPE_DEPTH
from clerk_sync.testing import TEST_SECRET, envelope, new_svix_id, signed_headers
from clerk_sync.webhooks.pipeline import Receiver
from tests.conftest import Runner

USER = {"id": "user_1", "object": "user", "updated_at": 1_700_000_000_000}
LEASE = datetime(2026, 1, 1, 12, 0, 15, tzinfo=UTC)
BODY = envelope("user.created", USER)


class Recorder:
    """A plugin whose handlers count their runs and can be told to fail or wait."""

    def __init__(self, name: str = "recorder") -> None:
        self.plugin = Plugin(name)
        self.runs: list[str] = []
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

        @self.plugin.on("user.created")
        async def record(event: Event, ctx: Context[None]) -> None:
            self.runs.append(event.svix_id)
            self.started.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise RuntimeError("boom")


async def test_body_over_the_limit_is_413(running: Runner) -> None:
    async with running(clerk_sync_max_body_bytes=64) as r:
        status, body = await r.post(b"{" + b" " * 100 + b"}")
    assert status == 413
    assert "error" in body


async def test_missing_svix_headers_are_400(running: Runner) -> None:
    async with running() as r:
        status, body = await r.post(BODY, headers={"content-type": "application/json"})
    assert status == 400
    assert "svix-id" in body["error"]


@pytest.mark.parametrize("junk", ["garbage", "v1,", "v1,!!!notbase64", "v2,abc", "," * 50])
async def test_junk_signature_header_is_400_not_500(running: Runner, junk: str) -> None:
    headers = signed_headers(BODY) | {"svix-signature": junk}
    async with running() as r:
        status, _ = await r.post(BODY, headers=headers)
    assert status == 400


async def test_webhook_prefixed_headers_are_accepted(running: Runner) -> None:
    """The Standard Webhooks names (`webhook-id` …) work like the `svix-*` ones."""
    headers = {k.replace("svix-", "webhook-"): v for k, v in signed_headers(BODY).items()}
    async with running(plugins=[Recorder().plugin]) as r:
        status, body = await r.post(BODY, headers=headers)
    assert (status, body["status"]) == (200, "processed")


async def test_wrong_secret_is_401(running: Runner) -> None:
    other = "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA=="
    async with running() as r:
        status, body = await r.post(BODY, secret=other)
    assert status == 401
    assert body == {"error": "no signature matches a configured secret"}


@pytest.mark.parametrize("offset", [-360, -302, 302, 360])
async def test_timestamp_beyond_five_minutes_off_is_401(running: Runner, offset: int) -> None:
    async with running() as r:
        status, body = await r.post(BODY, timestamp=int(time.time()) + offset)
    assert status == 401
    assert "tolerance" in body["error"]


@pytest.mark.parametrize("offset", [-298, 298])
async def test_timestamp_just_within_five_minutes_is_accepted(running: Runner, offset: int) -> None:
    """The accepted side of the ±5 minute window (2 s short of it: the request takes time)."""
    async with running(plugins=[Recorder().plugin]) as r:
        status, body = await r.post(BODY, timestamp=int(time.time()) + offset)
    assert (status, body["status"]) == (200, "processed")


async def test_second_secret_during_rotation_is_accepted(running: Runner) -> None:
    """With two secrets configured, a delivery signed with either one is accepted."""
    old = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZA=="
    recorder = Recorder()
    async with running(
        plugins=[recorder.plugin], clerk_webhook_signing_secret=f"{old}, {TEST_SECRET}"
    ) as r:
        first, _ = await r.post(BODY, secret=old)
        second, _ = await r.post(BODY, secret=TEST_SECRET)
    assert (first, second) == (200, 200)
    assert len(recorder.runs) == 2


@pytest.mark.parametrize(
    "raw",
    [b"not json at all", b"[1, 2, 3]", b'{"type": 7, "data": {}}', b'{"type": "user.created"}'],
)
async def test_signed_non_envelope_is_recorded_rejected_with_raw_body(
    running: Runner, raw: bytes
) -> None:
    headers = signed_headers(raw)
    async with running() as r:
        status, body = await r.post(raw, headers=headers)
        stored = await r.event(headers["svix-id"])
    assert status == 202
    assert body["status"] == "rejected"
    assert stored is not None
    assert stored["status"] == "rejected"
    assert stored["payload"] == raw.decode()


async def test_event_no_plugin_handles_is_recorded_ignored(running: Runner) -> None:
    body = envelope("waitlistEntry.created", {"id": "wle_1"})
    headers = signed_headers(body)
    async with running(plugins=[Recorder().plugin]) as r:
        status, answer = await r.post(body, headers=headers)
        stored = await r.event(headers["svix-id"])
    assert (status, answer) == (200, {"status": "ignored", "svix_id": headers["svix-id"]})
    assert stored is not None
    assert stored["status"] == "ignored"
    assert stored["type"] == "waitlistEntry.created"


async def test_repeat_of_an_ignored_delivery_is_a_duplicate(running: Runner) -> None:
    body = envelope("waitlistEntry.created", {"id": "wle_1"})
    svix_id = new_svix_id()
    async with running(plugins=[Recorder().plugin]) as r:
        first, _ = await r.post(body, msg_id=svix_id)
        second, answer = await r.post(body, msg_id=svix_id)
        stored = await r.event(svix_id)
    assert first == 200
    assert (second, answer) == (200, {"status": "duplicate", "svix_id": svix_id})
    assert stored is not None
    assert (stored["status"], stored["attempts"]) == ("ignored", 1)


async def test_repeat_of_a_rejected_delivery_is_a_duplicate(running: Runner) -> None:
    raw = b"not json at all"
    svix_id = new_svix_id()
    async with running(plugins=[Recorder().plugin]) as r:
        first, _ = await r.post(raw, msg_id=svix_id)
        second, answer = await r.post(raw, msg_id=svix_id)
        stored = await r.event(svix_id)
    assert first == 202
    assert (second, answer) == (200, {"status": "duplicate", "svix_id": svix_id})
    assert stored is not None
    assert (stored["status"], stored["attempts"]) == ("rejected", 1)


@pytest.mark.parametrize(
    "timestamp", [1_700_000_000_123, 1_700_000_000], ids=["milliseconds", "seconds"]
)
async def test_event_timestamp_is_stored_as_the_envelope_time(
    running: Runner, timestamp: int
) -> None:
    """Clerk sends milliseconds; a value below 1e12 is read as seconds."""
    body = envelope("user.created", USER, timestamp_ms=timestamp)
    headers = signed_headers(body)
    async with running(plugins=[Recorder().plugin]) as r:
        status, _ = await r.post(body, headers=headers)
        stored = await r.event(headers["svix-id"])
    expected = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    if timestamp > 10**12:
        expected += timedelta(milliseconds=123)
    assert status == 200
    assert stored is not None
    assert stored["event_timestamp"] == expected


async def test_handlers_run_concurrently(running: Runner) -> None:
    """Each handler waits until the other has started: run one after the other, neither could."""
    plugin = Plugin("pair")
    started = {"left": asyncio.Event(), "right": asyncio.Event()}

    def handler(me: str, other: str) -> Any:
        async def run(event: Event, ctx: Context[None]) -> None:
            started[me].set()
            await asyncio.wait_for(started[other].wait(), 5)

        run.__name__ = me
        return run

    plugin.on("user.created")(handler("left", "right"))
    plugin.on("user.created")(handler("right", "left"))
    headers = signed_headers(BODY)
    async with running(plugins=[plugin]) as r:
        status, answer = await r.post(BODY, headers=headers)
        stored = await r.event(headers["svix-id"])
    assert (status, answer["status"]) == (200, "processed")
    assert stored is not None
    assert {k: v["status"] for k, v in stored["handlers"].items()} == {
        "pair:left": "ok",
        "pair:right": "ok",
    }


async def test_an_attempt_whose_lease_was_taken_over_answers_409_and_writes_nothing(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """Attempt 1 hangs past its lease; attempt 2 takes the delivery over and finishes it. When
    attempt 1 ends, its final write is refused (lease token) and it answers 409."""
    plugin = Plugin("hang")
    gate, first_started = asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    @plugin.on("user.created")
    async def hang_first(event: Event, ctx: Context[None]) -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            first_started.set()
            await gate.wait()
            raise RuntimeError("attempt 1 fails late")

    svix_id = new_svix_id()
    async with running(plugins=[plugin]) as r:
        first = asyncio.create_task(r.post(BODY, msg_id=svix_id))
        await asyncio.wait_for(first_started.wait(), 10)
        past = datetime.now(UTC) - timedelta(seconds=1)
        await r.db.webhook_events.update_one({"_id": svix_id}, {"$set": {"lease_until": past}})
        second, second_body = await r.post(BODY, msg_id=svix_id)
        gate.set()
        first_status, first_body = await first
        stored = await r.event(svix_id)
    assert (second, second_body["status"]) == (200, "processed")
    assert (first_status, first_body) == (
        409,
        {"error": "lease expired; another attempt took over", "svix_id": svix_id},
    )
    assert summaries(capsys)[-1] == (409, "in_progress")
    assert stored is not None
    assert (stored["status"], stored["attempts"]) == ("processed", 2)
    assert stored["handlers"]["hang:hang_first"]["status"] == "ok"
    assert runs == [1, 2]


async def test_processed_delivery_is_recorded_before_handlers_with_outcomes(
    running: Runner,
) -> None:
    seen: list[dict[str, Any] | None] = []
    plugin = Plugin("peek")
    holder: dict[str, Any] = {}

    @plugin.on("user.created")
    async def peek(event: Event, ctx: Context[None]) -> None:
        seen.append(await holder["db"].webhook_events.find_one({"_id": event.svix_id}))

    headers = signed_headers(BODY)
    async with running(plugins=[plugin]) as r:
        holder["db"] = r.db
        status, answer = await r.post(BODY, headers=headers)
        stored = await r.event(headers["svix-id"])
    assert (status, answer["status"]) == (200, "processed")
    assert seen[0] is not None
    assert seen[0]["status"] == "processing"
    assert stored is not None
    assert stored["status"] == "processed"
    assert stored["attempts"] == 1
    assert stored["handlers"]["peek:peek"]["status"] == "ok"
    assert stored["payload"] == json.loads(BODY)
    assert stored["type"] == "user.created"
    assert stored["instance_id"] == "ins_2testinstance0000000000000"
    assert stored["event_timestamp"] is not None
    for field in ("received_at", "last_attempt_at"):
        assert stored[field] is not None


async def test_duplicate_answers_200_and_runs_no_handler(running: Runner) -> None:
    recorder = Recorder()
    svix_id = new_svix_id()
    async with running(plugins=[recorder.plugin]) as r:
        first, _ = await r.post(BODY, msg_id=svix_id)
        second, body = await r.post(BODY, msg_id=svix_id)
    assert first == 200
    assert (second, body) == (200, {"status": "duplicate", "svix_id": svix_id})
    assert recorder.runs == [svix_id]


async def test_delivery_held_by_another_request_is_409(running: Runner) -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    svix_id = new_svix_id()
    async with running(plugins=[recorder.plugin]) as r:
        first = asyncio.create_task(r.post(BODY, msg_id=svix_id))
        await asyncio.wait_for(recorder.started.wait(), 10)
        status, body = await r.post(BODY, msg_id=svix_id)
        recorder.gate.set()
        first_status, _ = await first
    assert status == 409
    assert body["svix_id"] == svix_id
    assert first_status == 200
    assert recorder.runs == [svix_id]


async def test_failing_handler_is_500_and_redelivery_reruns_only_it(running: Runner) -> None:
    good, bad = Recorder("good"), Recorder("bad")
    bad.fail = True
    svix_id = new_svix_id()
    async with running(plugins=[good.plugin, bad.plugin]) as r:
        status, body = await r.post(BODY, msg_id=svix_id)
        failed = await r.event(svix_id)
        bad.fail = False
        retry, _ = await r.post(BODY, msg_id=svix_id)
        done = await r.event(svix_id)
    assert (status, body["status"]) == (500, "failed")
    assert failed is not None
    assert failed["status"] == "failed"
    assert failed["handlers"]["bad:record"]["status"] == "failed"
    assert "RuntimeError: boom" in failed["handlers"]["bad:record"]["error"]
    assert failed["handlers"]["good:record"]["status"] == "ok"
    assert retry == 200
    assert good.runs == [svix_id]
    assert bad.runs == [svix_id, svix_id]
    assert done is not None
    assert (done["status"], done["attempts"]) == ("processed", 2)


async def test_slow_handler_times_out_without_holding_the_others(running: Runner) -> None:
    plugin = Plugin("slow")
    fast_done: list[float] = []

    @plugin.on("user.created")
    async def sleepy(event: Event, ctx: Context[None]) -> None:
        await asyncio.sleep(60)

    @plugin.on("user.created")
    async def quick(event: Event, ctx: Context[None]) -> None:
        fast_done.append(time.monotonic())

    headers = signed_headers(BODY)
    async with running(plugins=[plugin], clerk_sync_handler_timeout=0.5) as r:
        started = time.monotonic()
        status, _ = await r.post(BODY, headers=headers)
        answered = time.monotonic() - started
        stored = await r.event(headers["svix-id"])
    assert status == 500
    assert answered < 30, "the answer must not wait for the hung handler"
    assert fast_done
    assert stored is not None
    assert stored["handlers"]["slow:sleepy"]["status"] == "timeout"
    assert stored["handlers"]["slow:quick"]["status"] == "ok"


async def test_unreachable_mongodb_is_503_with_retry_after_and_nothing_2xx(
    running: Runner,
) -> None:
    recorder = Recorder()
    async with running(
        plugins=[recorder.plugin], mongodb_url="mongodb://127.0.0.1:9/?directConnection=true"
    ) as r:
        response = await r.client.post("/webhooks/clerk", data=BODY, headers=signed_headers(BODY))
        body = await response.get_json()
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert "svix_id" in body
    assert recorder.runs == [], "no handler may run for a delivery that was not recorded"


async def test_missing_signing_secret_refuses_deliveries_with_retry_after(
    running: Runner,
) -> None:
    """MONGODB_URL set and no secret: 503 naming the variable, with `Retry-After`, and
    `/readyz` fails with the same variable named, so no traffic is routed here."""
    async with running(clerk_webhook_signing_secret="") as r:
        response = await r.client.post("/webhooks/clerk", data=BODY, headers=signed_headers(BODY))
        body = await response.get_json()
        ready = await r.client.get("/readyz")
        readiness = await ready.get_json()
    assert response.status_code == 503
    assert body["error"] == "CLERK_WEBHOOK_SIGNING_SECRET is not set"
    assert response.headers["Retry-After"].isdigit()
    assert ready.status_code == 503
    assert readiness["status"] == "not_ready"
    assert any("CLERK_WEBHOOK_SIGNING_SECRET" in reason for reason in readiness["reasons"])


async def test_signed_json_mongodb_cannot_store_is_rejected_with_raw_text(running: Runner) -> None:
    """An unsigned 64-bit integer cannot be BSON: the raw text is kept, answer 202, never 5xx."""
    raw = b'{"type": "user.created", "data": {"id": "user_big", "n": 18446744073709551615}}'
    headers = signed_headers(raw)
    async with running(plugins=[Recorder().plugin]) as r:
        status, body = await r.post(raw, headers=headers)
        stored = await r.event(headers["svix-id"])
    assert (status, body["status"]) == (202, "rejected")
    assert stored is not None
    assert stored["payload"] == raw.decode()
    assert stored["type"] == "user.created", "the type is known: the envelope parsed"
    assert stored["error"].startswith("payload cannot be stored as BSON")


def _nested(depth: int, kind: str) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


@pytest.mark.parametrize(("depth", "kind"), [(97, "dict"), (98, "list"), (600, "dict")])
async def test_json_nested_beyond_mongodb_limit_is_rejected_with_raw_text(
    running: Runner, depth: int, kind: str
) -> None:
    """MongoDB stores 100 levels; the record holds the envelope one level down. Deeper signed
    JSON is kept as raw text with 202 (Svix must not retry it forever), never a 5xx."""
    raw = envelope("user.created", {"id": "user_deep", "deep": _nested(depth, kind)})
    headers = signed_headers(raw)
    async with running(plugins=[Recorder().plugin]) as r:
        status, body = await r.post(raw, headers=headers)
        stored = await r.event(headers["svix-id"])
    assert stored is not None
    # envelope -> data -> deep adds two levels to `depth` (envelope counted as one)
    if depth + 2 <= MAX_ENVELOPE_DEPTH:
        assert (status, body["status"]) == (200, "processed")
        assert stored["payload"]["data"]["id"] == "user_deep"
    else:
        assert (status, body["status"]) == (202, "rejected")
        assert "nests deeper than 99 levels" in body["reason"]
        assert stored["payload"] == raw.decode()


async def test_wrong_method_and_unknown_path_answer_json(running: Runner) -> None:
    async with running() as r:
        wrong = await r.client.get("/webhooks/clerk")
        missing = await r.client.get("/nowhere")
        wrong_body, missing_body = await wrong.get_json(), await missing.get_json()
    assert (wrong.status_code, missing.status_code) == (405, 404)
    assert "error" in wrong_body
    assert "error" in missing_body


def summaries(capsys: pytest.CaptureFixture[str]) -> list[tuple[int, str]]:
    """(status, outcome) of each delivery's summary log line, in order."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    return [(line["status"], line["outcome"]) for line in lines if line.get("event") == "webhook"]


async def test_each_answer_has_its_exact_body_and_outcome(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step 7: every answer is a small JSON body; the summary line names the outcome."""
    recorder, failing = Recorder("ok"), Recorder("bad")
    failing.fail = True
    ids = [new_svix_id() for _ in range(5)]
    ignored = envelope("waitlistEntry.created", {"id": "wle_1"})
    async with running(plugins=[recorder.plugin]) as r:
        capsys.readouterr()
        answers = [
            await r.post(BODY, msg_id=ids[0]),
            await r.post(BODY, msg_id=ids[0]),
            await r.post(ignored, msg_id=ids[1]),
            await r.post(b"[]", msg_id=ids[2]),
            await r.post(BODY, headers={"svix-id": "x"}),
            await r.post(BODY, secret="whsec_" + "b3RoZXI="),
        ]
        recorder.gate, recorder.started = asyncio.Event(), asyncio.Event()
        held = asyncio.create_task(r.post(BODY, msg_id=ids[3]))
        await asyncio.wait_for(recorder.started.wait(), 10)
        answers.append(await r.post(BODY, msg_id=ids[3]))
        recorder.gate.set()
        answers.append(await held)
    async with running(plugins=[failing.plugin]) as r:
        answers.append(await r.post(BODY, msg_id=ids[4]))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    logged = [(x["status"], x["outcome"]) for x in lines if x.get("event") == "webhook"]
    assert next(x["handlers"] for x in lines if x.get("event") == "webhook") == {"ok:record": "ok"}
    assert answers == [
        (200, {"status": "processed", "svix_id": ids[0]}),
        (200, {"status": "duplicate", "svix_id": ids[0]}),
        (200, {"status": "ignored", "svix_id": ids[1]}),
        (202, {"status": "rejected", "svix_id": ids[2], "reason": "body is not a JSON object"}),
        (400, {"error": "missing svix-id, svix-timestamp or svix-signature header"}),
        (401, {"error": "no signature matches a configured secret"}),
        (409, {"error": "delivery is being processed by another request", "svix_id": ids[3]}),
        (200, {"status": "processed", "svix_id": ids[3]}),
        (500, {"status": "failed", "svix_id": ids[4], "error": "a handler failed"}),
    ]
    assert logged == [
        (200, "processed"),
        (200, "duplicate"),
        (200, "ignored"),
        (202, "rejected"),
        (400, "bad_request"),
        (401, "invalid_signature"),
        (409, "in_progress"),
        (200, "processed"),
        (500, "failed"),
    ]


async def test_a_signed_body_that_is_not_utf8_is_kept_as_bytes(running: Runner) -> None:
    raw = b"\xff\xfe not utf-8"
    headers = signed_headers(raw)
    async with running(plugins=[Recorder().plugin]) as r:
        status, body = await r.post(raw, headers=headers)
        stored = await r.event(headers["svix-id"])
    assert (status, body["status"]) == (202, "rejected")
    assert stored is not None
    assert stored["payload"] == raw
    assert stored["status"] == "rejected"
    assert "error" in stored


async def test_a_body_refused_before_reading_is_413_and_logged_untimed(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(clerk_sync_max_body_bytes=64) as r:
        capsys.readouterr()
        answer = await r.post(b"{" + b" " * 100 + b"}")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    summary = [line for line in lines if line.get("event") == "webhook"]
    assert answer == (413, {"error": "body exceeds CLERK_SYNC_MAX_BODY_BYTES"})
    assert len(summary) == 1
    assert {k: summary[0][k] for k in ("svix_id", "outcome", "status", "duration_ms")} == {
        "svix_id": None,
        "outcome": "too_large",
        "status": 413,
        "duration_ms": 0.0,
    }


async def test_a_handler_that_cannot_reach_mongodb_makes_a_503_with_retry_after(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """The delivery is recorded `failed`, but the sender is told to retry later, not that the
    event is bad: the MongoDB rule of step 3, found by a handler."""
    plugin = Plugin("offline")

    @plugin.on("user.created")
    async def lose_connection(event: Event, ctx: Context[None]) -> None:
        raise AutoReconnect("connection closed")

    headers = signed_headers(BODY)
    async with running(plugins=[plugin]) as r:
        response = await r.client.post("/webhooks/clerk", data=BODY, headers=headers)
        stored = await r.event(headers["svix-id"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    warnings = [x for x in lines if x.get("event") == "store_unavailable"]
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert await response.get_json() == {
        "error": "storage unavailable, retry later",
        "svix_id": headers["svix-id"],
    }
    assert [w["error"] for w in warnings] == ["a handler could not reach MongoDB"]
    assert stored is not None
    assert stored["status"] == "failed"


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ({"status": "processing", "lease_until": LEASE}, False),  # the lease ends exactly now
        ({"status": "processing", "lease_until": LEASE - timedelta(milliseconds=1)}, True),
        ({"status": "processing", "lease_until": None}, True),  # held by nobody
        ({"lease_until": LEASE}, True),  # no status: an incomplete record
        ({"status": "failed", "lease_until": LEASE}, True),
        ({"status": "processed", "lease_until": None}, False),
    ],
)
def test_a_claim_is_taken_only_from_a_failed_or_an_expired_lease(
    before: dict[str, Any], expected: bool
) -> None:
    """The same rule as the store's claim condition (`lease_until < now`, strict), so an attempt
    never runs handlers while the lease of another still holds, not even at its last instant."""
    assert Receiver._claimed(before, LEASE.timestamp()) is expected
