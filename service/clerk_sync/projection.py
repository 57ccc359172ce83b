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


async def tombstone(
    collection: AsyncIOMotorCollection[dict[str, Any]],
    query: Mapping[str, Any],
    *,
    deleted_at: datetime | None,
    cleared: Mapping[str, Any] | None = None,
    upsert: bool = False,
    many: bool = False,
) -> int:
    """Mark matching objects deleted and clear personal fields; `upsert` creates the tombstone.

    A tombstone keeps the earliest `deleted_at` seen, so replays change nothing. Returns how many
    documents changed.
    """
    update: dict[str, Any] = {"$set": {"deleted": True, **(cleared or {})}}
    if deleted_at is not None:
        update["$min"] = {"deleted_at": deleted_at}
    if many:
        result = await collection.update_many(query, update)
        return result.modified_count
    try:
        result = await collection.update_one(query, update, upsert=upsert)
    except DuplicateKeyError:
        result = await collection.update_one(query, update)
    return result.modified_count + (1 if result.upserted_id is not None else 0)
