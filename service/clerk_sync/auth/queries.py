"""What the read API and `ClerkSync`'s guards read from the projections: plain async functions
over the motor database, answers as JSON-ready dicts. No Quart."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clerk_sync.auth.cursor import encode_cursor
from clerk_sync.errors import ApiError

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    type Database = AsyncIOMotorDatabase[dict[str, Any]]

_USER_HIDDEN = {"_id": False, "private_metadata": False}
_MEMBERSHIP_FIELDS = (
    "clerk_id",
    "organization_id",
    "user_id",
    "role",
    "permissions",
    "public_metadata",
    "created_at",
    "updated_at",
)
_ORGANIZATION_SUMMARY = ("name", "slug", "image_url")
_USER_SUMMARY = ("username", "first_name", "last_name", "image_url")
_LIVE = {"deleted": {"$ne": True}}


def plain(value: Any) -> Any:
    """A stored value as JSON: datetimes as ISO-8601 (UTC), other BSON types as strings."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.isoformat()
    if isinstance(value, Mapping):
        return plain_document(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def plain_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): plain(v) for k, v in doc.items()}


async def find_user(db: Database, user_id: str) -> dict[str, Any]:
    """The caller's user document without `_id` and `private_metadata`."""
    user = await db.users.find_one({"clerk_id": user_id}, projection=_USER_HIDDEN)
    if user is None:
        raise ApiError("user_not_synced", "no user with this id has been synced yet", status=404)
    if user.get("deleted"):
        raise ApiError("user_deleted", "this user has been deleted", status=404)
    return plain_document(user)


async def my_organizations(db: Database, user_id: str) -> list[dict[str, Any]]:
    """The caller's live memberships, each with its organization's summary."""
    query = {"user_id": user_id, **_LIVE}
    cursor = db.organization_memberships.find(
        query, projection=dict.fromkeys(_MEMBERSHIP_FIELDS, 1)
    )
    memberships = await cursor.sort("clerk_id", 1).to_list(length=None)
    organizations = await _by_id(
        db.organizations, {m.get("organization_id") for m in memberships}, _ORGANIZATION_SUMMARY
    )
    result = []
    for membership in memberships:
        org_id = membership.get("organization_id")
        organization = organizations.get(org_id)
        if organization is not None and organization.get("deleted"):
            continue
        item = _membership(membership)
        item["organization"] = {"id": org_id, **_summary(organization, _ORGANIZATION_SUMMARY)}
        result.append(item)
    return result


async def live_membership(db: Database, org_id: str, user_id: str) -> dict[str, Any] | None:
    """The user's live membership of a live (or not yet synced) organization, else None."""
    query = {"organization_id": org_id, "user_id": user_id, **_LIVE}
    found = await db.organization_memberships.find_one(query, projection={"_id": False})
    if found is None:
        return None
    tombstone = {"clerk_id": org_id, "deleted": True}
    if await db.organizations.find_one(tombstone, projection={"_id": True}) is not None:
        return None
    return found


async def is_member(db: Database, org_id: str, user_id: str) -> bool:
    """Whether the user has a live membership in a live (or not yet synced) organization."""
    return await live_membership(db, org_id, user_id) is not None


async def synced_user(db: Database, user_id: str) -> dict[str, Any] | None:
    """The user's whole stored document (without `_id`), or None until synced or once deleted."""
    query = {"clerk_id": user_id, **_LIVE}
    found: dict[str, Any] | None = await db.users.find_one(query, projection={"_id": False})
    return found


async def members_page(
    db: Database, org_id: str, *, limit: int, after: str | None, key: bytes
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an organization's live members in `clerk_id` order, and the next cursor."""
    query: dict[str, Any] = {"organization_id": org_id, **_LIVE}
    if after is not None:
        query["clerk_id"] = {"$gt": after}
    found = db.organization_memberships.find(query, projection=dict.fromkeys(_MEMBERSHIP_FIELDS, 1))
    rows = await found.sort("clerk_id", 1).limit(limit + 1).to_list(length=None)
    page = rows[:limit]
    users = await _by_id(db.users, {m.get("user_id") for m in page}, _USER_SUMMARY)
    data = []
    for membership in page:
        item = _membership(membership)
        user = users.get(membership.get("user_id"))
        live = user is not None and not user.get("deleted")
        item["user"] = {"id": item["user_id"], **_summary(user, _USER_SUMMARY)} if live else None
        data.append(item)
    if len(rows) <= limit or not page:
        return data, None
    return data, encode_cursor(key, org_id, str(page[-1]["clerk_id"]))


async def _by_id(
    collection: Any, ids: set[Any], fields: tuple[str, ...]
) -> dict[Any, dict[str, Any]]:
    wanted = [i for i in ids if isinstance(i, str)]
    if not wanted:
        return {}
    projection = dict.fromkeys((*fields, "clerk_id", "deleted"), 1)
    found = collection.find({"clerk_id": {"$in": wanted}}, projection=projection)
    return {doc["clerk_id"]: doc async for doc in found}


def _summary(doc: Mapping[str, Any] | None, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: plain(doc.get(name)) if doc is not None else None for name in fields}


def _membership(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": doc.get("clerk_id"),
        "organization_id": doc.get("organization_id"),
        "user_id": doc.get("user_id"),
        "role": doc.get("role"),
        "permissions": plain(doc.get("permissions") or []),
        "public_metadata": plain(doc.get("public_metadata") or {}),
        "created_at": plain(doc.get("created_at")),
        "updated_at": plain(doc.get("updated_at")),
    }
