"""What the delivery record and the per-answer log line hold around the edges of the pipeline:
terminal outcomes without a lease, UTC times, refusals before the id is known, MongoDB down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo.errors import OperationFailure

from clerk_sync import Context, Event, Plugin, Settings, create_app
from clerk_sync.testing import TEST_SECRET, envelope, new_svix_id, signed_headers
from tests.conftest import Runner
from tests.processes import free_port

BODY = envelope("user.created", {"id": "user_1", "object": "user"})


def users_plugin() -> Plugin:
    plugin = Plugin("plain")

    @plugin.on("user.created")
    async def accept(event: Event, ctx: Context[None]) -> None:
        return None

    return plugin


def log_lines(output: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == event]


@pytest.mark.parametrize(
    ("body", "status"),
    [(envelope("waitlistEntry.created", {"id": "wle_1"}), "ignored"), (b"not json", "rejected")],
)
async def test_an_ignored_or_rejected_delivery_holds_no_lease(
    running: Runner, body: bytes, status: str
) -> None:
    svix_id = new_svix_id()
    async with running(plugins=[users_plugin()]) as r:
        await r.post(body, msg_id=svix_id)
        stored = await r.event(svix_id)
    assert stored is not None
    assert (stored["status"], stored["lease_until"]) == (status, None)


@pytest.mark.usefixtures("far_from_utc")
async def test_delivery_times_are_utc_whatever_the_local_time_zone(running: Runner) -> None:
    svix_id = new_svix_id()
    async with running(plugins=[users_plugin()]) as r:
        await r.post(envelope("waitlistEntry.created", {"id": "wle_1"}), msg_id=svix_id)
        stored = await r.event(svix_id)
    assert stored is not None
    now = datetime.now(UTC)
    assert abs(stored["received_at"] - now) < timedelta(minutes=1)
    assert abs(stored["last_attempt_at"] - now) < timedelta(minutes=1)


async def test_a_refusal_before_the_id_is_read_logs_no_id(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(plugins=[users_plugin()]) as r:
        capsys.readouterr()
        status, _ = await r.post(BODY, headers={"content-type": "application/json"})
    assert status == 400
    [line] = log_lines(capsys.readouterr().out, "webhook")
    assert (line["status"], line["svix_id"]) == (400, None)


async def test_mongodb_down_answers_503_marks_it_down_and_logs_the_delivery(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens at the configured MongoDB: 503, `clerk_sync_mongodb_up` 0, and a
    `store_unavailable` line naming the delivery."""
    svix_id = new_svix_id()
    dead = f"mongodb://127.0.0.1:{free_port()}"
    async with running(plugins=[users_plugin()], mongodb_url=dead) as r:
        capsys.readouterr()
        response = await r.client.post(
            "/webhooks/clerk", data=BODY, headers=signed_headers(BODY, msg_id=svix_id)
        )
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    assert response.status_code == 503
    up = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "clerk_sync_mongodb_up"
    ]
    assert up == [0.0]
    outcomes = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "clerk_sync_webhooks_total"
    }
    assert outcomes == {"unavailable": 1.0}
    output = capsys.readouterr().out
    [line] = log_lines(output, "store_unavailable")
    assert line["svix_id"] == svix_id
    assert TEST_SECRET not in line["error"]
    [answered] = log_lines(output, "webhook")
    assert (answered["status"], answered["outcome"]) == (503, "unavailable")


async def test_a_delivery_before_start_up_is_503_and_says_storage_is_not_started(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    """A request that reaches the app before its serving hooks ran (no store yet) is refused
    like an outage, and the log says why."""
    app = create_app(make_settings(), plugins=[users_plugin()])
    capsys.readouterr()
    response = await app.test_client().post(
        "/webhooks/clerk", data=BODY, headers=signed_headers(BODY)
    )
    assert response.status_code == 503
    [line] = log_lines(capsys.readouterr().out, "store_unavailable")
    assert line["error"] == "storage is not started"


async def test_a_bug_in_the_pipeline_answers_500_json_and_logs_the_delivery(
    running: Runner, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever raises inside the pipeline, Svix gets a JSON 500 (so it retries) naming the
    delivery, the log has a `webhook_internal_error` line for it, and the metric says failed."""
    svix_id = new_svix_id()

    def broken(event_type: str) -> list[Any]:
        raise RuntimeError("a bug in routing")

    async with running(plugins=[users_plugin()]) as r:
        monkeypatch.setattr(r.app.extensions["clerk_sync"].router, "handlers_for", broken)
        capsys.readouterr()
        started = time.perf_counter()
        status, body = await r.post(BODY, msg_id=svix_id)
        took_ms = (time.perf_counter() - started) * 1000
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    assert status == 500
    assert body == {"error": "internal error", "svix_id": svix_id}
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    outcomes = {
        (s.labels["event_type"], s.labels["outcome"]): s.value
        for s in samples
        if s.name == "clerk_sync_webhooks_total"
    }
    assert outcomes == {("user.created", "failed"): 1.0}
    timed = {
        s.labels["event_type"]: s.value
        for s in samples
        if s.name == "clerk_sync_webhook_duration_seconds_count"
    }
    assert timed == {"user.created": 1.0}
    output = capsys.readouterr().out
    [error] = log_lines(output, "webhook_internal_error")
    assert error["svix_id"] == svix_id
    assert "a bug in routing" in error["exception"]
    [answered] = log_lines(output, "webhook")
    assert (answered["status"], answered["outcome"], answered["event_type"]) == (
        500,
        "failed",
        "user.created",
    )
    assert answered["svix_id"] == svix_id
    assert 0 < answered["duration_ms"] <= took_ms, "the time spent inside this request"
    assert isinstance(answered["duration_ms"], float)
    assert answered["duration_ms"] == round(answered["duration_ms"], 2), "milliseconds, 2 places"


async def test_the_body_limit_admits_its_own_size_and_names_the_setting(running: Runner) -> None:
    """The receiver's own check, for callers that hand it a body without the HTTP layer's
    streaming limit in front (the endpoint refuses larger bodies before reading them whole)."""
    for limit, expected in ((len(BODY), 200), (len(BODY) - 1, 413)):
        async with running(plugins=[users_plugin()], clerk_sync_max_body_bytes=limit) as r:
            receiver = r.app.extensions["clerk_sync"].receiver
            answer = await receiver.receive(BODY, signed_headers(BODY))
        assert answer.status == expected, limit
    assert answer.body == {"error": "body exceeds CLERK_SYNC_MAX_BODY_BYTES"}


async def test_mongodb_refusing_the_claim_for_a_server_reason_is_503_not_rejected(
    running: Runner, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the codes meaning "this document cannot be stored" make a 202 `rejected`; a server
    refusing the write for its own reasons (here NotWritablePrimary, as during an election) is a
    503 with Retry-After, so Svix retries, and the log names the code."""
    svix_id = new_svix_id()

    async def not_primary(*args: Any, **kwargs: Any) -> None:
        raise OperationFailure("not primary", code=10107)

    async with running(plugins=[users_plugin()]) as r:
        monkeypatch.setattr(r.app.extensions["clerk_sync"].receiver.events, "claim", not_primary)
        capsys.readouterr()
        response = await r.client.post(
            "/webhooks/clerk", data=BODY, headers=signed_headers(BODY, msg_id=svix_id)
        )
    assert response.status_code == 503
    assert response.headers.get("Retry-After") == "5"
    [line] = log_lines(capsys.readouterr().out, "store_unavailable")
    assert (line["svix_id"], line["error"]) == (svix_id, "MongoDB refused the write: 10107")
