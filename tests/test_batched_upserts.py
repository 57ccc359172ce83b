"""`upsert_if_newer` calls of one collection that meet in flight go out as one `update` command
(against a real MongoDB server): each keeps its own ordering guard and gets its own result or
error, exactly as it would alone."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson.errors import BSONError
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo.errors import BulkWriteError

from clerk_sync.projection import tombstone, upsert_if_newer
from clerk_sync.storage.projection import Upsert, upsert_many
from tests.listeners import Commands

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OLDER, NEWER = T0, T0 + timedelta(seconds=5)


def taken(commands: Commands) -> tuple[Counter[str], list[int]]:
    """The commands sent since the last look, by name, and the statements of each `update`."""
    seen, sizes = commands.take(), commands.sizes()
    commands.clear()
    return seen, sizes


@dataclass
class Things:
    collection: AsyncIOMotorCollection[dict[str, Any]]
    commands: Commands

    async def stored(self, clerk_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"clerk_id": clerk_id}, {"_id": 0})


@pytest.fixture
async def things(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Things]:
    commands = Commands()
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        mongodb_url, tz_aware=True, event_listeners=[commands]
    )
    try:
        collection = client[mongodb_db]["things"]
        await collection.create_index("clerk_id", unique=True)
        commands.clear()
        yield Things(collection, commands)
    finally:
        client.close()


async def together(
    things: Things, *calls: tuple[str, dict[str, Any], datetime | None]
) -> list[Any]:
    """A lone write of another object first, then `calls` while it is in flight: they wait
    for it and go out together, in the order given. Each call's result, or its error."""
    lead = upsert_if_newer(things.collection, "lead", {"name": "lead"}, T0)
    rest = [upsert_if_newer(things.collection, *call) for call in calls]
    results = await asyncio.gather(lead, *rest, return_exceptions=True)
    assert results[0] == "applied"
    return results[1:]


@pytest.mark.parametrize("newer_first", [False, True], ids=["older-first", "newer-first"])
@pytest.mark.parametrize("stored_before", [False, True], ids=["new", "stored"])
async def test_two_versions_in_one_batch_store_the_newer_in_either_order(
    things: Things, newer_first: bool, stored_before: bool
) -> None:
    """Older and newer versions of one user in one command: the newer is stored, the older is
    reported stale when it comes second, and the newer is never reported stale."""
    if stored_before:
        await upsert_if_newer(things.collection, "user_1", {"name": "first"}, OLDER - timedelta(1))
        taken(things.commands)
    older = ("user_1", {"name": "older"}, OLDER)
    newer = ("user_1", {"name": "newer"}, NEWER)
    results = await together(things, *((newer, older) if newer_first else (older, newer)))
    names, sizes = taken(things.commands)
    stored = await things.stored("user_1")
    assert sizes == [2], "both versions went out in one update command"
    assert stored is not None
    assert (stored["name"], stored["updated_at"], stored["deleted"]) == ("newer", NEWER, False)
    assert results == (["applied", "stale"] if newer_first else ["applied", "applied"])
    # a stale one is told apart by reading what is stored: one `find`; nothing else is sent
    expected = {"findAndModify": 1, "update": 1, **({"find": 1} if newer_first else {})}
    assert names == Counter(expected)


async def test_a_batch_keeps_tombstones_and_newer_stored_versions(things: Things) -> None:
    """Against what is stored: a tombstone and a newer version stay; an older one is updated,
    an undated event applies unless a tombstone is stored; a new id is inserted."""
    await tombstone(things.collection, {"clerk_id": "gone"}, deleted_at=OLDER, upsert=True)
    await upsert_if_newer(things.collection, "ahead", {"name": "ahead"}, NEWER)
    await upsert_if_newer(things.collection, "behind", {"name": "behind"}, OLDER)
    await upsert_if_newer(things.collection, "undated", {"name": "undated"}, OLDER)
    taken(things.commands)
    results = await together(
        things,
        ("gone", {"name": "revived"}, NEWER),
        ("ahead", {"name": "older"}, OLDER),
        ("behind", {"name": "newer"}, NEWER),
        ("undated", {"name": "no date"}, None),
        ("fresh", {"name": "fresh"}, OLDER),
    )
    assert results == ["stale", "stale", "applied", "applied", "applied"]
    assert taken(things.commands)[1] == [5]
    names = {}
    for clerk_id in ("gone", "ahead", "behind", "undated", "fresh"):
        doc = await things.stored(clerk_id)
        assert doc is not None
        names[clerk_id] = (doc.get("name"), doc["deleted"])
    assert names == {
        "gone": (None, True),
        "ahead": ("ahead", False),
        "behind": ("newer", False),
        "undated": ("no date", False),
        "fresh": ("fresh", False),
    }


@pytest.mark.parametrize("bad_value", [2**70, {1, 2}], ids=["int-too-large", "set"])
async def test_an_event_that_fails_to_encode_fails_only_its_own_call(
    things: Things, bad_value: object
) -> None:
    """A value BSON cannot hold makes its own call raise; the calls batched with it are
    written and answered as if alone."""
    results = await together(
        things,
        ("user_1", {"name": "one"}, OLDER),
        ("user_bad", {"name": "bad", "public_metadata": {"n": bad_value}}, OLDER),
        ("user_2", {"name": "two"}, OLDER),
    )
    assert results[0] == "applied"
    assert isinstance(results[1], (OverflowError, BSONError))
    assert results[2] == "applied"
    assert await things.stored("user_bad") is None
    for clerk_id, name in (("user_1", "one"), ("user_2", "two")):
        stored = await things.stored(clerk_id)
        assert stored is not None
        assert stored["name"] == name


async def test_concurrent_upserts_take_one_command_after_the_lone_one(things: Things) -> None:
    """Eight concurrent writes of new objects: the first alone, the seven that waited in one
    `update`; each answers `applied` and each is stored once."""
    calls = [upsert_if_newer(things.collection, f"u{i}", {"n": i}, T0) for i in range(8)]
    results = await asyncio.gather(*calls)
    names, sizes = taken(things.commands)
    assert results == ["applied"] * 8
    assert names == Counter({"findAndModify": 1, "update": 1})
    assert sizes == [7]
    docs = await things.collection.find({}, {"_id": 0, "clerk_id": 1, "n": 1}).to_list(None)
    assert sorted((d["clerk_id"], d["n"]) for d in docs) == [(f"u{i}", i) for i in range(8)]


async def test_values_that_look_like_operators_are_stored_as_given_in_a_batch(
    things: Things,
) -> None:
    """The batched statement merges `$literal` values, as the lone one does."""
    odd = {"parent": "$not_a_field_path", "metadata": {"a": "$$ROOT"}}
    results = await together(things, ("user_1", odd, OLDER), ("user_2", odd, OLDER))
    assert results == ["applied", "applied"]
    stored = await things.stored("user_2")
    assert stored is not None
    assert (stored["parent"], stored["metadata"]) == ("$not_a_field_path", {"a": "$$ROOT"})


class LosingRace:
    """The real collection, except that its `update` command loses an insert race: an older
    version of the same object lands first (really written) and the statement gets E11000."""

    def __init__(self, real: AsyncIOMotorCollection[dict[str, Any]]) -> None:
        self.real = real

    async def bulk_write(self, requests: list[Any], ordered: bool) -> None:
        await self.real.insert_one({"clerk_id": "user_1", "name": "racer", "updated_at": OLDER})
        errors = [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key error"}]
        raise BulkWriteError({"writeErrors": errors, "nInserted": 0})

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self.real.find(*args, **kwargs)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.find_one_and_update(*args, **kwargs)


async def test_a_statement_that_lost_an_insert_race_to_an_older_version_is_written_alone(
    things: Things,
) -> None:
    """E11000 from a batch is not always stale: when what is stored is older, the write is
    done again on its own, and applies."""
    racing = LosingRace(things.collection)
    mine = Upsert(racing, "user_1", {"name": "mine", "updated_at": NEWER}, NEWER)  # type: ignore[arg-type]
    results = await upsert_many([mine])
    stored = await things.stored("user_1")
    assert results == ["applied"]
    assert stored is not None
    assert (stored["name"], stored["updated_at"]) == ("mine", NEWER)
