"""A rolling restart behind nginx: each of two servers in turn gets SIGTERM and is started
again while a Svix-like sender streams deliveries through the proxy.

With the shut-down drain (CLERK_SYNC_SHUTDOWN_DELAY=3) nothing is lost, no handler runs twice
and nginx answers no 5xx. The same run with the drain off (delay 0) records the 5xx it lets
through, as a figure only: how many depends on timing.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from clerk_sync.cli.server import GRACEFUL_TIMEOUT
from clerk_sync.testing import envelope, new_svix_id
from tests.processes import ServerProcess
from tests.reliability.conftest import server_env
from tests.reliability.proxy import Nginx, ReadinessController
from tests.reliability.sender import Delivery, Sender

pytestmark = pytest.mark.reliability

DRAIN = 3.0  # ample here: the test's "ingress" follows readiness within about 0.2 s
WARMUP = 1.0  # seconds of traffic before the first restart, and after each server is back
CONCURRENCY = 8


def address(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"


async def stream_until(stop: threading.Event, run: str) -> AsyncIterator[Delivery]:
    """user.created deliveries, one new user each, until `stop` is set."""
    number = 0
    while not stop.is_set():
        number += 1
        data = {"id": f"user_{run}_{number}", "email_addresses": [], "first_name": "Roll"}
        yield Delivery(new_svix_id(), envelope("user.created", data))
        await asyncio.sleep(0)


def roll(
    servers: list[ServerProcess], controller: ReadinessController, delay: float
) -> list[dict[str, Any]]:
    """SIGTERM each server in turn (the main process, as the kubelet does), wait for it to
    exit, start it again on the same port and wait until nginx routes to it again."""
    restarts = []
    time.sleep(WARMUP)
    for index, server in enumerate(servers):
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.process is not None
        while address(server) in controller.nginx.upstream and server.process.poll() is None:
            time.sleep(0.01)
        unrouted = time.monotonic() - signalled
        code = server.process.wait(timeout=delay + GRACEFUL_TIMEOUT + 10)
        exited = time.monotonic() - signalled
        server.stop()
        again = ServerProcess(server.env, port=server.port).start()
        servers[index] = again
        controller.wait_for(address(again))
        restarts.append(
            {
                "exit_code": code,
                "seconds_until_out_of_nginx": round(unrouted, 2),
                "seconds_to_exit": round(exited, 2),
                "seconds_until_routed_again": round(time.monotonic() - signalled, 2),
            }
        )
        time.sleep(WARMUP)
    return restarts


@pytest.fixture
def database(mongodb_url: str) -> Iterator[tuple[MongoClient[dict[str, Any]], str]]:
    name = f"rolling_{uuid.uuid4().hex[:12]}"
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, tz_aware=True)
    yield client, name
    client.drop_database(name)
    client.close()


@pytest.mark.parametrize("delay", [DRAIN, 0.0], ids=["drain", "no-drain"])
def test_rolling_restart_behind_nginx_loses_nothing_and_answers_no_5xx(
    delay: float,
    plugin_dir: Path,
    mongodb_url: str,
    database: tuple[MongoClient[dict[str, Any]], str],
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    client, db_name = database
    env = server_env(
        plugin_dir, mongodb_url, db_name, CLERK_SYNC_SHUTDOWN_DELAY=str(delay), LOG_LEVEL="error"
    )
    servers = [ServerProcess(env), ServerProcess(env)]
    nginx = Nginx(tmp_path / "nginx")
    controller: ReadinessController | None = None
    try:
        for server in servers:
            server.start()
        nginx.start([address(s) for s in servers])
        controller = ReadinessController(nginx, [address(s) for s in servers]).start()
        sender = Sender([nginx.url], concurrency=CONCURRENCY)
        stop = threading.Event()
        started = time.monotonic()

        async def scenario() -> list[dict[str, Any]]:
            streaming = asyncio.create_task(sender.stream(stream_until(stop, uuid.uuid4().hex)))
            try:
                return await asyncio.to_thread(roll, servers, controller, delay)
            finally:
                stop.set()
                await streaming

        restarts = asyncio.run(scenario())
        seconds = time.monotonic() - started
    finally:
        if controller is not None:
            controller.stop()
        nginx.stop()
        for server in servers:
            server.stop()

    sent = {a.svix_id for a in sender.attempts}
    db = client[db_name]
    stored = {d["_id"]: d["status"] for d in db.webhook_events.find({}, {"status": 1})}
    counts = {d["_id"]: d for d in db.reliability_counts.find()}
    ran_once = [
        i
        for i in sender.acked
        if (counts.get(i, {}).get("started"), counts.get(i, {}).get("completed")) == (1, 1)
    ]
    by_status = {str(status): n for status, n in sorted(sender.statuses.items(), key=str)}
    nginx_answers = dict(sorted(nginx.answers().items()))
    fives = sum(n for status, n in nginx_answers.items() if status.startswith("5"))
    found = {
        "shutdown_delay_seconds": delay,
        "servers": 2,
        "restarts": len(restarts),
        "restart_details": restarts,
        "deliveries": len(sent),
        "attempts": len(sender.attempts),
        "acknowledged": len(sender.acked),
        "stored_processed": sum(1 for i in sender.acked if stored.get(i) == "processed"),
        "handler_ran_exactly_once": len(ran_once),
        "answers_by_status": by_status,
        "nginx_answers_by_status": nginx_answers,
        "nginx_5xx": fives,
        "nginx_reloads": controller.reloads,
        "nginx_failed_upstream_attempts": len(nginx.upstream_errors()),
        "seconds": round(seconds, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    figures["rolling_restart" if delay else "rolling_restart_without_drain"] = found

    assert len(restarts) == 2
    assert [r["exit_code"] for r in restarts] == [0, 0]
    assert not sender.gave_up
    assert sender.acked == sent
    assert found["stored_processed"] == len(sent), found
    if delay:
        assert found["handler_ran_exactly_once"] == len(sent), found
        assert sender.server_errors() == [], sender.server_errors()[:5]
        assert fives == 0, (nginx_answers, nginx.upstream_errors()[:10])
