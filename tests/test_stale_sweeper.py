"""The stale-delivery sweeper in process: what it re-runs, its gauge, and its lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from motor.motor_asyncio import AsyncIOMotorClient

from clerk_sync.storage.leases import Lease
from clerk_sync.testing import envelope, new_svix_id
from tests.conftest import Runner
from tests.test_webhook_contract import Recorder

NOW = datetime.now(UTC)


def crashed(svix_id: str, *, lease_until: datetime) -> dict[str, Any]:
    """A delivery as a SIGKILL inside its handler leaves it: `processing`, no outcome."""
    payload = envelope("user.created", {"id": "user_stale", "updated_at": 1_700_000_000_000})
    return {
        "_id": svix_id,
        "type": "user.created",
        "status": "processing",
        "attempts": 1,
        "handlers": {},
        "received_at": NOW - timedelta(minutes=1),
        "last_attempt_at": NOW - timedelta(minutes=1),
        "payload": orjson.loads(payload),
        "lease_until": lease_until,
        "lease_token": "dead-process-0",
    }


async def wait_until(predicate: Any) -> None:
    async with asyncio.timeout(20):  # a safety net against a hang, not a speed assertion
        while not await predicate():  # noqa: ASYNC110 - polls MongoDB: no event to await
            await asyncio.sleep(0.05)


async def test_the_sweeper_reruns_a_stale_delivery_and_leaves_a_live_lease_alone(
    running: Runner,
) -> None:
    """With no redelivery and no command, a `processing` delivery whose lease expired is
    re-run (handler once, `processed`), one whose lease still runs is untouched, and
    `clerk_sync_stale_deliveries` counts what is left stale: 0."""
    recorder = Recorder()
    stale, live = new_svix_id(), new_svix_id()
    async with running(plugins=[recorder.plugin], clerk_sync_stale_sweep_seconds=0.1) as r:
        await r.db.webhook_events.insert_many(
            [
                crashed(stale, lease_until=NOW - timedelta(seconds=1)),
                crashed(live, lease_until=NOW + timedelta(hours=1)),
            ]
        )

        async def swept() -> bool:
            doc = await r.event(stale)
            return doc is not None and doc["status"] != "processing"

        await wait_until(swept)
        metrics = (await (await r.client.get("/metrics")).get_data()).decode()
        untouched = await r.event(live)
        done = await r.event(stale)
    assert recorder.runs == [stale]
    assert done is not None
    assert (done["status"], done["attempts"]) == ("processed", 2)
    assert untouched is not None
    assert (untouched["status"], untouched["attempts"]) == ("processing", 1)
    assert "\nclerk_sync_stale_deliveries 0.0\n" in metrics


async def test_a_stale_delivery_the_sweeper_cannot_finish_is_counted(running: Runner) -> None:
    """A stale delivery the sweeper does not reach (it holds no lease: another replica does)
    stays counted in `clerk_sync_stale_deliveries`, which is what the alert watches."""
    stale = new_svix_id()
    async with running(clerk_sync_stale_sweep_seconds=0.1) as r:
        until = datetime.now(UTC) + timedelta(hours=1)
        await r.db.leases.insert_one({"_id": "stale-sweeper", "holder": "other", "until": until})
        await r.db.webhook_events.insert_one(crashed(stale, lease_until=NOW - timedelta(seconds=1)))

        async def counted() -> bool:
            text = (await (await r.client.get("/metrics")).get_data()).decode()
            return "\nclerk_sync_stale_deliveries 1.0\n" in text

        await wait_until(counted)
        doc = await r.event(stale)
    assert doc is not None
    assert doc["status"] == "processing"


async def test_one_holder_at_a_time_holds_the_sweeper_lease(
    mongodb_url: str, mongodb_db: str
) -> None:
    """Taken by one replica, the lease is refused to another until it expires or is released;
    its holder renews it."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url, tz_aware=True)
    leases = client[mongodb_db].leases
    first, second = Lease(leases, "sweep", "a"), Lease(leases, "sweep", "b")
    minute = timedelta(minutes=1)
    try:
        assert await first.take(NOW, minute)
        assert not await second.take(NOW, minute)
        assert await first.take(NOW + timedelta(seconds=30), minute)  # renewed to NOW + 90 s
        assert not await second.take(NOW + timedelta(seconds=80), minute)
        assert await second.take(NOW + timedelta(seconds=91), minute)  # expired: taken over
        assert not await first.take(NOW + timedelta(seconds=100), minute)
        await second.release()
        assert await first.take(NOW + timedelta(seconds=100), minute)
    finally:
        client.close()
