"""What one handler's failure or timeout leaves behind: the stored outcome, the log line, metrics.

An SRE reads these to find which plugin failed and why; a retry reads the stored outcome to
know which handlers still have to run.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from clerk_sync import Context, Event, Plugin
from clerk_sync.testing import envelope, new_svix_id
from tests.conftest import Runner

BODY = envelope("user.created", {"id": "user_1", "object": "user"})
TIMEOUT = 0.2


def failing_plugin() -> Plugin:
    plugin = Plugin("shaky")

    @plugin.on("user.created")
    async def explode(event: Event, ctx: Context[None]) -> None:
        raise RuntimeError("the upstream said no")

    @plugin.on("user.created")
    async def stall(event: Event, ctx: Context[None]) -> None:
        if event.data.get("stall"):
            await asyncio.sleep(30)

    return plugin


def log_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def metric(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


LABELS = (("event_type", "user.created"), ("plugin", "shaky"))


async def test_a_failed_handler_is_stored_logged_and_counted(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    svix_id = new_svix_id()
    started = time.monotonic()
    async with running(plugins=[failing_plugin()]) as r:
        capsys.readouterr()
        status, _ = await r.post(BODY, msg_id=svix_id)
        stored = await r.event(svix_id)
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    wall = time.monotonic() - started
    assert status == 500
    assert stored is not None
    outcomes = stored["handlers"]
    assert set(outcomes) == {"shaky:explode", "shaky:stall"}
    failed = outcomes["shaky:explode"]
    assert set(failed) == {"status", "at", "error"}
    assert (failed["status"], failed["error"]) == ("failed", "RuntimeError: the upstream said no")
    assert (outcomes["shaky:stall"]["status"], outcomes["shaky:stall"]["error"]) == ("ok", None)

    lines = [
        line for line in log_lines(capsys.readouterr().out) if line["event"] == "handler_failed"
    ]
    assert len(lines) == 1
    assert lines[0]["handler"] == "explode"
    assert lines[0]["error"] == "RuntimeError: the upstream said no"
    assert lines[0]["level"] == "warning"

    assert metric(text, "clerk_sync_handler_failures_total") == {LABELS: 1.0}
    assert metric(text, "clerk_sync_handler_duration_seconds_count") == {LABELS: 2.0}
    # each run's duration is a real elapsed time: positive, and within the test's own wall time
    total = metric(text, "clerk_sync_handler_duration_seconds_sum")[LABELS]
    assert 0 < total <= wall


async def test_a_handler_over_its_timeout_is_stored_logged_and_counted(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    svix_id = new_svix_id()
    body = envelope("user.created", {"id": "user_2", "object": "user", "stall": True})
    async with running(plugins=[failing_plugin()], clerk_sync_handler_timeout=TIMEOUT) as r:
        capsys.readouterr()
        status, _ = await r.post(body, msg_id=svix_id)
        stored = await r.event(svix_id)
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    assert status == 500
    assert stored is not None
    stalled = stored["handlers"]["shaky:stall"]
    assert (stalled["status"], stalled["error"]) == ("timeout", "handler timed out after 0.2 s")
    lines = [
        line for line in log_lines(capsys.readouterr().out) if line["event"] == "handler_timed_out"
    ]
    assert [(line["handler"], line["error"], line["level"]) for line in lines] == [
        ("stall", "handler timed out after 0.2 s", "warning")
    ]
    # both handlers failed this delivery: one raised, one timed out
    assert metric(text, "clerk_sync_handler_failures_total") == {LABELS: 2.0}


@pytest.mark.usefixtures("far_from_utc")
async def test_an_outcome_time_is_utc_whatever_the_local_time_zone(running: Runner) -> None:
    svix_id = new_svix_id()
    async with running(plugins=[failing_plugin()]) as r:
        await r.post(BODY, msg_id=svix_id)
        stored = await r.event(svix_id)
    assert stored is not None
    at = stored["handlers"]["shaky:explode"]["at"]
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)


class Greeting(BaseModel):
    greeting: str = "hello"


async def test_a_handler_gets_its_plugin_settings_and_logs_with_the_delivery_fields(
    running: Runner, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ctx carries the plugin's own settings, the app's settings and the plugin name; what it
    logs through ctx.log names the delivery, its type and the plugin."""
    monkeypatch.setenv("CLERK_SYNC_PLUGIN_GREETER_GREETING", "kia ora")
    seen: list[tuple[Any, ...]] = []
    plugin = Plugin("greeter", settings=Greeting)

    @plugin.on("user.created")
    async def greet(event: Event, ctx: Context[Greeting]) -> None:
        seen.append((ctx.settings.greeting, ctx.app_settings.mongodb_db, ctx.plugin))
        ctx.log.info("greeted", user=event.data["id"])

    svix_id = new_svix_id()
    async with running(plugins=[plugin]) as r:
        capsys.readouterr()
        status, _ = await r.post(BODY, msg_id=svix_id)
        database = r.db.name
    assert status == 200
    assert seen == [("kia ora", database, "greeter")]
    [line] = [line for line in log_lines(capsys.readouterr().out) if line["event"] == "greeted"]
    assert (line["svix_id"], line["event_type"], line["plugin"], line["user"]) == (
        svix_id,
        "user.created",
        "greeter",
        "user_1",
    )


async def test_a_failed_handler_log_line_names_the_delivery(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    svix_id = new_svix_id()
    async with running(plugins=[failing_plugin()]) as r:
        capsys.readouterr()
        await r.post(BODY, msg_id=svix_id)
    [line] = [
        line for line in log_lines(capsys.readouterr().out) if line["event"] == "handler_failed"
    ]
    assert (line["svix_id"], line["event_type"], line["plugin"]) == (
        svix_id,
        "user.created",
        "shaky",
    )


async def test_the_delivery_lag_is_arrival_minus_the_envelope_time(running: Runner) -> None:
    """`clerk_sync_delivery_lag_seconds`: a delivery created 30 s ago counts about 30 s; one
    stamped in the future (a skewed clock) counts 0, never a negative lag."""
    plugin = Plugin("quiet")

    @plugin.on("user.created")
    async def accept(event: Event, ctx: Context[None]) -> None:
        return None

    now_ms = int(time.time() * 1000)
    late = envelope(
        "user.created", {"id": "user_1", "object": "user"}, timestamp_ms=now_ms - 30_000
    )
    early = envelope(
        "user.created", {"id": "user_2", "object": "user"}, timestamp_ms=now_ms + 60_000
    )
    started = time.monotonic()
    async with running(plugins=[plugin]) as r:
        assert (await r.post(late))[0] == 200
        text = (await (await r.client.get("/metrics")).get_data()).decode()
        assert metric(text, "clerk_sync_delivery_lag_seconds_count") == {(): 1.0}
        once = metric(text, "clerk_sync_delivery_lag_seconds_sum")[()]
        assert (await r.post(early))[0] == 200
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    wall = time.monotonic() - started
    assert 30 <= once <= 30 + wall + 1
    assert metric(text, "clerk_sync_delivery_lag_seconds_count") == {(): 2.0}
    assert metric(text, "clerk_sync_delivery_lag_seconds_sum")[()] == once
