"""Duplicates raced across two servers, and a server killed in the middle of a handler."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import pytest

from clerk_sync.testing import envelope, new_svix_id
from tests.processes import ServerProcess, await_outcomes
from tests.reliability.conftest import HANDLER_TIMEOUT, Pair
from tests.reliability.sender import Delivery, Sender

pytestmark = pytest.mark.reliability

RACES = 5
COPIES = 50


def user_body(user_id: str, version: int, **extra: Any) -> bytes:
    data = {
        "id": user_id,
        "first_name": f"v{version}",
        "email_addresses": [],
        "updated_at": 1_700_000_000_000 + version,
        **extra,
    }
    return envelope("user.updated" if version else "user.created", data)


async def race(sender: Sender, delivery: Delivery) -> list[int | None]:
    """COPIES attempts of one delivery at once, alternating between the servers."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:
        attempts = await asyncio.gather(
            *(
                sender.send_once(client, delivery, sender.urls[i % len(sender.urls)])
                for i in range(COPIES)
            )
        )
    return [a.status for a in attempts]


def test_the_same_svix_id_sent_50_times_at_once_runs_each_handler_once(
    pair: Pair, figures: dict[str, Any]
) -> None:
    sender = Sender(pair.urls)
    answers: dict[str, list[int | None]] = {}
    deliveries = [Delivery(new_svix_id(), user_body(f"user_race{n}", 0)) for n in range(RACES)]
    for delivery in deliveries:
        answers[delivery.svix_id] = asyncio.run(race(sender, delivery))
    await_outcomes(pair.db, answers)
    for svix_id, statuses in answers.items():
        assert set(statuses) <= {200, 409}, statuses
        counts = pair.db.reliability_counts.find_one({"_id": svix_id})
        assert counts is not None
        assert (counts["started"], counts["completed"]) == (1, 1), counts
        doc = pair.db.webhook_events.find_one({"_id": svix_id})
        assert doc is not None
        assert doc["status"] == "processed"
        assert doc["attempts"] == 1
        assert set(doc["handlers"]) == {"users:upsert_user", "counter:count"}
    # whoever got 409 is answered 200 duplicate once the work is done: Svix retries converge
    asyncio.run(sender.send_all(deliveries))
    assert sender.acked == set(answers)
    figures["duplicates"] = {
        "races": RACES,
        "copies_per_race": COPIES,
        "servers": len(pair.servers),
        "answers": {str(k): sum(s.count(k) for s in answers.values()) for k in (200, 409, None)},
        "handler_runs_per_delivery": 1,
    }


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_server_killed_mid_handler_is_finished_by_the_redelivery_once(
    pair: Pair, figures: dict[str, Any]
) -> None:
    victim = ServerProcess(pair.env).start()
    svix_id = new_svix_id()
    body = user_body("user_crash", 1, reliability={"sleep_first": HANDLER_TIMEOUT - 0.5})
    delivery = Delivery(svix_id, body)
    sender = Sender([victim.url], timeout=HANDLER_TIMEOUT + 10)

    async def first_attempt() -> None:
        async with httpx.AsyncClient(timeout=HANDLER_TIMEOUT + 10) as client:
            task = asyncio.create_task(sender.send_once(client, delivery, victim.url))
            await asyncio.to_thread(
                wait_for,
                lambda: pair.db.reliability_counts.find_one({"_id": svix_id}) is not None,
                10,
                "the handler to start",
            )
            victim.stop(signal.SIGKILL)
            await task

    try:
        asyncio.run(first_attempt())
    finally:
        victim.stop()
    assert svix_id not in sender.acked, "a killed server acknowledged"
    crashed = pair.db.webhook_events.find_one({"_id": svix_id})
    assert crashed is not None
    assert crashed["status"] == "processing"
    assert pair.db.reliability_counts.find_one({"_id": svix_id}) == {"_id": svix_id, "started": 1}

    # Svix redelivers to the other replica: 409 while the dead attempt's lease runs, then done
    started = time.monotonic()
    sender.urls = pair.urls
    asyncio.run(sender.send_all([delivery]))
    took = time.monotonic() - started
    await_outcomes(pair.db, [svix_id])
    assert svix_id in sender.acked
    counts = pair.db.reliability_counts.find_one({"_id": svix_id})
    assert counts == {"_id": svix_id, "started": 2, "completed": 1}, counts
    doc = pair.db.webhook_events.find_one({"_id": svix_id})
    assert doc is not None
    assert doc["status"] == "processed"
    assert doc["attempts"] == 2
    assert all(h["status"] == "ok" for h in doc["handlers"].values())
    user = pair.db.users.find_one({"clerk_id": "user_crash"})
    assert user is not None
    assert user["first_name"] == "v1"
    in_progress = [a.status for a in sender.attempts[1:]].count(409)
    figures["crash"] = {
        "servers_killed": 1,
        "signal": "SIGKILL",
        "lease_seconds": HANDLER_TIMEOUT + 5,
        "answers_409_before_takeover": in_progress,
        "redelivery_completed_after_seconds": round(took, 2),
        "handler_starts": counts["started"],
        "handler_completions": counts["completed"],
    }
