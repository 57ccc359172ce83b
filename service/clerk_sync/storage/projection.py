"""Order-safe writes for projections: newest `updated_at` wins, tombstones are final.

Svix does not guarantee order. Every write here is one atomic MongoDB command (plus one retry on
an insert race), so concurrent deliveries of different versions converge on the newest one.
Filters name only the key; conditions live in update pipelines, so the write is an index lookup
on any server (the embedded development store scans a collection for compound filters).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

type Applied = Literal["applied", "stale"]


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


async def upsert_if_newer(
    collection: AsyncIOMotorCollection[dict[str, Any]],
    clerk_id: str,
    fields: Mapping[str, Any],
    updated_at: datetime | None,
) -> Applied:
    """Insert the object, or update it when the stored version is not newer and not deleted.

    One `findAndModify` keyed by `clerk_id` alone (so any server answers it from the unique
    index); the guard lives in the update pipeline, and the previous document tells whether the
    write applied.
    """
    values = {**fields, "updated_at": updated_at, "deleted": False}
    update = [{"$replaceWith": when(_applies(updated_at), values)}]
    projection = {"_id": 0, "deleted": 1, "updated_at": 1}
    for attempt in (1, 2):
        try:
            before = await collection.find_one_and_update(
                {"clerk_id": clerk_id},
                update,
                projection=projection,
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
        except DuplicateKeyError:
            if attempt == 2:
                raise
            continue  # a concurrent insert of the same id won: the document exists now
        return "applied" if applies(before, updated_at) else "stale"
    raise AssertionError("unreachable")  # pragma: no cover


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
