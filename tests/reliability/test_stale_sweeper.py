"""The stale-delivery sweeper after a SIGKILL: no redelivery, no command, the delivery finished.

A server is killed inside a handler; nothing is sent again and `clerk-sync events replay` is not
run. A second server with CLERK_SYNC_STALE_SWEEP_SECONDS=1 re-runs the delivery once its lease
(handler timeout + 5 s = 8 s) has expired. About 12 s.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from clerk_sync.testing import new_svix_id
from tests.processes import ServerProcess, await_outcomes
from tests.reliability.conftest import HANDLER_TIMEOUT, server_env
from tests.reliability.sender import Delivery, Sender
from tests.reliability.test_duplicates_and_crashes import user_body, wait_for

pytestmark = pytest.mark.reliability


@pytest.fixture
def database(mongodb_url: str) -> Iterator[tuple[str, Any]]:
    name = f"reliability_sweep_{uuid.uuid4().hex[:12]}"
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, tz_aware=True)
    yield name, client[name]
    client.drop_database(name)
    client.close()


def test_the_sweeper_finishes_a_delivery_a_sigkill_left_processing(
    plugin_dir: Path, mongodb_url: str, database: tuple[str, Any], figures: dict[str, Any]
) -> None:
    name, db = database
    env = server_env(plugin_dir, mongodb_url, name)
    svix_id = new_svix_id()
    body = user_body("user_swept", 1, reliability={"sleep_first": HANDLER_TIMEOUT - 0.5})
    delivery = Delivery(svix_id, body)
    with ServerProcess({**env, "CLERK_SYNC_STALE_SWEEP_SECONDS": "1", "LOG_LEVEL": "info"}) as kept:
        victim = ServerProcess(env).start()
        sender = Sender([victim.url], timeout=HANDLER_TIMEOUT + 10)

        async def killed_attempt() -> None:
            async with httpx.AsyncClient(timeout=HANDLER_TIMEOUT + 10) as client:
                task = asyncio.create_task(sender.send_once(client, delivery, victim.url))
                await asyncio.to_thread(
                    wait_for,
                    lambda: db.reliability_counts.find_one({"_id": svix_id}) is not None,
                    10,
                    "the handler to start",
                )
                victim.stop(signal.SIGKILL)
                await task

        try:
            asyncio.run(killed_attempt())
        finally:
            victim.stop()
        killed_at = time.monotonic()
        crashed = db.webhook_events.find_one({"_id": svix_id})
        wait_for(
            lambda: (
                (db.webhook_events.find_one({"_id": svix_id}) or {}).get("status") != "processing"
            ),
            60,
            "the sweeper to finish the delivery",
        )
        finished_after = time.monotonic() - killed_at
        await_outcomes(db, [svix_id])
        metrics = httpx.get(kept.url + "/metrics").text
        replayed = [e for e in kept.events() if e.get("event") == "stale_delivery_replayed"]
    doc = db.webhook_events.find_one({"_id": svix_id})
    counts = db.reliability_counts.find_one({"_id": svix_id})
    figures["stale_sweeper"] = {
        "signal": "SIGKILL",
        "lease_seconds": HANDLER_TIMEOUT + 5,
        "sweep_seconds": 1,
        "finished_after_kill_seconds": round(finished_after, 1),
        "handler_starts": counts and counts.get("started"),
        "handler_completions": counts and counts.get("completed"),
    }
    assert svix_id not in sender.acked, "a killed server acknowledged"
    assert crashed is not None
    assert crashed["status"] == "processing"
    assert doc is not None
    assert doc["status"] == "processed"
    assert doc["attempts"] == 2
    assert counts == {"_id": svix_id, "started": 2, "completed": 1}, counts
    assert [(e["svix_id"], e["outcome"]) for e in replayed] == [(svix_id, "processed")]
    assert "\nclerk_sync_stale_deliveries 0.0\n" in metrics
    assert db.users.find_one({"clerk_id": "user_swept"})["first_name"] == "v1"
