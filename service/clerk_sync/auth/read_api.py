"""The read API (`/api/v1/*`): the caller's user, organizations and fellow members.

Queries are plain async functions over the motor database; the routes at the bottom are the
only Quart code, and `refuse` is the one place an error becomes an answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pymongo.errors import PyMongoError
from quart import Blueprint, Quart, Response, request

from clerk_sync.auth import models
from clerk_sync.auth.http import json_response
from clerk_sync.auth.models import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_CURSOR, MAX_LIMIT, shaped
from clerk_sync.auth.tokens import (
    SESSION_COOKIE,
    Session,
    TokenVerifier,
    build_verifier,
    token_from,
)
from clerk_sync.errors import ApiError, AuthError

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from clerk_sync.auth.http import Running
    from clerk_sync.settings import Settings

    type Database = AsyncIOMotorDatabase[dict[str, Any]]

PREFIX = "/api/v1"
EXTENSION = "clerk_sync.read_api"
#: bytes of HMAC-SHA256 a cursor carries ahead of the `clerk_id` it starts after
CURSOR_MAC_BYTES = 16
_LIMIT = re.compile(r"[0-9]{1,3}")
_CURSOR = re.compile(CURSOR_PATTERN)

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


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise ApiError("limit_invalid", f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


def cursor_key(settings: Settings) -> bytes:
    """The HMAC key of pagination cursors, so a cursor is one this API handed out.

    CLERK_SYNC_CURSOR_SECRET when set; else derived from the first webhook signing secret, which
    every replica of one deployment shares (a cursor from one replica works on the next); else a
    random key of this process (cursors then work only on the process that made them).
    """
    if settings.clerk_sync_cursor_secret is not None:
        secret = settings.clerk_sync_cursor_secret.get_secret_value().encode()
    elif settings.clerk_webhook_signing_secret:
        secret = settings.clerk_webhook_signing_secret[0].get_secret_value().encode()
    else:
        return secrets.token_bytes(32)
    return hmac.new(secret, b"clerk-sync pagination cursor v1", hashlib.sha256).digest()


def _cursor_mac(key: bytes, org_id: str, clerk_id: bytes) -> bytes:
    message = org_id.encode("utf-8", "surrogatepass") + b"\x00" + clerk_id
    return hmac.new(key, message, hashlib.sha256).digest()[:CURSOR_MAC_BYTES]


def encode_cursor(key: bytes, org_id: str, clerk_id: str) -> str:
    """An opaque cursor: MAC over (organization, `clerk_id`), then the `clerk_id`, base64url."""
    raw = clerk_id.encode()
    token = _cursor_mac(key, org_id, raw) + raw
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def decode_cursor(key: bytes, org_id: str, value: str | None) -> str | None:
    """The `clerk_id` a page of `org_id` starts after; `None` for the first page. A cursor this
    API did not hand out for this organization (tampered, forged, another key) is refused."""
    if value is None:
        return None
    refused = ApiError("cursor_invalid", "'cursor' is not a cursor this API handed out")
    if not value or len(value) > MAX_CURSOR or not _CURSOR.fullmatch(value):
        raise refused
    try:
        token = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error) as error:
        raise refused from error
    mac, raw = token[:CURSOR_MAC_BYTES], token[CURSOR_MAC_BYTES:]
    if len(mac) < CURSOR_MAC_BYTES or not hmac.compare_digest(mac, _cursor_mac(key, org_id, raw)):
        raise refused
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise refused from error


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


def refuse(error: ApiError) -> Response:
    """The one mapping of read API errors to answers: `{"error", "reason"}` and the status."""
    headers = {"Cache-Control": "no-store"}
    if isinstance(error, AuthError):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    body = {"error": str(error), "reason": error.reason}
    model = models.ERRORS.get(error.reason)
    return json_response(body if model is None else shaped(model, body), error.status, headers)


def _private(model: type[BaseModel], body: object) -> Response:
    """A 200 answer in the shape of its documented model, never cached."""
    return json_response(shaped(model, body), headers={"Cache-Control": "no-store"})


async def caller(verifier: TokenVerifier) -> Session:
    """The verified session of the current request (Bearer header, else the __session cookie);
    every failure is an `AuthError` with its reason. The read API and `ClerkSync` both use it."""
    header = request.headers.get("Authorization")
    return await verifier.verify(token_from(header, request.cookies.get(SESSION_COOKIE)))


def make_verifier(app: Quart, runtime: Running) -> TokenVerifier:
    """The app's session-token verifier, built once from the settings and kept on the app;
    bad key settings stop start-up with a `ConfigError`."""
    verifier: TokenVerifier = build_verifier(runtime.settings, runtime.log)
    app.extensions[EXTENSION] = verifier
    return verifier


def register_read_api(parent: Quart | Blueprint, runtime: Running, verifier: TokenVerifier) -> None:
    """Mount `/api/v1/*` on the app (or a blueprint of it), checking tokens with `verifier`."""
    key = cursor_key(runtime.settings)
    api = Blueprint("read_api", __name__, url_prefix=PREFIX)

    def database() -> Database:
        if runtime.store is None:
            raise ApiError("storage_unavailable", "storage is not started", status=503)
        return runtime.store.db

    @api.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        if isinstance(error, AuthError):
            runtime.log.debug("read_api_unauthorized", reason=error.reason)
        return refuse(error)

    @api.errorhandler(PyMongoError)
    async def storage_error(error: PyMongoError) -> Response:
        runtime.log.warning("read_api_storage_error", error=type(error).__name__)
        answer = refuse(ApiError("storage_unavailable", "storage unavailable", status=503))
        answer.headers["Retry-After"] = "5"
        return answer

    @api.get("/me")
    async def me() -> Response:
        session = await caller(verifier)
        return _private(models.User, await find_user(database(), session.user_id))

    @api.get("/me/organizations")
    async def me_organizations() -> Response:
        session = await caller(verifier)
        mine = await my_organizations(database(), session.user_id)
        return _private(models.MyOrganizations, {"data": mine})

    @api.get("/organizations/<org_id>/members")
    async def members(org_id: str) -> Response:
        session = await caller(verifier)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(key, org_id, request.args.get("cursor"))
        db = database()
        if not await is_member(db, org_id, session.user_id):
            raise ApiError("not_a_member", "you are not a member of this organization", status=403)
        data, next_cursor = await members_page(db, org_id, limit=limit, after=after, key=key)
        return _private(models.MemberPage, {"data": data, "next_cursor": next_cursor})

    parent.register_blueprint(api)
