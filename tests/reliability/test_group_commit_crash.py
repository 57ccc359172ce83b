"""A server killed while successful outcomes wait for their group commit loses no acknowledgement.

The `processed` outcome of a successful delivery is written after its 200, in batches
(CLERK_SYNC_OUTCOME_FLUSH_SECONDS, here the longest allowed: 1 s); a failed outcome is written
before its 500. SIGKILL right after the last of 200 answers leaves the newest acknowledged
deliveries `processing` under a lease; once it has expired, `clerk-sync events replay --stale`
finishes them. What the senders were told must then agree with MongoDB.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from clerk_sync.testing import envelope, new_svix_id
from tests.processes import ServerProcess
from tests.reliability.conftest import Pair
from tests.reliability.sender import Attempt, Delivery, Sender

pytestmark = pytest.mark.reliability

DELIVERIES = 200
#: the `counter` handler raises (answer 500) for every other one of the last 40 deliveries, so
#: the deliveries answered in the last flush interval before the kill include failed ones
FAILING_TAIL = 40
SENDERS = 16
ROUNDS = 3  # a round whose kill found nothing queued proves nothing; at most this many tries


def failing(n: int) -> bool:
    return n >= DELIVERIES - FAILING_TAIL and n % 2 == 0


def deliveries(round_: int) -> list[Delivery]:
    found = []
    for n in range(DELIVERIES):
        data: dict[str, Any] = {"id": f"user_gc{round_}_{n}", "first_name": "Gc", "updated_at": 1}
        if failing(n):
            data["reliability"] = {"fail": True}
        found.append(Delivery(new_svix_id(), envelope("user.created", data)))
    return found


async def send_each_once(sender: Sender, batch: list[Delivery], url: str) -> list[Attempt]:
    """One attempt per delivery, SENDERS at a time, without retries: every answer counts."""
    gate = asyncio.Semaphore(SENDERS)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(delivery: Delivery) -> Attempt:
            async with gate:
                return await sender.send_once(client, delivery, url)

        return await asyncio.gather(*(one(d) for d in batch))


def answer_then_kill(pair: Pair, round_: int) -> tuple[list[Delivery], list[Attempt], float]:
    """Start a server with a 1 s group commit, send 200 deliveries, SIGKILL at the last answer."""
    victim = ServerProcess({**pair.env, "CLERK_SYNC_OUTCOME_FLUSH_SECONDS": "1"}).start()
    batch = deliveries(round_)
    try:
        attempts = asyncio.run(send_each_once(Sender([victim.url]), batch, victim.url))
        victim.stop(signal.SIGKILL)
        killed_at = datetime.now(UTC).timestamp()
    finally:
        victim.stop()
    return batch, attempts, killed_at


def replay_stale(pair: Pair) -> dict[str, Any]:
    env = {**os.environ, **pair.env, "LOG_LEVEL": "error"}
    command = [sys.executable, "-m", "clerk_sync", "events", "replay", "--stale", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def wait_past(moment: float) -> None:
    """Sleep until the wall clock has passed `moment` (a lease's end): waiting, not asserting."""
    while time.time() <= moment:
        time.sleep(min(0.5, moment - time.time() + 0.05))


def test_sigkill_before_the_group_commit_loses_no_acknowledged_delivery(
    pair: Pair, figures: dict[str, Any]
) -> None:
    for round_ in range(ROUNDS):
        batch, attempts, killed_at = answer_then_kill(pair, round_)
        ids = [d.svix_id for d in batch]
        docs = {d["_id"]: d for d in pair.db.webhook_events.find({"_id": {"$in": ids}})}
        left = [i for i, d in docs.items() if d["status"] == "processing"]
        if left:
            break
    assert left, f"no outcome was still queued at the kill in {ROUNDS} rounds"
    status = {a.svix_id: a.status for a in attempts}
    acked = {i for i, s in status.items() if s is not None and 200 <= s < 300}
    failed = {i for i, s in status.items() if s == 500}
    assert len(acked) + len(failed) == DELIVERIES, status
    assert failed == {d.svix_id for n, d in enumerate(batch) if failing(n)}

    # at the kill: every answer is recorded; each 500 already durable as `failed`; what was
    # acknowledged but not yet written is `processing` with its lease still running
    assert set(docs) == set(ids)
    assert {docs[i]["status"] for i in failed} == {"failed"}
    assert {docs[i]["status"] for i in acked} <= {"processed", "processing"}
    assert set(left) <= acked
    assert all(docs[i]["lease_until"].timestamp() > killed_at for i in left)

    wait_past(max(docs[i]["lease_until"].timestamp() for i in left))
    replayed = replay_stale(pair)

    assert replayed["processed"] == len(left), replayed
    assert (replayed["failed"], replayed["skipped"]) == (0, 0), replayed
    after = {d["_id"]: d for d in pair.db.webhook_events.find({"_id": {"$in": ids}})}
    assert {i for i, d in after.items() if d["status"] == "processed"} == acked
    assert {after[i]["status"] for i in failed} == {"failed"}
    assert {after[i]["handlers"]["counter:count"]["status"] for i in failed} == {"failed"}
    counts = {c["_id"]: c for c in pair.db.reliability_counts.find({"_id": {"$in": ids}})}
    assert all(counts[i].get("completed", 0) >= 1 for i in acked)
    assert all(counts[i].get("completed", 0) == 0 for i in failed)
    users = {
        u["clerk_id"] for u in pair.db.users.find({"clerk_id": {"$regex": f"^user_gc{round_}_"}})
    }
    assert len(users) == DELIVERIES  # the users handler succeeded for all, failing ones included
    figures["group_commit_crash"] = {
        "deliveries": DELIVERIES,
        "answered_200": len(acked),
        "answered_500": len(failed),
        "flush_seconds": 1,
        "signal": "SIGKILL",
        "rounds_until_something_was_queued": round_ + 1,
        "left_processing_at_kill": len(left),
        "finished_by_replay_stale": replayed["processed"],
        "acknowledged_not_processed_after_replay": 0,
    }
