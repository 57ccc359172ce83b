"""The delivery log against a real MongoDB server: indexes, claims and their refusals, leases,
finish, reachability; plugin indexes follow their models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from odmantic import Field, Model
from pymongo.hello import Hello
from pymongo.monitoring import ServerHeartbeatFailedEvent
from pymongo.server_description import ServerDescription
from pymongo.synchronous.settings import TopologySettings
from pymongo.topology_description import (
    TOPOLOGY_TYPE,
    TopologyDescription,
    updated_topology_description,
)

from clerk_sync.errors import StoreUnavailable
from clerk_sync.storage.embedded import EmbeddedProcess
from clerk_sync.storage.reach import Reachability
from clerk_sync.storage.store import EVENTS, DeliveryLog, Store
from tests.processes import free_port

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


@pytest.fixture
async def store(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Store]:
    opened = Store(mongodb_url, mongodb_db)
    try:
        yield opened
    finally:
        opened.close()


async def driver_events_seen(seen: Callable[[], bool], within: float = 15.0) -> None:
    """Wait until `seen()`: the driver's monitor threads report a failed check when they next
    look at the server (every half second or so while a command waits for one; once none
    waits, at the next regular heartbeat, every 10 s: a loaded machine can miss the first)."""
    deadline = time.monotonic() + within
    while not seen() and time.monotonic() < deadline:  # noqa: ASYNC110 - no event to await
        await asyncio.sleep(0.05)


async def ttl_seconds(store: Store) -> Any:
    indexes = await store.db[EVENTS].index_information()
    ttl = indexes["received_at_ttl"]
    assert ttl["key"] == [("received_at", 1)]
    return ttl.get("expireAfterSeconds")


async def test_the_ttl_index_keeps_the_retention_days(store: Store) -> None:
    await store.ensure_indexes([], retention_days=30)
    assert await ttl_seconds(store) == 30 * 86_400


async def test_the_ttl_index_is_rebuilt_when_the_retention_changes(store: Store) -> None:
    await store.ensure_indexes([], retention_days=30)
    await store.ensure_indexes([], retention_days=7)
    assert await ttl_seconds(store) == 7 * 86_400
    await store.ensure_indexes([], retention_days=7)  # unchanged: nothing to rebuild, no error
    assert await ttl_seconds(store) == 7 * 86_400


async def test_the_listing_indexes_exist(store: Store) -> None:
    """Each listing index ends in the console's keyset order; an earlier version's
    (status, received_at) index, which the new one serves, is dropped."""
    await store.db[EVENTS].create_index(
        [("status", 1), ("received_at", 1)], name="status_received_at"
    )
    await store.ensure_indexes([], retention_days=30)
    indexes = await store.db[EVENTS].index_information()
    tail = [("received_at", 1), ("_id", 1)]
    assert indexes["status_received_at_id"]["key"] == [("status", 1), *tail]
    assert indexes["type_received_at_id"]["key"] == [("type", 1), *tail]
    assert indexes["received_at_id"]["key"] == tail
    assert indexes["payload_data_user_id_received_at"]["key"] == [
        ("payload.data.user_id", 1),
        *tail,
    ]
    assert "status_received_at" not in indexes


async def test_workers_starting_at_once_each_drop_what_the_other_dropped(
    mongodb_url: str, mongodb_db: str
) -> None:
    """Two workers (or replicas) of an upgrade start together: both saw the earlier version's
    indexes and the old retention, both drop them, and neither fails for the one the other
    dropped first."""
    events = None
    stores = [Store(mongodb_url, mongodb_db) for _ in range(2)]
    try:
        await stores[0].ensure_indexes([], retention_days=30)
        events = stores[0].db[EVENTS]
        await events.create_index([("status", 1), ("received_at", 1)], name="status_received_at")
        await events.create_index([("type", 1), ("received_at", 1)], name="type_received_at")
        seen = await events.index_information()
        real = events.index_information

        async def both_look_first() -> dict[str, Any]:
            return seen  # what each saw before either dropped anything

        for store in stores:
            store.events.collection.index_information = both_look_first  # type: ignore[method-assign]
        await stores[0].ensure_indexes([], retention_days=7)
        await stores[1].ensure_indexes([], retention_days=7)
        indexes = await real()
    finally:
        for store in stores:
            store.close()
    assert "status_received_at" not in indexes
    assert "type_received_at" not in indexes
    assert indexes["received_at_ttl"]["expireAfterSeconds"] == 7 * 86_400


async def claim(
    log: DeliveryLog, token: str, now: datetime, target: str = "processing"
) -> dict[str, Any] | None:
    return await log.claim(
        "msg_1",
        target=target,
        token=token,
        now=now,
        lease_until=now + LEASE if target == "processing" else None,
        on_insert={"type": "user.created", "payload": {"n": 1}},
    )


async def test_a_first_claim_records_the_delivery_and_takes_the_lease(store: Store) -> None:
    before = await claim(store.events, "a", T0)
    stored = await store.events.get("msg_1")
    assert before is None
    assert stored is not None
    assert stored == {
        "_id": "msg_1",
        "status": "processing",
        "lease_until": T0 + LEASE,
        "lease_token": "a",
        "last_attempt_at": T0,
        "attempts": 1,
        "handlers": {},
        "received_at": T0,
        "type": "user.created",
        "payload": {"n": 1},
    }


async def test_a_held_lease_is_not_taken_and_an_expired_one_is(store: Store) -> None:
    await claim(store.events, "a", T0)
    held = await claim(store.events, "b", T0 + LEASE - timedelta(seconds=1))
    after_held = await store.events.get("msg_1")
    expired = await claim(store.events, "c", T0 + LEASE + timedelta(seconds=1))
    after_expired = await store.events.get("msg_1")
    assert held is not None
    assert held["lease_token"] == "a"
    assert after_held is not None
    assert (after_held["lease_token"], after_held["attempts"]) == ("a", 1)
    assert expired is not None
    assert expired["lease_token"] == "a"
    assert after_expired is not None
    assert (after_expired["lease_token"], after_expired["attempts"]) == ("c", 2)
    assert after_expired["received_at"] == T0, "the first receipt time is kept"
    assert after_expired["last_attempt_at"] == T0 + LEASE + timedelta(seconds=1)


@pytest.mark.parametrize("status", ["processed", "ignored", "rejected"])
async def test_a_finished_delivery_is_never_claimed_again(store: Store, status: str) -> None:
    await claim(store.events, "a", T0, target=status)
    later = await claim(store.events, "b", T0 + timedelta(days=1))
    stored = await store.events.get("msg_1")
    assert later is not None
    assert later["status"] == status
    assert stored is not None
    assert (stored["status"], stored["attempts"]) == (status, 1)


async def test_a_failed_delivery_is_claimed_again(store: Store) -> None:
    await claim(store.events, "a", T0)
    assert await store.events.finish("msg_1", token="a", status="failed", outcomes={}) is True
    before = await claim(store.events, "b", T0 + timedelta(seconds=1))
    stored = await store.events.get("msg_1")
    assert before is not None
    assert before["status"] == "failed"
    assert stored is not None
    assert (stored["status"], stored["lease_token"], stored["attempts"]) == ("processing", "b", 2)


async def test_finish_writes_only_while_the_attempt_holds_the_lease(store: Store) -> None:
    """An attempt whose lease expired and was taken over is told so, and changes nothing."""
    ok = {"status": "ok", "at": T0, "error": None}
    await claim(store.events, "a", T0)
    await claim(store.events, "b", T0 + LEASE + timedelta(seconds=1))
    late = await store.events.finish(
        "msg_1", token="a", status="failed", outcomes={"p:late": {**ok, "status": "failed"}}
    )
    untouched = await store.events.get("msg_1")
    owner = await store.events.finish("msg_1", token="b", status="processed", outcomes={"p:h": ok})
    done = await store.events.get("msg_1")
    assert late is False
    assert untouched is not None
    assert (untouched["status"], untouched["handlers"]) == ("processing", {})
    assert untouched["lease_until"] == T0 + 2 * LEASE + timedelta(seconds=1)
    assert owner is True
    assert done is not None
    assert (done["status"], done["lease_until"]) == ("processed", None)
    assert done["handlers"] == {"p:h": ok}


async def test_finish_merges_outcomes_with_earlier_ones(store: Store) -> None:
    ok = {"status": "ok", "at": T0, "error": None}
    await claim(store.events, "a", T0)
    await store.events.finish("msg_1", token="a", status="failed", outcomes={"p:one": ok})
    await claim(store.events, "b", T0 + timedelta(seconds=1))
    await store.events.finish("msg_1", token="b", status="processed", outcomes={"p:two": ok})
    stored = await store.events.get("msg_1")
    assert stored is not None
    assert stored["handlers"] == {"p:one": ok, "p:two": ok}


async def test_finish_of_an_unknown_delivery_is_not_owned(store: Store) -> None:
    assert await store.events.finish("msg_none", token="", status="processed", outcomes={}) is False
    assert await store.events.get("msg_none") is None


async def test_get_returns_the_delivery_of_that_id(store: Store) -> None:
    await claim(store.events, "a", T0)
    await store.db[EVENTS].insert_one({"_id": "msg_0", "status": "ignored"})
    stored = await store.events.get("msg_1")
    assert stored is not None
    assert stored["_id"] == "msg_1"
    assert await store.events.get("msg_unknown") is None


async def test_ping_answers_whether_mongodb_does(store: Store) -> None:
    down = Store("mongodb://127.0.0.1:9/?directConnection=true", "clerk_sync")
    try:
        assert await store.ping() is True
        assert await down.ping(within=0.5) is False
    finally:
        down.close()


async def test_an_unreachable_mongodb_is_store_unavailable_for_every_command() -> None:
    down = Store("mongodb://127.0.0.1:9/?directConnection=true&serverSelectionTimeoutMS=300", "x")
    try:
        for command in (
            down.events.get("msg_1"),
            claim(down.events, "a", T0),
            down.events.finish("msg_1", token="a", status="processed", outcomes={}),
        ):
            with pytest.raises(StoreUnavailable, match=r"^MongoDB is unavailable$"):
                await command
    finally:
        down.close()


async def test_the_store_knows_whether_the_driver_has_lost_mongodb(store: Store) -> None:
    """What a handler's timeout is judged by (test_a_handler_timing_out_while_mongodb_is_down_
    answers_503): never reached, reached, and a mark taken while down that is still 'lost'."""
    down = Store("mongodb://127.0.0.1:9/?directConnection=true", "clerk_sync")
    try:
        await down.ping(within=0.5)
        unreached = down.reach.mark()
        assert down.reach.down
        assert down.reach.lost_since(unreached)
        assert await store.ping()
        healthy = store.reach.mark()
        assert not store.reach.down
        assert not store.reach.lost_since(healthy)
    finally:
        down.close()
    store.close()
    assert store.reach.down
    assert store.reach.lost_since(healthy), "a closed client has lost its server"


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedProcess, Store]]:
    """A MongoDB server of the test's own, to stop and start, and a store connected to it."""
    server = EmbeddedProcess(tmp_path / "store", port=free_port())
    store = Store(server.start(), "reach")
    try:
        assert await store.ping(within=5)
        yield server, store
    finally:
        store.close()
        server.stop()


async def lose(server: EmbeddedProcess, store: Store) -> None:
    """An outage of 1.5 s while commands keep trying (as a handler's writes do): the first
    fails at once on its pooled connection, the next ones wait while the driver checks."""
    server.stop()
    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        assert not await store.ping(within=until - time.monotonic())


async def restore(server: EmbeddedProcess, store: Store) -> None:
    server.start()
    assert await store.ping(within=5)


async def test_a_loss_of_mongodb_between_two_looks_is_remembered(
    watched: tuple[EmbeddedProcess, Store],
) -> None:
    """Down and back while a handler runs: the current topology is fine again at the end, and
    only the driver's events tell that the server was lost in between."""
    server, store = watched
    before = store.reach.mark()
    await lose(server, store)
    await restore(server, store)
    assert not store.reach.down
    await driver_events_seen(lambda: store.reach.lost != before.lost)
    assert store.reach.lost_since(before)
    again = store.reach.mark()
    assert not store.reach.lost_since(again)
    await lose(server, store)  # a second outage counts as well as the first
    await restore(server, store)
    await driver_events_seen(lambda: store.reach.lost != again.lost)
    assert store.reach.lost_since(again)


async def test_a_mark_taken_while_mongodb_is_down_stays_lost_after_it_returns(
    watched: tuple[EmbeddedProcess, Store],
) -> None:
    """A handler that starts during an outage and times out after MongoDB is back."""
    server, store = watched
    before = store.reach.mark()
    await lose(server, store)
    await driver_events_seen(lambda: store.reach.lost != before.lost)
    during = store.reach.mark()
    assert during.down
    await restore(server, store)
    assert not store.reach.down
    assert store.reach.lost_since(during)


# -- refusals leave the record as it was; plugin indexes follow their models -----------------------


async def test_a_claim_refused_by_a_held_lease_changes_nothing(store: Store) -> None:
    """A retry that meets a held lease (answered 409) leaves lease, token, times and attempts
    as the holder wrote them, so a third attempt is refused too."""
    await claim(store.events, "a", T0)
    held = await store.events.get("msg_1")
    await claim(store.events, "b", T0 + timedelta(seconds=1))
    assert await store.events.get("msg_1") == held
    third = await claim(store.events, "c", T0 + timedelta(seconds=2))
    assert third is not None
    assert third["lease_token"] == "a"
    assert await store.events.get("msg_1") == held


@pytest.mark.parametrize("status", ["processed", "ignored", "rejected"])
async def test_a_claim_of_a_finished_delivery_changes_nothing(store: Store, status: str) -> None:
    await claim(store.events, "a", T0, target=status)
    finished = await store.events.get("msg_1")
    await claim(store.events, "b", T0 + timedelta(hours=1))
    assert await store.events.get("msg_1") == finished


class Gadget(Model):
    serial: str = Field(unique=True)

    model_config = {"collection": "gadgets"}  # noqa: RUF012 - ODMantic reads a plain dict


async def test_a_plugin_index_is_rebuilt_when_its_model_changes(store: Store) -> None:
    """A model whose index changed between releases gets the new index at start-up."""
    collection = store.db["gadgets"]
    await collection.create_index("serial", name="serial_1")  # an older, non-unique release
    await store.ensure_indexes([Gadget], retention_days=30)
    indexes = await collection.index_information()
    assert indexes["serial_1"].get("unique") is True


async def test_the_client_names_itself_to_mongodb(store: Store) -> None:
    """MongoDB's logs and `currentOp` show which application a connection belongs to."""
    assert store.client.options.pool_options.metadata["application"] == {"name": "clerk-sync"}


# -- failed checks of a replica set's members -------------------------------------------------
# The embedded server is one standalone, so a replica set cannot be produced over a connection:
# its descriptions below are computed by the driver's own code from the members' hello answers.

RS_A, RS_B = ("db-a", 27017), ("db-b", 27017)


def hello(address: tuple[str, int], **fields: Any) -> ServerDescription:
    answer = {
        "ok": 1,
        "setName": "rs0",
        "hosts": ["db-a:27017", "db-b:27017"],
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "setVersion": 1,
    }
    return ServerDescription(address, Hello({**answer, **fields}), round_trip_time=0.001)


def replica_set(*steps: ServerDescription) -> TopologyDescription:
    """The set's topology after the driver has seen `steps`, from both members unknown."""
    seeds = TopologySettings(seeds=[RS_A, RS_B], replica_set_name="rs0")
    unknown: dict[tuple[str, int | None], ServerDescription]
    unknown = {address: ServerDescription(address) for address in (RS_A, RS_B)}
    description = TopologyDescription(
        TOPOLOGY_TYPE.ReplicaSetNoPrimary, unknown, "rs0", None, None, seeds
    )
    for step in steps:
        description = updated_topology_description(description, step)
    return description


PRIMARY_A = hello(RS_A, isWritablePrimary=True, electionId=ObjectId())
SECONDARY_B = hello(RS_B, secondary=True)
A_UNREACHABLE = ServerDescription(RS_A, error=OSError("connection refused"))


@pytest.mark.parametrize(
    ("seen", "failing", "loss"),
    [
        ((PRIMARY_A, SECONDARY_B), RS_B, False),
        ((PRIMARY_A, SECONDARY_B), RS_A, True),
        ((PRIMARY_A, SECONDARY_B, A_UNREACHABLE), RS_A, True),
        ((), RS_A, True),
    ],
    ids=["secondary fails", "primary fails", "primary already unknown", "never reached"],
)
def test_a_failed_check_is_a_loss_unless_the_server_was_a_member_that_takes_no_writes(
    seen: tuple[ServerDescription, ...], failing: tuple[str, int], loss: bool
) -> None:
    """Losing a secondary leaves the primary writable: no loss. The primary failing is one,
    also when a failed command has already marked it unknown, and so is any unknown server."""
    topology = replica_set(*seen)
    reach = Reachability()
    reach.watch(lambda: topology)
    reach.failed(ServerHeartbeatFailedEvent(0.01, OSError("connection refused"), failing))
    assert reach.lost == (1 if loss else 0)


def test_a_mark_taken_while_down_is_lost_even_with_no_failed_check_after_it() -> None:
    """Down at the start, writable at the end, no check failed in between: only the mark
    says so, and that is enough."""
    topology = replica_set()
    reach = Reachability()
    reach.watch(lambda: topology)
    during = reach.mark()
    topology = replica_set(PRIMARY_A, SECONDARY_B)
    assert (during.down, reach.down, reach.lost) == (True, False, during.lost)
    assert reach.lost_since(during)
    assert not reach.lost_since(reach.mark())


def test_a_reachability_watching_no_client_yet_is_down() -> None:
    reach = Reachability()
    assert reach.down
    assert reach.lost_since(reach.mark())


def test_a_failed_check_before_any_topology_is_watched_is_a_loss() -> None:
    """With no topology to ask, nothing says the failing server took no writes: it counts."""
    reach = Reachability()
    reach.failed(ServerHeartbeatFailedEvent(0.01, OSError("connection refused"), RS_A))
    assert reach.lost == 1
