"""The shut-down drain of DESIGN.md ("Shut-down") on real `clerk-sync serve` processes.

After SIGTERM `/readyz` answers 503 `shutting down` at once, every route, the webhook included,
keeps being served for CLERK_SYNC_SHUTDOWN_DELAY seconds, then the listener closes, a request
still in flight finishes, and the process exits 0 within delay + graceful timeout.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from clerk_sync.cli.server import GRACEFUL_TIMEOUT
from clerk_sync.errors import ConfigError
from clerk_sync.settings import load_settings
from clerk_sync.testing import TEST_SECRET, envelope, new_svix_id, signed_headers
from tests.processes import ServerProcess
from tests.test_plugin_loading import install_fake_distribution

# 5 s: long enough that deliveries sent one after another during it (until 1.5 s before its end)
# number at least 3 on a loaded machine, where one can take 0.7 s
DELAY = 5.0
#: how long the in-flight request of the drain test outlasts the delay
IN_FLIGHT_PAST_DELAY = 4.0

SLOW_SOURCE = """
    import asyncio

    from clerk_sync import Plugin

    plugin = Plugin("slow")


    @plugin.on("user.updated")
    async def slow(event, ctx):
        await asyncio.sleep(float(event.data.get("sleep", 0)))
"""


def delivery(kind: str, **data: Any) -> tuple[bytes, dict[str, str]]:
    body = envelope(kind, {"id": f"user_{new_svix_id()}", "email_addresses": [], **data})
    return body, signed_headers(body, msg_id=new_svix_id())


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + "/webhooks/clerk", content=body, headers=headers, timeout=30)


def refused(url: str) -> bool:
    """Whether a new connection is no longer served: refused, or (workers sharing the port
    close their listeners one after the other) taken into a closing listener's backlog and
    dropped unanswered."""
    try:
        httpx.get(url + "/livez", timeout=2)
    except (httpx.ConnectError, httpx.RemoteProtocolError):
        return True
    return False


@pytest.fixture
def drain_env(tmp_path: Path, mongodb_url: str, mongodb_db: str) -> dict[str, str]:
    install_fake_distribution(tmp_path, "slow", SLOW_SOURCE)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    return {
        "PYTHONPATH": path,
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_SYNC_PLUGINS": "users,slow",
        "CLERK_SYNC_REQUIRED_PLUGINS": "users,slow",
        "CLERK_SYNC_SHUTDOWN_DELAY": str(DELAY),
        "LOG_LEVEL": "info",
    }


@pytest.mark.parametrize(
    ("server_name", "workers"), [("granian", 1), ("granian", 2), ("hypercorn", 2)]
)
def test_sigterm_fails_readiness_at_once_serves_through_the_delay_and_exits_0(
    drain_env: dict[str, str], mongodb_url: str, mongodb_db: str, server_name: str, workers: int
) -> None:
    """On the default server (granian) and on `--server hypercorn` alike."""
    chosen = None if server_name == "granian" else server_name
    server = ServerProcess(drain_env, workers=workers, server=chosen).start()
    try:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 200
        assert ready.headers["server"].startswith(server_name)
        server.send_signal()  # the main process only, as the kubelet does
        signalled = time.monotonic()

        readiness = httpx.get(server.url + "/readyz", timeout=2)
        while readiness.status_code == 200 and time.monotonic() - signalled < 5:
            readiness = httpx.get(server.url + "/readyz", timeout=2)
        not_ready_after = time.monotonic() - signalled

        # every route keeps answering during the delay; every worker fails readiness
        answers = []
        readyz = []
        while time.monotonic() - signalled < DELAY - 1.5:
            body, headers = delivery("user.created")
            try:
                answers.append((headers["svix-id"], post(server.url, body, headers)))
            except httpx.ConnectError as error:
                # refused within the delay: say when, and what the server logged
                elapsed = time.monotonic() - signalled
                log = "\n".join(server.lines[-40:])
                raise AssertionError(f"refused {elapsed:.2f} s after SIGTERM:\n{log}") from error
            readyz.append(httpx.get(server.url + "/readyz", timeout=2).status_code)
        livez = httpx.get(server.url + "/livez", timeout=2).status_code

        # a delivery still in flight when the listener closes is answered
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # sleeps until IN_FLIGHT_PAST_DELAY after the delay; from the delay's end on, the
            # listener is polled until it refuses while that request still runs (polled, not
            # looked at once: on a loaded machine the close can come a moment after the delay)
            sleep = DELAY - (time.monotonic() - signalled) + IN_FLIGHT_PAST_DELAY
            body, headers = delivery("user.updated", sleep=sleep)
            in_flight = pool.submit(post, server.url, body, headers)
            closed_while_in_flight = False
            while not in_flight.done() and not closed_while_in_flight:
                if time.monotonic() - signalled >= DELAY:
                    closed_while_in_flight = refused(server.url) and not in_flight.done()
                time.sleep(0.05)
            slow_answer = in_flight.result(timeout=30)
        code = server.process.wait(timeout=DELAY + GRACEFUL_TIMEOUT + 5)  # type: ignore[union-attr]
        exited_after = time.monotonic() - signalled
    finally:
        server.stop()

    assert not_ready_after < 1.0
    assert readiness.status_code == 503
    assert readiness.json() == {"status": "not_ready", "reasons": ["shutting down"]}
    assert len(answers) >= 3
    assert [a.status_code for _, a in answers] == [200] * len(answers), answers
    assert set(readyz) == {503}
    assert livez == 200
    assert closed_while_in_flight
    assert slow_answer.status_code == 200, slow_answer.text
    assert code == 0
    assert exited_after < DELAY + GRACEFUL_TIMEOUT
    draining = {e["pid"] for e in server.events() if e.get("event") == "shutting_down"}
    assert len(draining) == workers  # each worker logged its own drain

    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    try:
        events = client[mongodb_db]["webhook_events"]
        ids = [svix_id for svix_id, _ in answers] + [headers["svix-id"]]
        stored = {doc["_id"]: doc["status"] for doc in events.find({"_id": {"$in": ids}})}
    finally:
        client.close()
    assert stored == dict.fromkeys(ids, "processed")


def test_shutdown_delay_defaults_to_5_and_refuses_negative_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLERK_SYNC_SHUTDOWN_DELAY", raising=False)
    assert load_settings().clerk_sync_shutdown_delay == 5.0
    monkeypatch.setenv("CLERK_SYNC_SHUTDOWN_DELAY", "-1")
    with pytest.raises(ConfigError, match="CLERK_SYNC_SHUTDOWN_DELAY"):
        load_settings()
