"""Recording deliveries against a real MongoDB server: what each claim costs in commands, and
that claims sent together get exactly what each would have got alone."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import MongoClient, monitoring
from pymongo.errors import DuplicateKeyError, OperationFailure

from clerk_sync.errors import StoreUnavailable
from clerk_sync.storage.claims import Claim, claimable
from clerk_sync.storage.store import DeliveryLog
from tests.listeners import Commands, listened_log

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


@dataclass
class Log:
    events: DeliveryLog
    commands: Commands


@pytest.fixture
async def log(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Log]:
    async with listened_log(mongodb_url, mongodb_db) as (events, commands):
        yield Log(events, commands)


async def claim(
    events: DeliveryLog,
    svix_id: str,
    token: str,
    now: datetime = T0,
    target: str = "processing",
    payload: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    return await events.claim(
        svix_id,
        target=target,
        token=token,
        now=now,
        lease_until=now + LEASE if target == "processing" else None,
        on_insert={"type": "user.created", "payload": payload or {"id": svix_id}} | (extra or {}),
    )


async def stored(events: DeliveryLog, svix_id: str) -> dict[str, Any]:
    document = await events.get(svix_id)
    assert document is not None
    return document


async def test_a_lone_new_delivery_is_one_command(log: Log) -> None:
    before = await claim(log.events, "msg_1", "a")
    assert before is None
    assert log.commands.take() == {"findAndModify": 1}
    assert (await stored(log.events, "msg_1"))["lease_token"] == "a"


async def test_a_duplicate_is_one_command_and_reads_no_payload(log: Log) -> None:
    await claim(log.events, "msg_1", "a", target="processed")
    log.commands.take()
    before = await claim(log.events, "msg_1", "b", T0 + timedelta(hours=1))
    assert log.commands.take() == {"findAndModify": 1}
    assert before is not None
    assert before["status"] == "processed"
    assert "payload" not in before
    assert (await stored(log.events, "msg_1"))["payload"] == {"id": "msg_1"}


async def test_taking_over_a_failed_delivery_costs_a_second_command(log: Log) -> None:
    await claim(log.events, "msg_1", "a")
    await log.events.finish("msg_1", token="a", status="failed", outcomes={})
    log.commands.take()
    before = await claim(log.events, "msg_1", "b", T0 + timedelta(seconds=1))
    assert log.commands.take() == {"findAndModify": 2}
    assert before is not None
    assert before["status"] == "failed"
    after = await stored(log.events, "msg_1")
    assert (after["status"], after["lease_token"], after["attempts"]) == ("processing", "b", 2)


async def test_concurrent_new_deliveries_are_recorded_by_one_update(log: Log) -> None:
    """The first claim goes alone; the seven that arrive while it is in flight go together."""
    befores = await asyncio.gather(*(claim(log.events, f"msg_{n}", f"t{n}") for n in range(8)))
    assert befores == [None] * 8
    assert log.commands.take() == {"findAndModify": 1, "update": 1}
    assert log.commands.sizes() == [7]
    for n in range(8):
        document = await stored(log.events, f"msg_{n}")
        assert (document["status"], document["lease_token"]) == ("processing", f"t{n}")
        assert document["payload"] == {"id": f"msg_{n}"}


async def test_each_claim_in_a_batch_gets_what_it_would_get_alone(log: Log) -> None:
    await claim(log.events, "done", "a", target="processed")
    await claim(log.events, "held", "a")
    await claim(log.events, "failed", "a")
    await log.events.finish("failed", token="a", status="failed", outcomes={})
    await claim(log.events, "expired", "a")
    later = T0 + LEASE - timedelta(seconds=1)  # "held" is still leased, "expired" too ...
    log.commands.take()
    ids = ["first", "done", "held", "failed", "new"]
    befores = await asyncio.gather(*(claim(log.events, i, "b", later) for i in ids))
    by_id = dict(zip(ids, befores, strict=True))
    assert by_id["first"] is None
    assert by_id["new"] is None
    assert by_id["done"] is not None
    assert by_id["done"]["status"] == "processed"
    assert "payload" not in by_id["done"]
    assert by_id["held"] is not None
    assert by_id["held"]["lease_token"] == "a"
    assert by_id["failed"] is not None
    assert by_id["failed"]["status"] == "failed"
    # the lone first claim; one update for the other four; one find of the three that
    # existed; one conditional takeover of the failed one
    assert log.commands.take() == {"findAndModify": 2, "update": 1, "find": 1}
    assert (await stored(log.events, "done"))["lease_token"] == "a"
    assert (await stored(log.events, "held"))["lease_token"] == "a"
    assert (await stored(log.events, "failed"))["lease_token"] == "b"
    assert (await stored(log.events, "new"))["lease_token"] == "b"
    # ... and once its lease has run out, "expired" is taken over even inside a batch
    after = T0 + LEASE + timedelta(seconds=1)
    ids = ["other", "expired", "held"]
    befores = await asyncio.gather(*(claim(log.events, i, "c", after) for i in ids))
    assert befores[1] is not None
    assert befores[1]["lease_token"] == "a"
    assert (await stored(log.events, "expired"))["lease_token"] == "c"


async def test_the_same_delivery_twice_in_a_batch_is_claimed_once(log: Log) -> None:
    befores = await asyncio.gather(
        claim(log.events, "first", "a"),
        claim(log.events, "msg_1", "b"),
        claim(log.events, "msg_1", "c"),
    )
    assert befores[1] is None
    assert befores[2] is not None
    assert befores[2]["lease_token"] == "b"
    document = await stored(log.events, "msg_1")
    assert (document["lease_token"], document["attempts"]) == ("b", 1)


async def test_a_payload_bson_cannot_hold_fails_only_its_own_claim(log: Log) -> None:
    """An integer beyond 64 bits cannot be encoded: that claim raises, the others are recorded."""
    results = await asyncio.gather(
        claim(log.events, "first", "a"),
        claim(log.events, "good", "a"),
        claim(log.events, "huge", "a", payload={"n": 2**70}),
        claim(log.events, "also_good", "a"),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[1] is None
    assert isinstance(results[2], OverflowError)
    assert results[3] is None
    assert await log.events.get("huge") is None
    assert (await stored(log.events, "also_good"))["status"] == "processing"


def test_claimable_follows_status_and_lease() -> None:
    now = T0
    assert claimable({"status": "failed"}, now)
    assert claimable({}, now)
    assert claimable({"status": "processing", "lease_until": now - timedelta(seconds=1)}, now)
    assert not claimable({"status": "processing", "lease_until": now + timedelta(seconds=1)}, now)
    assert not claimable({"status": "processing", "lease_until": now}, now)
    assert claimable({"status": "processing", "lease_until": None}, now)
    assert claimable({"status": "processing"}, now)
    for status in ("processed", "ignored", "rejected"):
        assert not claimable({"status": status}, now)


async def test_a_claim_the_server_refuses_in_a_batch_fails_alone(log: Log) -> None:
    """Its error is the server's, with its code; the others in the unordered batch are recorded
    and known as inserted from the reply, with nothing read back."""
    conflicting = {"payload.id": "x"}  # "payload" and "payload.id" in one update: code 40
    results = await asyncio.gather(
        claim(log.events, "first", "a"),
        claim(log.events, "before", "a"),
        claim(log.events, "refused", "a", extra=conflicting),
        claim(log.events, "after", "a"),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[1] is None
    refused = results[2]
    assert isinstance(refused, OperationFailure)
    assert refused.code == 40
    assert "conflicting" in str(refused)
    assert results[3] is None
    assert log.commands.take() == {"findAndModify": 1, "update": 1}
    assert log.commands.sizes() == [3]
    assert await log.events.get("refused") is None
    for svix_id in ("before", "after"):
        assert (await stored(log.events, svix_id))["lease_token"] == "a"


async def test_a_delivery_removed_between_the_batch_and_its_read_is_recorded_again(
    log: Log, mongodb_url: str, mongodb_db: str
) -> None:
    """Retention or `events purge` may delete a delivery after the batch found it and before
    the read: the claim records it again instead of reading nothing."""
    await claim(log.events, "gone", "a", target="processed")
    remover: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)

    class RemoveAfterTheBatch(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            return None

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            if event.command_name == "update":
                remover[mongodb_db]["webhook_events"].delete_one({"_id": "gone"})

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            return None

    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        mongodb_url, tz_aware=True, event_listeners=[RemoveAfterTheBatch(), log.commands]
    )
    try:
        events = DeliveryLog(client[mongodb_db]["webhook_events"])
        log.commands.take()
        later = T0 + timedelta(hours=1)
        befores = await asyncio.gather(
            *(claim(events, i, "b", later) for i in ("first", "gone", "new"))
        )
        assert befores == [None, None, None]
        # lone first; the batch; the read that found nothing; "gone" recorded again
        assert log.commands.take() == {"findAndModify": 2, "update": 1, "find": 1}
        document = await stored(events, "gone")
        assert (document["status"], document["lease_token"]) == ("processing", "b")
    finally:
        client.close()
        remover.close()


async def test_a_duplicate_key_that_is_not_this_deliverys_is_an_error(log: Log) -> None:
    """A unique index of another field refuses the insert: nothing was recorded, so the claim
    must fail rather than read as new (it would be answered without a record)."""
    await log.events.collection.create_index("payload.key", unique=True)
    assert await claim(log.events, "msg_1", "a", payload={"key": "k"}) is None
    with pytest.raises(DuplicateKeyError):
        await claim(log.events, "msg_2", "a", payload={"key": "k"})
    assert await log.events.get("msg_2") is None


def taking(svix_id: str, token: str, now: datetime, **on_insert: Any) -> Claim:
    return Claim(svix_id, "processing", token, now, now + LEASE, on_insert)


def first_attempt_by_b(svix_id: str) -> dict[str, Any]:
    """A `user.created` delivery as a takeover by "b" at T0 leaves it when it held nothing."""
    return {
        "_id": svix_id,
        "status": "processing",
        "lease_until": T0 + LEASE,
        "lease_token": "b",
        "last_attempt_at": T0,
        "attempts": 1,
        "handlers": {},
        "received_at": T0,
        "type": "user.created",
        "payload": {"id": svix_id},
    }


async def test_a_takeover_keeps_the_record_and_starts_a_new_attempt(log: Log) -> None:
    received = T0 - timedelta(minutes=5)
    handlers = {"users": {"status": "error", "error": "boom"}}
    await log.events.collection.insert_one(
        {
            "_id": "msg_1",
            "status": "failed",
            "lease_until": None,
            "lease_token": "a",
            "last_attempt_at": received,
            "attempts": 2,
            "handlers": handlers,
            "received_at": received,
            "type": "user.created",
            "payload": {"id": "old"},
        }
    )
    before = await log.events.reclaim(
        taking("msg_1", "b", T0, type="user.updated", payload={"id": "new"})
    )
    assert before is not None
    assert (before["status"], before["lease_token"], before["attempts"]) == ("failed", "a", 2)
    assert "payload" not in before
    after = await stored(log.events, "msg_1")
    assert after == {
        "_id": "msg_1",
        "status": "processing",
        "lease_until": T0 + LEASE,
        "lease_token": "b",
        "last_attempt_at": T0,
        "attempts": 3,
        "handlers": handlers,
        "received_at": received,
        "type": "user.created",
        "payload": {"id": "old"},
    }


@pytest.mark.parametrize(
    "held",
    [
        {"status": "processing", "lease_until": T0, "lease_token": "a"},  # expires exactly now
        {"status": "processing", "lease_until": T0 + LEASE, "lease_token": "a"},
        {"status": "processed", "lease_until": None, "lease_token": "a"},
    ],
)
async def test_a_takeover_that_lost_the_race_changes_nothing(
    log: Log, held: dict[str, Any]
) -> None:
    """Another replica took the delivery after this one read it: the conditional update leaves
    every field as it was."""
    document = {
        "_id": "msg_1",
        "last_attempt_at": T0 - LEASE,
        "attempts": 1,
        "handlers": {},
        "received_at": T0 - LEASE,
        "type": "user.created",
        "payload": {"id": "msg_1"},
    } | held
    await log.events.collection.insert_one(document)
    before = await log.events.reclaim(taking("msg_1", "b", T0, type="x", payload={}))
    assert before is not None
    assert before["lease_token"] == "a"
    assert await stored(log.events, "msg_1") == document


async def test_an_expired_lease_or_a_missing_status_is_taken_over(log: Log) -> None:
    just_after = T0 + timedelta(milliseconds=1)
    await log.events.collection.insert_many(
        [
            {"_id": "expired", "status": "processing", "lease_until": T0, "attempts": 1},
            {"_id": "unleased", "status": "processing", "lease_until": None, "attempts": 1},
            {"_id": "bare", "payload": {"id": "bare"}},
        ]
    )
    for svix_id, now in (("expired", just_after), ("unleased", T0)):
        await log.events.reclaim(taking(svix_id, "b", now, payload={}))
        taken = await stored(log.events, svix_id)
        assert (taken["lease_token"], taken["attempts"]) == ("b", 2)
    before = await log.events.reclaim(taking("bare", "b", T0, type="user.created", payload={}))
    assert before == {"_id": "bare"}
    bare = await stored(log.events, "bare")
    assert bare == first_attempt_by_b("bare")


async def test_a_takeover_of_a_delivery_removed_meanwhile_records_it_again(log: Log) -> None:
    before = await log.events.reclaim(
        taking("msg_1", "b", T0, type="user.created", payload={"id": "msg_1"})
    )
    assert before is None
    assert await stored(log.events, "msg_1") == first_attempt_by_b("msg_1")


async def test_a_claim_refused_alone_is_one_command_with_the_servers_error(log: Log) -> None:
    with pytest.raises(OperationFailure) as refused:
        await claim(log.events, "refused", "a", extra={"payload.id": "x"})
    assert refused.value.code == 40
    assert log.commands.take() == {"findAndModify": 1}


async def test_a_foreign_duplicate_key_inside_a_batch_fails_that_claim_alone(log: Log) -> None:
    """Not a lost race for its own id: the batch's read finds nothing, the claim is tried alone
    and its duplicate key error reaches the caller; the others are recorded."""
    await log.events.collection.create_index("payload.key", unique=True, sparse=True)
    await claim(log.events, "taken", "a", payload={"key": "k"})
    log.commands.take()
    results = await asyncio.gather(
        claim(log.events, "first", "a"),
        claim(log.events, "clash", "a", payload={"key": "k"}),
        claim(log.events, "fine", "a"),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], DuplicateKeyError)
    assert results[2] is None
    # lone first; the batch; the read that found no "clash"; it alone; the read after its error
    assert log.commands.take() == {"findAndModify": 2, "update": 1, "find": 2}
    assert await log.events.get("clash") is None


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_batch_sent_to_an_unreachable_store_fails_every_claim_in_it() -> None:
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        f"mongodb://127.0.0.1:{unused_port()}", serverSelectionTimeoutMS=300, tz_aware=True
    )
    try:
        events = DeliveryLog(client["clerk_sync"]["webhook_events"])
        results = await asyncio.wait_for(
            asyncio.gather(
                *(claim(events, f"msg_{n}", "a") for n in range(4)), return_exceptions=True
            ),
            10,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
    finally:
        client.close()


async def test_a_fault_in_a_batch_reaches_every_claim_in_it_and_none_hangs(log: Log) -> None:
    """A claim the batch cannot even build (a bug: its insert fields are not a mapping) fails the
    batch; every waiter gets the error instead of waiting forever."""
    broken = Claim("broken", "processing", "a", T0, T0 + LEASE, [("type", "x")])  # type: ignore[arg-type]

    async def submit(wanted: Claim) -> Any:
        return await log.events._claims.submit(wanted)

    results = await asyncio.wait_for(
        asyncio.gather(
            claim(log.events, "first", "a"),
            submit(taking("fine", "a", T0, type="user.created", payload={})),
            submit(broken),
            return_exceptions=True,
        ),
        10,
    )
    assert results[0] is None
    assert isinstance(results[1], TypeError)
    assert isinstance(results[2], TypeError)


async def test_a_claim_whose_request_went_away_does_not_stop_the_rest_of_its_batch(
    log: Log,
) -> None:
    first = asyncio.create_task(claim(log.events, "first", "a"))
    await asyncio.sleep(0)  # the lone claim is in flight
    waiting = {i: asyncio.create_task(claim(log.events, i, "a")) for i in ("gone", "b", "c")}
    await asyncio.sleep(0)  # all three wait for it
    waiting["gone"].cancel()
    results = await asyncio.wait_for(asyncio.gather(first, waiting["b"], waiting["c"]), 10)
    assert results == [None, None, None]
    assert waiting["gone"].cancelled()
    assert log.commands.take() == {"findAndModify": 1, "update": 1}
    # the claim stands (its lease will expire), and the batcher keeps no finished task
    assert (await stored(log.events, "gone"))["lease_token"] == "a"
    assert not log.events._claims._tasks
