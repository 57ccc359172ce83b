"""What the delivery record and the per-answer log line hold around the edges of the pipeline:
terminal outcomes without a lease, UTC times, refusals before the id is known, MongoDB down."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

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
        status, body = await r.post(BODY, msg_id=svix_id)
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    assert status == 500
    assert body == {"error": "internal error", "svix_id": svix_id}
    outcomes = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "clerk_sync_webhooks_total"
    }
    assert outcomes == {"failed": 1.0}
    output = capsys.readouterr().out
    [error] = log_lines(output, "webhook_internal_error")
    assert error["svix_id"] == svix_id
    assert "a bug in routing" in error["exception"]
    [answered] = log_lines(output, "webhook")
    assert (answered["status"], answered["outcome"]) == (500, "failed")
