"""The built-in projections (users, sessions, organizations) behind POST /webhooks/clerk.

Ordering, tombstones, cascades, concurrency and indexes, each checked on the stored documents.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from clerk_sync_organizations import plugin as organizations
from clerk_sync_sessions import plugin as sessions
from clerk_sync_users import SCRUBBED
from clerk_sync_users import plugin as users
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo.errors import DuplicateKeyError

from clerk_sync.projection import (
    dict_or_empty,
    int_or_none,
    str_or_none,
    tombstone,
    upsert_if_newer,
)
from clerk_sync.testing import envelope, sample
from tests.conftest import Runner, Running

PLUGINS = (users, sessions, organizations)
MAYA = "user_3AvkQGK8zGLvRC091k2sjGGUeLN"
LEO = "user_393wMQhhD2LzcIe6ik8CDpx788R"
ORG = "org_3B72uttDvPCKIgNoDUyqs4uTIyC"
MAYA_MEMBERSHIP = "orgmem_3B72uxTJCDJVKbGXgRCXnAPssSe"
LEO_MEMBERSHIP = "orgmem_3BADvmSdOCddB84uuNUYGDuubCA"
T0 = 1_780_000_000_000


def data_of(event_type: str, **changes: Any) -> dict[str, Any]:
    """The `data` of a bundled sample, with some fields changed."""
    data: dict[str, Any] = json.loads(sample(event_type))["data"]
    return data | changes


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def send(r: Running, event_type: str, data: dict[str, Any], timestamp_ms: int = T0) -> int:
    """Deliver `data` as a freshly signed `event_type` envelope; return the HTTP status."""
    status, _ = await r.post(envelope(event_type, data, timestamp_ms=timestamp_ms))
    return status


async def send_sample(r: Running, event_type: str) -> int:
    status, _ = await r.post(sample(event_type))
    return status


async def one(r: Running, collection: str, clerk_id: str) -> dict[str, Any]:
    doc = await r.db[collection].find_one({"clerk_id": clerk_id}, {"_id": 0})
    assert doc is not None, f"{collection} has no {clerk_id}"
    return doc


def log_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# -- indexes and discovery ---------------------------------------------------------------------


async def test_each_collection_has_a_unique_clerk_id_and_the_indexes_its_queries_need(
    running: Runner,
) -> None:
    async with running(plugins=PLUGINS) as r:
        found = {}
        for name in (
            "users",
            "sessions",
            "organizations",
            "organization_memberships",
            "organization_invitations",
        ):
            info = await r.db[name].index_information()
            found[name] = {tuple(i["key"]): bool(i.get("unique")) for i in info.values()}
        listed = [i async for i in r.db["organization_memberships"].list_indexes()]
    for name, indexes in found.items():
        assert indexes[(("clerk_id", 1),)] is True, name
    assert indexes_of(found["users"]) >= {"external_id"}
    assert indexes_of(found["sessions"]) >= {"user_id"}
    assert indexes_of(found["organization_memberships"]) >= {"organization_id", "user_id"}
    assert indexes_of(found["organization_invitations"]) >= {"organization_id"}
    assert {tuple(i["key"].items()) for i in listed} >= {
        (("organization_id", 1),),
        (("user_id", 1),),
    }


def indexes_of(indexes: dict[tuple[tuple[str, int], ...], bool]) -> set[str]:
    """Names of the fields with a single-field, non-unique index."""
    return {key[0][0] for key, unique in indexes.items() if len(key) == 1 and not unique}


async def test_builtin_plugins_are_discovered_through_their_entry_points(running: Runner) -> None:
    async with running(plugins=None) as r:
        listed = (await (await r.client.get("/plugins")).get_json())["plugins"]
    by_name = {p["name"]: p for p in listed}
    for name in ("users", "sessions", "organizations"):
        assert by_name[name]["status"] == "loaded"
        assert by_name[name]["distribution"] == f"clerk-sync-{name}"
    assert "session.*" in by_name["sessions"]["subscriptions"]
    assert "user.deleted" in by_name["organizations"]["subscriptions"]


# -- users --------------------------------------------------------------------------------------


async def test_twenty_concurrent_versions_of_one_user_end_with_the_newest(running: Runner) -> None:
    """Different `user.updated` versions posted at once converge on the largest `updated_at`."""
    rng = random.Random(3)
    async with running(plugins=PLUGINS) as r:
        for round_ in range(3):
            clerk_id = f"user_concurrent{round_}"
            versions = [
                data_of("user.updated", id=clerk_id, updated_at=T0 + i, first_name=f"v{i}")
                for i in range(20)
            ]
            rng.shuffle(versions)
            statuses = await asyncio.gather(*(send(r, "user.updated", v) for v in versions))
            assert set(statuses) == {200}
            stored = await one(r, "users", clerk_id)
            assert (stored["first_name"], stored["updated_at"]) == ("v19", at(T0 + 19))


async def test_stale_update_does_not_overwrite_newer_user(running: Runner) -> None:
    async with running(plugins=PLUGINS) as r:
        assert await send_sample(r, "user.updated") == 200
        assert await send_sample(r, "user.created") == 200
        stored = await one(r, "users", MAYA)
    assert stored["username"] == "maya_ok"
    assert stored["phone"] == "+14155550143"
    assert stored["updated_at"] == at(data_of("user.updated")["updated_at"])


async def test_update_with_the_same_updated_at_is_applied(running: Runner) -> None:
    """`updated_at` not older than the stored one is enough, so an equal one applies."""
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "user.updated")
        await send(r, "user.updated", data_of("user.updated", last_name="Okafor-Reyes"))
        stored = await one(r, "users", MAYA)
    assert stored["last_name"] == "Okafor-Reyes"


async def test_user_deleted_leaves_nothing_personal_and_deletes_the_memberships(
    running: Runner,
) -> None:
    """After `user.deleted` no e-mail, phone, name, image or metadata of the user remains,
    and the user's memberships (only theirs) are marked deleted."""
    personal = data_of("user.updated")
    async with running(plugins=PLUGINS) as r:
        for event_type in (
            "user.created",
            "user.updated",
            "organization.created",
            "organizationMembership.created",
            "organizationMembership.updated",
        ):
            assert await send_sample(r, event_type) == 200
        assert await send_sample(r, "user.deleted") == 200
        stored = await one(r, "users", MAYA)
        maya_membership = await one(r, "organization_memberships", MAYA_MEMBERSHIP)
        leo_membership = await one(r, "organization_memberships", LEO_MEMBERSHIP)
    assert stored["deleted"] is True
    assert stored["deleted_at"] == at(json.loads(sample("user.deleted"))["timestamp"])
    assert {k: stored[k] for k in SCRUBBED} == SCRUBBED
    text = json.dumps(stored, default=str)
    values = [
        "maya.okafor@northwind.example",
        "+14155550143",
        "Maya",
        "Okafor",
        "maya_ok",
        personal["image_url"],
        "cus_RqT8vYb2mN4kLx",
        "landing_v3",
        "editor",
    ]
    assert [v for v in values if v in text] == []
    assert stored["external_id"] == "acct_10442", "identifiers stay, to match later events"
    assert maya_membership["deleted"] is True
    assert maya_membership["deleted_at"] == stored["deleted_at"]
    assert (maya_membership["role"], maya_membership["public_metadata"]) == (None, {})
    assert leo_membership["deleted"] is False


async def test_deletion_before_create_leaves_a_tombstone_later_events_do_not_change(
    running: Runner,
) -> None:
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "user.deleted")
        tombstone_doc = await one(r, "users", MAYA)
        await send_sample(r, "user.created")
        await send_sample(r, "user.updated")
        after = await one(r, "users", MAYA)
    assert tombstone_doc["deleted"] is True
    assert tombstone_doc["first_name"] is None
    assert after == tombstone_doc


async def test_user_deleted_without_id_is_matched_by_external_id(running: Runner) -> None:
    """The user and their memberships are deleted although the payload names only
    `external_id`."""
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "user.updated")
        await send_sample(r, "organizationMembership.created")
        deleted = {"object": "user", "deleted": True, "external_id": "acct_10442"}
        assert await send(r, "user.deleted", deleted, T0) == 200
        stored = await one(r, "users", MAYA)
        membership = await one(r, "organization_memberships", MAYA_MEMBERSHIP)
    assert (stored["deleted"], stored["deleted_at"], stored["email"]) == (True, at(T0), None)
    assert (membership["deleted"], membership["deleted_at"]) == (True, at(T0))


async def test_user_deleted_without_id_or_external_id_is_a_logged_no_op(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "user.updated")
        await send_sample(r, "organizationMembership.created")
        before = await one(r, "users", MAYA)
        capsys.readouterr()
        status, body = await r.post(envelope("user.deleted", {"object": "user", "deleted": True}))
        after = await one(r, "users", MAYA)
        membership = await one(r, "organization_memberships", MAYA_MEMBERSHIP)
    lines = log_lines(capsys.readouterr().out)
    assert (status, body["status"]) == (200, "processed")
    assert after == before
    assert membership["deleted"] is False
    warnings = {(line["plugin"], line["event"]) for line in lines if line["level"] == "warning"}
    assert warnings == {
        ("users", "user_deleted_without_id"),
        ("organizations", "user_deleted_unmatched"),
    }


async def test_large_metadata_is_stored_whole(running: Runner) -> None:
    """Metadata of about 400 kB (Clerk allows 8 kB), nested and unicode, comes back whole."""
    metadata = {
        f"key_{i}": {"list": list(range(50)), "text": "ü€😀" * 100, "nested": {"n": i}}
        for i in range(150)
    }
    data = data_of(
        "user.updated",
        private_metadata=metadata,
        public_metadata={"deep": {"deeper": [metadata["key_1"]]}},
    )
    async with running(plugins=PLUGINS) as r:
        assert await send(r, "user.updated", data) == 200
        stored = await one(r, "users", MAYA)
    assert len(json.dumps(data).encode()) > 400_000
    assert stored["private_metadata"] == metadata
    assert stored["public_metadata"] == {"deep": {"deeper": [metadata["key_1"]]}}


# -- sessions -----------------------------------------------------------------------------------


async def test_late_session_created_does_not_revive_an_ended_session(running: Runner) -> None:
    async with running(plugins=PLUGINS) as r:
        assert await send_sample(r, "session.ended") == 200
        assert await send_sample(r, "session.created") == 200
        stored = await one(r, "sessions", "sess_3AvkQE2PoM4dQhT27e7B06ZTIhf")
    assert stored["status"] == "ended"
    assert stored["updated_at"] == at(data_of("session.ended")["updated_at"])
    assert stored["created_at"] == at(data_of("session.created")["created_at"])


async def test_session_impersonation_actor_is_stored(running: Runner) -> None:
    actor = {"sub": "user_support", "iss": "https://dashboard.clerk.com"}
    async with running(plugins=PLUGINS) as r:
        await send(r, "session.created", data_of("session.created", actor=actor, user=None))
        stored = await one(r, "sessions", "sess_3AvkQE2PoM4dQhT27e7B06ZTIhf")
    assert stored["actor"] == actor
    assert stored["status"] == "active"


# -- organizations, memberships, invitations ----------------------------------------------------


async def test_membership_arriving_after_its_organization_was_deleted_is_deleted(
    running: Runner,
) -> None:
    """The organization's deletion found nothing to mark; the late membership marks itself,
    dated like the organization's tombstone."""
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "organization.deleted")
        await send_sample(r, "organizationMembership.created")
        org = await one(r, "organizations", ORG)
        membership = await one(r, "organization_memberships", MAYA_MEMBERSHIP)
    assert org["deleted"] is True
    assert (org["name"], org["slug"], org["image_url"]) == (None, None, None)
    assert membership["deleted"] is True
    assert membership["deleted_at"] == org["deleted_at"]
    assert (membership["organization_id"], membership["user_id"]) == (ORG, MAYA)


async def test_membership_arriving_after_its_user_was_deleted_is_deleted(
    running: Runner,
) -> None:
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "user.deleted")
        await send_sample(r, "organizationMembership.created")
        user = await one(r, "users", MAYA)
        membership = await one(r, "organization_memberships", MAYA_MEMBERSHIP)
    assert membership["deleted"] is True
    assert membership["deleted_at"] == user["deleted_at"]


async def test_membership_deleted_first_keeps_its_parents_and_ignores_late_updates(
    running: Runner,
) -> None:
    """`organizationMembership.deleted` carries the whole membership: the tombstone is keyed
    by its id and still names its organization and user."""
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "organizationMembership.deleted")
        first = await one(r, "organization_memberships", LEO_MEMBERSHIP)
        await send_sample(r, "organizationMembership.updated")
        after = await one(r, "organization_memberships", LEO_MEMBERSHIP)
    assert first["deleted"] is True
    assert (first["organization_id"], first["user_id"]) == (ORG, LEO)
    assert after == first


async def test_organization_deleted_marks_every_membership_of_it(running: Runner) -> None:
    other = data_of(
        "organizationMembership.created",
        id="orgmem_other",
        organization={"id": "org_other", "object": "organization"},
    )
    async with running(plugins=PLUGINS) as r:
        for event_type in (
            "organization.updated",
            "organizationMembership.created",
            "organizationMembership.updated",
        ):
            await send_sample(r, event_type)
        await send(r, "organizationMembership.created", other)
        await send_sample(r, "organization.deleted")
        docs = await r.db.organization_memberships.find({}, {"_id": 0}).to_list(None)
        org = await one(r, "organizations", ORG)
    deleted = {d["clerk_id"]: d["deleted"] for d in docs}
    assert deleted == {MAYA_MEMBERSHIP: True, LEO_MEMBERSHIP: True, "orgmem_other": False}
    assert org["public_metadata"] == org["private_metadata"] == {}


async def test_concurrent_organization_deletion_and_membership_create_end_deleted(
    running: Runner,
) -> None:
    """Whichever of the two runs first, the membership ends up deleted."""
    async with running(plugins=PLUGINS) as r:
        for i in range(8):
            org_id = f"org_race{i}"
            membership = data_of(
                "organizationMembership.created",
                id=f"orgmem_race{i}",
                organization={"id": org_id, "object": "organization"},
            )
            deleted = {"object": "organization", "deleted": True, "id": org_id}
            sends = [
                send(r, "organizationMembership.created", membership),
                send(r, "organization.deleted", deleted),
            ]
            assert await asyncio.gather(*sends[:: 1 if i % 2 else -1]) == [200, 200]
            stored = await one(r, "organization_memberships", f"orgmem_race{i}")
            assert stored["deleted"] is True, i


async def test_organization_deleted_without_id_is_matched_by_slug(running: Runner) -> None:
    deleted = {"object": "organization", "deleted": True, "slug": "northwind-labs"}
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "organization.created")
        await send_sample(r, "organizationMembership.created")
        assert await send(r, "organization.deleted", deleted) == 200
        org = await one(r, "organizations", ORG)
        membership = await one(r, "organization_memberships", MAYA_MEMBERSHIP)
    assert (org["deleted"], org["name"]) == (True, None)
    assert membership["deleted"] is True


async def test_organization_deleted_without_id_or_known_slug_is_a_logged_no_op(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    deleted = {"object": "organization", "deleted": True, "slug": "nobody-has-this"}
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "organization.created")
        assert await send(r, "organization.deleted", deleted) == 200
        org = await one(r, "organizations", ORG)
    assert org["deleted"] is False
    events = [line["event"] for line in log_lines(capsys.readouterr().out)]
    assert "organization_deleted_unmatched" in events


async def test_invitation_status_does_not_move_back_when_created_arrives_late(
    running: Runner,
) -> None:
    async with running(plugins=PLUGINS) as r:
        await send_sample(r, "organizationInvitation.accepted")
        await send_sample(r, "organizationInvitation.created")
        stored = await one(r, "organization_invitations", "orginv_3BChAAuuAHtj2y9lyT4dITIMl7Z")
    assert stored["status"] == "accepted"
    assert stored["user_id"] == "user_3BF300Cn7ynMylGKego29dQJyNF"
    assert stored["organization_id"] == ORG


# -- the order-safe writes of clerk_sync.projection ---------------------------------------------


@pytest.fixture
async def collection(
    mongodb_url: str, mongodb_db: str
) -> AsyncIterator[AsyncIOMotorCollection[dict[str, Any]]]:
    """A collection with a unique `clerk_id` index, in the test's own database."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url, tz_aware=True)
    things = client[mongodb_db]["things"]
    await things.create_index("clerk_id", unique=True)
    yield things
    client.close()


async def test_tombstone_replaces_a_stored_null_deleted_at(
    collection: AsyncIOMotorCollection[dict[str, Any]],
) -> None:
    """A document saved with `deleted_at: null` (an ODMantic default) still gets dated."""
    await collection.insert_one({"clerk_id": "a", "deleted": False, "deleted_at": None})
    await tombstone(collection, {"clerk_id": "a"}, deleted_at=at(T0))
    stored = await collection.find_one({"clerk_id": "a"})
    assert stored is not None
    assert (stored["deleted"], stored["deleted_at"]) == (True, at(T0))


async def test_tombstone_keeps_the_earliest_deletion_date(
    collection: AsyncIOMotorCollection[dict[str, Any]],
) -> None:
    for ms in (T0 + 5, T0, T0 + 9):
        await tombstone(collection, {"clerk_id": "a"}, deleted_at=at(ms), upsert=True)
    changed = await tombstone(collection, {"clerk_id": "a"}, deleted_at=at(T0 + 1), upsert=True)
    stored = await collection.find_one({"clerk_id": "a"}, {"_id": 0})
    assert stored == {"clerk_id": "a", "deleted": True, "deleted_at": at(T0)}
    assert changed == 0


async def test_tombstone_writes_identity_and_cleared_values_literally(
    collection: AsyncIOMotorCollection[dict[str, Any]],
) -> None:
    """Values that look like aggregation expressions (`$name`, `{}`) are stored as given."""
    await tombstone(
        collection,
        {"clerk_id": "a"},
        deleted_at=None,
        cleared={"metadata": {}, "tags": []},
        identity={"parent": "$not_a_field_path"},
        upsert=True,
    )
    stored = await collection.find_one({"clerk_id": "a"}, {"_id": 0})
    assert stored == {
        "clerk_id": "a",
        "deleted": True,
        "metadata": {},
        "tags": [],
        "parent": "$not_a_field_path",
    }


async def test_upsert_after_a_tombstone_is_stale(
    collection: AsyncIOMotorCollection[dict[str, Any]],
) -> None:
    await tombstone(collection, {"clerk_id": "a"}, deleted_at=at(T0), upsert=True)
    result = await upsert_if_newer(collection, "a", {"name": "x"}, at(T0 + 1))
    assert result == "stale"
    assert await collection.count_documents({"name": "x"}) == 0


@pytest.mark.parametrize(
    ("stored", "updated_at", "expected"),
    [
        (None, at(T0), "applied"),  # new
        ({"updated_at": at(T0)}, at(T0), "applied"),  # the same version again
        ({"updated_at": at(T0)}, at(T0 + 1), "applied"),  # newer
        ({"updated_at": at(T0 + 1)}, at(T0), "stale"),  # older
        ({"updated_at": None}, at(T0), "applied"),  # stored undated
        ({"updated_at": at(T0)}, None, "applied"),  # this one undated
        ({"updated_at": at(T0), "deleted": True}, at(T0 + 1), "stale"),  # a tombstone
        ({"deleted": True}, None, "stale"),
    ],
)
async def test_upsert_if_newer_says_whether_it_applied_and_stores_accordingly(
    collection: AsyncIOMotorCollection[dict[str, Any]],
    stored: dict[str, Any] | None,
    updated_at: datetime | None,
    expected: str,
) -> None:
    if stored is not None:
        await collection.insert_one({"clerk_id": "a", "name": "old", **stored})
    result = await upsert_if_newer(collection, "a", {"name": "new"}, updated_at)
    after = await collection.find_one({"clerk_id": "a"}, {"_id": 0})
    assert result == expected
    assert after is not None
    assert after["name"] == ("new" if expected == "applied" else "old")
    if expected == "applied":
        assert (after["updated_at"], after["deleted"]) == (updated_at, False)


async def test_tombstone_counts_what_it_changed(
    collection: AsyncIOMotorCollection[dict[str, Any]],
) -> None:
    created = await tombstone(collection, {"clerk_id": "a"}, deleted_at=at(T0), upsert=True)
    absent = await tombstone(collection, {"clerk_id": "b"}, deleted_at=at(T0))
    await collection.insert_many([{"clerk_id": "c", "p": 1}, {"clerk_id": "d", "p": 1}])
    existing = await tombstone(collection, {"clerk_id": "c"}, deleted_at=at(T0))
    many = await tombstone(collection, {"p": 1}, deleted_at=at(T0 - 1), many=True)
    assert (created, absent, existing, many) == (1, 0, 1, 2)
    assert await collection.count_documents({"clerk_id": "b"}) == 0, "no upsert unless asked"
    docs = await collection.find({}, {"_id": 0, "clerk_id": 1, "deleted_at": 1}).to_list(None)
    assert sorted((d["clerk_id"], d.get("deleted_at")) for d in docs) == [
        ("a", at(T0)),
        ("c", at(T0 - 1)),
        ("d", at(T0 - 1)),
    ]


async def test_tombstone_upsert_racing_an_insert_still_marks_the_document(
    collection: AsyncIOMotorCollection[dict[str, Any]],
) -> None:
    """A duplicate-key error on the upsert (the object was inserted meanwhile) retries without
    upsert; the filter here matches nothing an upsert could reuse, so the race is forced."""
    await collection.insert_one({"clerk_id": "a", "name": "x"})
    changed = await tombstone(
        collection, {"clerk_id": "a", "name": "y"}, deleted_at=at(T0), upsert=True
    )
    stored = await collection.find_one({"clerk_id": "a"}, {"_id": 0})
    assert changed == 0
    assert stored == {"clerk_id": "a", "name": "x"}


def test_raw_value_helpers_keep_only_their_type() -> None:
    assert [str_or_none(v) for v in ("a", 1, None, ["a"])] == ["a", None, None, None]
    assert [int_or_none(v) for v in (3, True, 1.5, "3", None)] == [3, None, None, None, None]
    assert [dict_or_empty(v) for v in ({"a": 1}, [1], None, "x")] == [{"a": 1}, {}, {}, {}]


class Racing:
    """The real collection, except that the first `raises` upserts lose a race: a concurrent
    insert of the same `clerk_id` lands first (really written) and the upsert gets E11000."""

    def __init__(self, real: AsyncIOMotorCollection[dict[str, Any]], raises: int) -> None:
        self.real, self.raises, self.calls = real, raises, 0
        self.database, self.name = real.database, real.name  # what the batcher is keyed by

    async def find_one_and_update(self, query: dict[str, Any], *args: Any, **kw: Any) -> Any:
        self.calls += 1
        if self.calls <= self.raises:
            if self.calls == 1:
                await self.real.insert_one({**query, "name": "racer", "updated_at": at(T0)})
            raise DuplicateKeyError("E11000 duplicate key error")
        return await self.real.find_one_and_update(query, *args, **kw)


@pytest.mark.parametrize(("version", "expected"), [(T0 + 1, "applied"), (T0 - 1, "stale")])
async def test_upsert_losing_an_insert_race_retries_once_as_an_update(
    collection: AsyncIOMotorCollection[dict[str, Any]], version: int, expected: str
) -> None:
    racing = Racing(collection, raises=1)
    result = await upsert_if_newer(racing, "a", {"name": "mine"}, at(version))  # type: ignore[arg-type]
    stored = await collection.find_one({"clerk_id": "a"}, {"_id": 0, "name": 1})
    assert (result, racing.calls) == (expected, 2)
    assert stored == {"name": "mine" if expected == "applied" else "racer"}


async def test_upsert_losing_the_race_twice_raises(
    collection: AsyncIOMotorCollection[dict[str, Any]],
) -> None:
    racing = Racing(collection, raises=5)
    with pytest.raises(DuplicateKeyError):
        await upsert_if_newer(racing, "a", {"name": "mine"}, at(T0))  # type: ignore[arg-type]
    assert racing.calls == 2
