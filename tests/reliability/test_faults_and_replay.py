"""Plugin faults are isolated; replayed deliveries are refused or recognised (in-process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from clerk_sync_users import plugin as users
from pymongo.errors import AutoReconnect

from clerk_sync import Context, Event, Plugin
from clerk_sync.storage.embedded import EmbeddedProcess
from clerk_sync.testing import envelope, new_svix_id, signed_headers
from tests.conftest import Runner
from tests.processes import free_port

pytestmark = pytest.mark.reliability

TIMEOUT = 1.0


def fault_plugins(calls: dict[str, int]) -> list[Plugin]:
    raiser, hanger, slow = Plugin("raiser"), Plugin("hanger"), Plugin("slow")

    @raiser.on("user.created")
    async def explode(event: Event, ctx: Context[None]) -> None:
        calls["raiser"] += 1
        raise RuntimeError("plugin bug")

    @hanger.on("user.created")
    async def hang(event: Event, ctx: Context[None]) -> None:
        calls["hanger"] += 1
        await asyncio.Event().wait()

    @slow.on("user.created")
    async def crawl(event: Event, ctx: Context[None]) -> None:
        calls["slow"] += 1
        await asyncio.sleep(TIMEOUT * 0.6)

    return [raiser, hanger, slow]


async def test_a_raising_a_hanging_and_a_slow_handler_leave_the_others_unaffected(
    running: Runner, figures: dict[str, Any]
) -> None:
    calls = {"raiser": 0, "hanger": 0, "slow": 0}
    plugins = [users, *fault_plugins(calls)]
    async with running(plugins=plugins, clerk_sync_handler_timeout=TIMEOUT) as r:
        body = envelope("user.created", {"id": "user_faults", "first_name": "Ada"})
        headers = signed_headers(body)
        started = time.monotonic()
        status, answer = await r.post(body, headers=headers)
        took = time.monotonic() - started
        assert (status, answer["status"]) == (500, "failed")
        assert took < TIMEOUT + 2, "the hanging handler is cut at the handler timeout"
        doc = await r.event(headers["svix-id"])
        assert doc is not None
        outcomes = {k: v["status"] for k, v in doc["handlers"].items()}
        assert outcomes == {
            "users:upsert_user": "ok",
            "slow:crawl": "ok",
            "raiser:explode": "failed",
            "hanger:hang": "timeout",
        }
        assert "plugin bug" in doc["handlers"]["raiser:explode"]["error"]
        user = await r.db.users.find_one({"clerk_id": "user_faults"})
        assert user is not None
        assert user["first_name"] == "Ada"

        # Svix retries: only the handlers that did not succeed run again
        status, _ = await r.post(body, headers=signed_headers(body, msg_id=headers["svix-id"]))
        assert status == 500
        assert calls == {"raiser": 2, "hanger": 2, "slow": 1}
        doc = await r.event(headers["svix-id"])
        assert doc is not None
        assert doc["attempts"] == 2
    figures["plugin_faults"] = {
        "handlers": sorted(outcomes),
        "outcomes_first_attempt": outcomes,
        "handler_timeout_seconds": TIMEOUT,
        "first_attempt_seconds": round(took, 2),
        "reruns_on_retry": {k: v - 1 for k, v in calls.items()},
    }


async def test_a_captured_delivery_replayed_later_is_refused_or_recognised(
    running: Runner, figures: dict[str, Any]
) -> None:
    async with running(plugins=[users]) as r:
        body = envelope("user.created", {"id": "user_replay", "first_name": "Bo"})
        captured = signed_headers(body)
        status, answer = await r.post(body, headers=captured)
        assert (status, answer["status"]) == (200, "processed")

        # resent as captured within the tolerance: recognised, no handler runs
        status, answer = await r.post(body, headers=dict(captured))
        assert (status, answer["status"]) == (200, "duplicate")

        # the same captured bytes 6 minutes later: the server's clock moves, the headers do not
        receiver = r.app.extensions["clerk_sync"].receiver
        real_clock = receiver.clock
        receiver.clock = lambda: real_clock() + 6 * 60
        try:
            status, answer = await r.post(body, headers=dict(captured))
        finally:
            receiver.clock = real_clock
        assert status == 401, answer

        # a fresh delivery signed with a timestamp 6 minutes old: refused, never recorded
        fresh = envelope("user.created", {"id": "user_replay2"})
        old = signed_headers(fresh, timestamp=int(time.time()) - 6 * 60 - 1)
        status, _ = await r.post(fresh, headers=old)
        assert status == 401
        assert await r.event(old["svix-id"]) is None

        # a new svix-id on the captured signature does not verify either
        forged = {**captured, "svix-id": new_svix_id()}
        status, _ = await r.post(body, headers=forged)
        assert status == 401
        doc = await r.event(captured["svix-id"])
        assert doc is not None
        assert doc["attempts"] == 1
    figures["replay"] = {
        "replayed_within_tolerance": "200 duplicate",
        "replayed_after_6_minutes": 401,
        "old_timestamp": 401,
        "forged_svix_id": 401,
    }


async def test_a_handler_failing_because_mongodb_is_down_answers_503(running: Runner) -> None:
    flaky = Plugin("flaky")

    @flaky.on("user.created")
    async def lose_connection(event: Event, ctx: Context[None]) -> None:
        raise AutoReconnect("connection closed")

    async with running(plugins=[flaky]) as r:
        body = envelope("user.created", {"id": "user_outage"})
        headers = signed_headers(body)
        response = await r.client.post("/webhooks/clerk", data=body, headers=headers)
        assert response.status_code == 503
        assert response.headers.get("Retry-After")


async def test_a_handler_timing_out_while_mongodb_is_down_answers_503(
    running: Runner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The outage test's lost case (CI, 2026-12-02): MongoDB went away while a handler waited on
    it, the handler ran into its timeout before the driver gave up, and the answer was a 500
    "a handler failed" without Retry-After. The driver raised nothing; the timeout was the outage.

    Here the handler stops the delivery's own MongoDB server and writes twice: the first write
    loses the connection, the second waits for a server and the timeout cancels it; the store is
    started again before the outcome is recorded (blocking the loop, on purpose), so only the
    answer is in question."""
    store = EmbeddedProcess(tmp_path / "store", port=free_port())
    url = store.start()
    waiter = Plugin("waiter")

    @waiter.on("user.created")
    async def write_while_down(event: Event, ctx: Context[None]) -> None:
        waits = ctx.engine.database["waits"]
        store.stop()
        try:
            with contextlib.suppress(AutoReconnect):  # the pooled connection is gone
                await waits.insert_one({"_id": event.svix_id})
            await waits.insert_one({"_id": event.svix_id})  # waits for a server: cancelled
        finally:
            store.start()

    try:
        async with running(
            plugins=[waiter], mongodb_url=url, clerk_sync_handler_timeout=TIMEOUT
        ) as r:
            svix_id = new_svix_id()
            body = envelope("user.created", {"id": "user_timeout_outage"})
            response = await r.client.post(
                "/webhooks/clerk", data=body, headers=signed_headers(body, msg_id=svix_id)
            )
            stored = await r.event(svix_id)
            gauge = await (await r.client.get("/metrics")).get_data(as_text=True)
    finally:
        store.stop()
    assert response.status_code == 503, await response.get_data(as_text=True)
    assert response.headers.get("Retry-After")
    assert stored is not None
    assert stored["status"] == "failed"
    assert stored["handlers"]["waiter:write_while_down"]["status"] == "timeout"
    assert "clerk_sync_mongodb_up 0.0" in gauge
    [warning] = [
        line
        for line in map(json.loads, capsys.readouterr().out.splitlines())
        if line.get("event") == "handler_timed_out"  # every line is JSON (log_format=json)
    ]
    assert warning["mongodb_lost"] is True
    assert warning["handler"] == "write_while_down"
