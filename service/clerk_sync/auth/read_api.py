"""The read API (`/api/v1/*`): the caller's user, organizations and fellow members.

The routes here are the only Quart code of the read API: the queries are plain async functions
in `queries`, pagination in `cursor`, and `refuse` is the one place an error becomes an answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pymongo.errors import PyMongoError
from quart import Blueprint, Quart, Response, request

from clerk_sync.auth import models
from clerk_sync.auth.cursor import cursor_key, decode_cursor, parse_limit
from clerk_sync.auth.entitlements import entitlements_of, subject_for
from clerk_sync.auth.http import json_response
from clerk_sync.auth.models import shaped
from clerk_sync.auth.queries import find_user, is_member, members_page, my_organizations
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

    type Database = AsyncIOMotorDatabase[dict[str, Any]]

PREFIX = "/api/v1"
EXTENSION = "clerk_sync.read_api"


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

    @api.get("/me/billing")
    async def me_billing() -> Response:
        session = await caller(verifier)
        org_id = request.args.get("organization_id") or None
        db = database()
        subject = await subject_for(db, session.user_id, org_id)
        if subject is None:
            raise ApiError("not_a_member", "you are not a member of this organization", status=403)
        grace = timedelta(seconds=runtime.settings.clerk_sync_past_due_grace)
        found = await entitlements_of(db, subject, now=datetime.now(UTC), grace=grace)
        return _private(models.Billing, found.as_json())

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
