"""Order-safe writes for projections: newest `updated_at` wins, tombstones are final.

Svix does not guarantee order. Every write here is atomic per object (one MongoDB command, plus
one retry on an insert race; concurrent upserts of one collection share one command, each with
its own guard), so concurrent deliveries of different versions converge on the newest one.
Filters name only the key; conditions live in update pipelines, so the write is an index lookup
on any server (the embedded development store scans a collection for compound filters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from weakref import WeakKeyDictionary

from bson.errors import BSONError
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from clerk_sync.storage.batching import Batcher, outcome

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

type Applied = Literal["applied", "stale"]

_DUPLICATE_KEY = 11000


# Clerk payloads are JSON whose fields may be null, absent or of an unexpected type: these turn a
# raw value into what a projection stores, never raising.


def str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def dict_or_empty(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _applies(updated_at: datetime | None) -> dict[str, Any]:
    """Aggregation condition: the stored object is not a tombstone and not newer than this one.

    A missing `updated_at` sorts below any date, so a new or undated document always applies.
    """
    live: dict[str, Any] = {"$ne": ["$deleted", True]}
    if updated_at is None:
        return live
    return {"$and": [live, {"$lte": ["$updated_at", {"$literal": updated_at}]}]}


def applies(stored: Mapping[str, Any] | None, updated_at: datetime | None) -> bool:
    """The same condition in Python, for the document as it was before the write."""
    if stored is None:
        return True
    if stored.get("deleted") is True:
        return False
    current = stored.get("updated_at")
    return updated_at is None or current is None or current <= updated_at


def when(condition: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Aggregation expression for a `$replaceWith` stage: the document with `values` set when
    `condition` holds, else the document unchanged.

    One condition for the whole document rather than one `$cond` per field: MongoDB evaluates
    it once, and the embedded development store spends about a third of the CPU on it
    (docs/performance.md)."""
    merged = {"$mergeObjects": ["$$ROOT", {"$literal": dict(values)}]}
    return {"$cond": [condition, merged, "$$ROOT"]}


@dataclass(frozen=True, slots=True)
class Upsert:
    """One `upsert_if_newer` call: the values it writes when the guard holds."""

    collection: AsyncIOMotorCollection[dict[str, Any]]
    clerk_id: str
    values: Mapping[str, Any]
    updated_at: datetime | None

    def guarded(self) -> UpdateOne:
        """The write as one statement of a batch: the guard is in the filter, so a stored
        version that is newer or a tombstone makes the upsert collide with the unique index
        (E11000) instead of changing anything. A plain query rather than `$expr`, which the
        embedded store answers from the index; it matches what `_applies` computes for the
        values projections store (dates, null, absent)."""
        query: dict[str, Any] = {"clerk_id": self.clerk_id, "deleted": {"$ne": True}}
        if self.updated_at is not None:
            query["updated_at"] = {"$not": {"$gt": self.updated_at}}
        update = [{"$replaceWith": {"$mergeObjects": ["$$ROOT", {"$literal": dict(self.values)}]}}]
        return UpdateOne(query, update, upsert=True)


async def upsert_if_newer(
    collection: AsyncIOMotorCollection[dict[str, Any]],
    clerk_id: str,
    fields: Mapping[str, Any],
    updated_at: datetime | None,
) -> Applied:
    """Insert the object, or update it when the stored version is not newer and not deleted.

    A lone call is one `findAndModify` keyed by `clerk_id` alone (so any server answers it from
    the unique index); the guard lives in the update pipeline, and the previous document tells
    whether the write applied. Calls for one collection that arrive while a write is in flight
    go out together as one `update` command (`upsert_many`), each keeping its own guard and
    getting its own result or error.
    """
    values = {**fields, "updated_at": updated_at, "deleted": False}
    upsert = Upsert(collection, clerk_id, values, updated_at)
    return await _batcher(collection).submit(upsert)


def _batcher(collection: AsyncIOMotorCollection[dict[str, Any]]) -> Batcher[Upsert, Applied]:
    """The batcher of `collection`'s namespace on its client (a client serves one event loop);
    it goes away with the client."""
    by_name = _BATCHERS.setdefault(collection.database.client, {})
    name = f"{collection.database.name}.{collection.name}"
    found = by_name.get(name)
    if found is None:
        found = by_name[name] = Batcher(upsert_one, upsert_many)
    return found


#: per motor client, its collections' batchers; weak, so a closed client takes them along
_BATCHERS: WeakKeyDictionary[object, dict[str, Batcher[Upsert, Applied]]] = WeakKeyDictionary()


async def upsert_one(upsert: Upsert) -> Applied:
    """One `findAndModify`, retried once when a concurrent insert of the same id won."""
    update = [{"$replaceWith": when(_applies(upsert.updated_at), upsert.values)}]
    projection = {"_id": 0, "deleted": 1, "updated_at": 1}
    for attempt in (1, 2):
        try:
            before = await upsert.collection.find_one_and_update(
                {"clerk_id": upsert.clerk_id},
                update,
                projection=projection,
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
        except DuplicateKeyError:
            if attempt == 2:
                raise
            continue  # a concurrent insert of the same id won: the document exists now
        return "applied" if applies(before, upsert.updated_at) else "stale"
    raise AssertionError("unreachable")  # pragma: no cover


async def upsert_many(upserts: Sequence[Upsert]) -> list[Applied | BaseException]:
    """Several upserts of one collection as one unordered `update` command.

    A statement that upserted or matched applied (its guard held when it ran, in the order
    given, so of two versions of one object the newer is stored either way). One that collided
    with the unique index is stale, or lost an insert race: `_collided` tells which. Another
    refusal is that statement's error. A batch the driver cannot encode is sent one upsert at
    a time, so the bad one fails alone."""
    try:
        await upserts[0].collection.bulk_write([u.guarded() for u in upserts], ordered=False)
        refused: dict[int, dict[str, Any]] = {}
    except BulkWriteError as error:
        refused = {int(e["index"]): e for e in error.details.get("writeErrors", [])}
    except (BSONError, OverflowError):
        return [await outcome(upsert_one(u)) for u in upserts]
    collided = [i for i, e in refused.items() if e.get("code") == _DUPLICATE_KEY]
    results: list[Applied | BaseException] = []
    settled = await _collided([upserts[i] for i in collided]) if collided else []
    by_index = dict(zip(collided, settled, strict=True))
    for index in range(len(upserts)):
        failure = refused.get(index)
        if failure is None:
            results.append("applied")
        elif index in by_index:
            results.append(by_index[index])
        else:
            message = failure.get("errmsg", "write refused")
            results.append(OperationFailure(message, failure.get("code")))
    return results


async def _collided(upserts: Sequence[Upsert]) -> list[Applied | BaseException]:
    """Upserts whose guarded statement collided, settled with one `find` of what is stored:
    stale when the stored version is newer or a tombstone (as it stays: stored versions only
    get newer); otherwise the statement lost an insert race to an older version, and is
    written again alone by `upsert_one`."""
    collection = upserts[0].collection
    wanted = sorted({u.clerk_id for u in upserts})
    projection = {"_id": 0, "clerk_id": 1, "deleted": 1, "updated_at": 1}
    try:
        cursor = collection.find({"clerk_id": {"$in": wanted}}, projection)
        stored = {doc["clerk_id"]: doc async for doc in cursor}
    except PyMongoError as error:
        return [error] * len(upserts)
    settled: list[Applied | BaseException] = []
    for upsert in upserts:
        found = stored.get(upsert.clerk_id)
        if found is not None and not applies(found, upsert.updated_at):
            settled.append("stale")
        else:
            settled.append(await outcome(upsert_one(upsert)))
    return settled


def tombstone_update(
    deleted_at: datetime | None, fields: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The update pipeline of a tombstone: `fields` set, `deleted_at` the earliest date seen.

    A pipeline rather than `$min`, because `$min` keeps a stored `null` (null sorts before
    dates) while the aggregation `$min` ignores it.
    """
    stage: dict[str, Any] = {"deleted": True}
    stage.update({name: {"$literal": value} for name, value in fields.items()})
    if deleted_at is not None:
        stage["deleted_at"] = {"$min": ["$deleted_at", {"$literal": deleted_at}]}
    return [{"$set": stage}]


async def tombstone(
    collection: AsyncIOMotorCollection[dict[str, Any]],
    query: Mapping[str, Any],
    *,
    deleted_at: datetime | None,
    cleared: Mapping[str, Any] | None = None,
    upsert: bool = False,
    many: bool = False,
    identity: Mapping[str, Any] | None = None,
) -> int:
    """Mark matching objects deleted and clear personal fields; `upsert` creates the tombstone.

    `identity` holds identifying fields to write as well (a parent's id, say), so a tombstone
    created before the object itself still carries them. A tombstone keeps the earliest
    `deleted_at` seen, so replays change nothing. Returns how many documents changed.
    """
    update = tombstone_update(deleted_at, {**(cleared or {}), **(identity or {})})
    if many:
        result = await collection.update_many(query, update)
        return result.modified_count
    try:
        result = await collection.update_one(query, update, upsert=upsert)
    except DuplicateKeyError:
        result = await collection.update_one(query, update)
    return result.modified_count + (1 if result.upserted_id is not None else 0)
