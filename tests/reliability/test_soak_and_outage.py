"""A soak through two servers sharing one database, and a database outage mid-stream."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from clerk_sync.storage.embedded import EmbeddedProcess
from clerk_sync.testing import new_svix_id
from tests.processes import ServerProcess, await_outcomes, free_port
from tests.reliability.conftest import Pair, server_env, started_pair
from tests.reliability.sender import SCHEDULE, Delivery, Sender
from tests.reliability.test_duplicates_and_crashes import user_body

pytestmark = pytest.mark.reliability

#: 500 users x 10 versions + 5 % duplicates = 5,250 deliveries, the full soak, about 2.5 minutes on
#: two shared cores; RELIABILITY_SOAK_USERS=100 gives a quick 1,050-delivery run.
USERS = int(os.environ.get("RELIABILITY_SOAK_USERS", "500"))
VERSIONS = 10  # user.created, then 9 user.updated with increasing updated_at
DUPLICATE_SHARE = 0.05
SEED = 20261127


def stream(
    prefix: str, users: int, versions: int, rng: random.Random
) -> tuple[list[Delivery], dict[str, str]]:
    """Shuffled deliveries with duplicates, and each user's newest first_name."""
    unique = [
        Delivery(new_svix_id(), user_body(f"{prefix}{u}", v))
        for u in range(users)
        for v in range(versions)
    ]
    copies = rng.sample(unique, int(len(unique) * DUPLICATE_SHARE))
    deliveries = unique + copies
    rng.shuffle(deliveries)
    expected = {f"{prefix}{u}": f"v{versions - 1}" for u in range(users)}
    return deliveries, expected


def check_stored(
    db: Any, sender: Sender, deliveries: list[Delivery], expected: dict[str, str]
) -> dict[str, int]:
    ids = {d.svix_id for d in deliveries}
    await_outcomes(db, ids)
    docs = {d["_id"]: d for d in db.webhook_events.find({"_id": {"$in": list(ids)}})}
    counts = {c["_id"]: c for c in db.reliability_counts.find({"_id": {"$in": list(ids)}})}
    users = {
        u["clerk_id"]: u.get("first_name")
        for u in db.users.find({"clerk_id": {"$in": list(expected)}})
    }
    stored = sender.acked & set(docs)
    processed = {i for i in stored if docs[i]["status"] == "processed"}
    once = (
        {i for i in ids if (counts.get(i, {}).get("started"), counts[i].get("completed")) == (1, 1)}
        if counts
        else set()
    )
    assert sender.acked == ids, f"not acknowledged: {len(ids - sender.acked)}"
    assert stored == sender.acked, f"acknowledged but not stored: {sender.acked - stored}"
    assert processed == stored, f"stored but not processed: {len(stored - processed)}"
    assert users == expected, "the users projection differs from in-order delivery"
    return {
        "unique_deliveries": len(ids),
        "acknowledged": len(sender.acked),
        "stored": len(stored),
        "processed": len(processed),
        "counter_ran_exactly_once": len(once),
        "users": len(users),
    }


@pytest.fixture(scope="module")
def soak_pair(plugin_dir: Path, mongodb_url: str) -> Iterator[Pair]:
    """The pair of the soak, with the service's default handler timeout (10 s) rather than the
    3 s the fault tests use to make timeouts quick: the soak is about order and exactly-once under
    load, and `make test` runs it beside other tests on two cores, where a 3 s handler deadline
    measured the machine's load instead (a handler queued behind CPU-starved ones timed out)."""
    with started_pair(plugin_dir, mongodb_url, CLERK_SYNC_HANDLER_TIMEOUT="10") as result:
        yield result


def test_soak_two_servers_one_database_ends_equal_to_in_order_delivery(
    soak_pair: Pair, figures: dict[str, Any]
) -> None:
    pair = soak_pair
    deliveries, expected = stream("user_soak", USERS, VERSIONS, random.Random(SEED))
    # 8 senders per server: the embedded store answers one command at a time, and with 32 in
    # its queue on a loaded machine the driver's heartbeat waited past its 2 s timeout behind
    # them, so the servers answered 503 "storage unavailable" (the store's load, not the soak's
    # subject: order and exactly-once across two servers)
    sender = Sender(pair.urls, concurrency=16)
    started = time.monotonic()
    asyncio.run(sender.send_all(deliveries))
    took = time.monotonic() - started
    server_errors = sender.server_errors()
    result = check_stored(pair.db, sender, deliveries, expected)
    figures["soak"] = {
        "deliveries_sent": len(deliveries),
        "duplicates_sent": len(deliveries) - result["unique_deliveries"],
        "attempts": len(sender.attempts),
        "statuses": {str(k): v for k, v in sorted(sender.statuses.items(), key=str)},
        "servers": len(pair.servers),
        "seconds": round(took, 1),
        "deliveries_per_second": round(len(deliveries) / took, 1),
        **result,
    }
    assert not server_errors, server_errors[:5]
    assert result["counter_ran_exactly_once"] == result["unique_deliveries"]


def test_a_database_outage_mid_stream_is_503_then_recovers_without_restart(
    plugin_dir: Path, tmp_path: Path, figures: dict[str, Any]
) -> None:
    port = free_port()
    store = EmbeddedProcess(tmp_path / "store", port=port)
    url = store.start()
    env = server_env(plugin_dir, url, "outage")
    server = ServerProcess(env)
    deliveries, expected = stream("user_outage", 60, 5, random.Random(SEED + 1))
    sender = Sender([server.url], concurrency=16, schedule=(*SCHEDULE, *[2.0] * 8))
    window: dict[str, float] = {}

    def outage() -> None:
        while len(sender.acked) < len(deliveries) // 4:
            time.sleep(0.02)
        window["start"] = time.time()
        store.stop()
        time.sleep(3)
        store.start()
        window["end"] = time.time()

    try:
        server.start()
        breaker = threading.Thread(target=outage, daemon=True)
        breaker.start()
        started = time.monotonic()
        asyncio.run(sender.send_all(deliveries))
        took = time.monotonic() - started
        breaker.join(30)
        client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
        try:
            result = check_stored(client["outage"], sender, deliveries, expected)
        finally:
            client.close()
        assert server.process is not None
        assert server.process.poll() is None, "the server restarted or died"
    finally:
        server.stop()
        store.stop()
    errors = sender.server_errors()
    # MongoDB unreachable is 503 with Retry-After, whichever step found it: the claim, a
    # handler's own MongoDB call (test_a_handler_failing_because_mongodb_is_down_answers_503)
    # or the final write. A 500 here would be a handler failure the outage caused: not accepted.
    other = [a for a in errors if a.status != 503]
    figures["outage"] = {
        "deliveries_sent": len(deliveries),
        "outage_seconds": round(window["end"] - window["start"], 1),
        "answers_503": sum(1 for a in errors if a.status == 503),
        "other_5xx": [(a.status, a.body) for a in other][:5],
        "statuses": {str(k): v for k, v in sorted(sender.statuses.items(), key=str)},
        "seconds": round(took, 1),
        **result,
    }
    assert sender.statuses[503] > 0, "the outage was not seen"
    handler_warnings = [
        {k: e.get(k) for k in ("event", "handler", "error", "svix_id")}
        for e in server.events()
        if e.get("event") in ("handler_failed", "handler_timed_out")
        and e.get("svix_id") in {a.svix_id for a in other}
    ]
    assert not other, (other[:5], handler_warnings[:5])
    assert all(a.retry_after for a in errors), "every 503 says when to retry"


def test_stopping_the_embedded_store_closes_its_pipe(tmp_path: Path) -> None:
    store = EmbeddedProcess(tmp_path / "store")
    store.start()
    store.stop()
    assert store.process is not None
    assert store.process.stdout is not None
    closed = store.process.stdout.closed
    store.process.stdout.close()
    assert closed, "restarting the store leaks a pipe (ResourceWarning under -W error)"
