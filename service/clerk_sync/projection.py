"""Order-safe writes for projections: newest `updated_at` wins, tombstones are final.

Svix does not guarantee order. Every write here is one atomic MongoDB command (plus one retry on
an insert race), so concurrent deliveries of different versions converge on the newest one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pymongo.errors import DuplicateKeyError

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

type Applied = Literal["applied", "stale"]


def live_and_not_newer(clerk_id: str, updated_at: datetime | None) -> dict[str, Any]:
    """Filter matching the stored object only when it is not a tombstone and not newer."""
    query: dict[str, Any] = {"clerk_id": clerk_id, "deleted": {"$ne": True}}
    if updated_at is not None:
        query["updated_at"] = {"$not": {"$gt": updated_at}}
    return query


async def upsert_if_newer(
    collection: AsyncIOMotorCollection[dict[str, Any]],
    clerk_id: str,
    fields: Mapping[str, Any],
    updated_at: datetime | None,
) -> Applied:
    """Insert the object, or update it when the stored version is not newer and not deleted."""
    query = live_and_not_newer(clerk_id, updated_at)
    update = {"$set": {**fields, "clerk_id": clerk_id, "updated_at": updated_at, "deleted": False}}
    try:
        result = await collection.update_one(query, update, upsert=True)
    except DuplicateKeyError:
        # either a newer version / tombstone exists, or a concurrent insert won the race:
        # the document exists now, so try once more as a plain conditional update
        result = await collection.update_one(query, update)
        return "applied" if result.matched_count else "stale"
    return "applied"


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
