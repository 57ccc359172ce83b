"""The checks behind `ClerkSync`'s view decorators: the verified session, the organization a
view is about, the caller's synced membership, and the start-up check of decorated views.

An HTTP module (it reads Quart's request context); kept on the app, never in module state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, current_app, g, request

from clerk_sync.auth.entitlements import (
    Entitlements,
    Subject,
    entitlements_of,
    membership_permissions,
    subject_for,
)
from clerk_sync.auth.queries import live_membership
from clerk_sync.auth.read_api import caller, refuse
from clerk_sync.errors import ApiError, AuthError, ConfigError
from clerk_sync.runtime import Runtime

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from clerk_sync.auth.tokens import Session, TokenVerifier

#: `app.extensions` keys: the app's `Runtime`, and its session-token verifier
EXTENSION = "clerk_sync"
VERIFIER = "clerk_sync.read_api"
_SESSION = "_clerk_sync_session"

type View = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Guard:
    """What a decorator of a `ClerkSync` asks of the view it wraps."""

    decorator: str
    org_from: str | None = None


def check_guards(app: Quart, guards: dict[object, Guard]) -> None:
    """A decorated view needs session keys, and its `org_from` in its URL rule."""
    for rule in app.url_map.iter_rules():
        guard = guards.get(app.view_functions[rule.endpoint])
        if guard is None:
            continue
        if app.extensions.get(VERIFIER) is None:
            raise ConfigError(
                f"invalid configuration: CLERK_JWT_KEY or CLERK_JWKS_URL: needed by "
                f"@clerk.{guard.decorator} on {rule.rule}"
            )
        if guard.org_from is not None and guard.org_from not in rule.arguments:
            raise ConfigError(
                f"@clerk.{guard.decorator} on {rule.rule}: the rule has no "
                f"<{guard.org_from}>; name its variable with org_from=, or pass "
                "org_from=None for the organization active in the session"
            )


def runtime() -> Runtime:
    found: Runtime | None = current_app.extensions.get(EXTENSION)
    if found is None:
        raise ConfigError(f"the app {current_app.name!r} has no ClerkSync: call init_app(app)")
    return found


def database() -> AsyncIOMotorDatabase[dict[str, Any]]:
    store = runtime().store
    if store is None:
        raise ApiError("storage_unavailable", "storage is not started", status=503)
    return store.db


def current_session() -> Session | None:
    """The session `verify_session` kept for this request, None outside a guarded view."""
    session: Session | None = g.get(_SESSION)
    return session


async def verify_session() -> Response | None:
    """Keep the verified session on `g`; else the 401 (or 503 when no key is configured)."""
    verifier: TokenVerifier | None = current_app.extensions.get(VERIFIER)
    if verifier is None:
        return refuse(
            ApiError(
                "sessions_not_configured",
                "session checks need CLERK_JWT_KEY or CLERK_JWKS_URL",
                status=503,
            )
        )
    try:
        session = await caller(verifier)
    except AuthError as error:
        runtime().log.debug("session_refused", path=request.path, reason=error.reason)
        return refuse(error)
    setattr(g, _SESSION, session)
    return None


def organization(org_from: str | None, view_args: dict[str, Any]) -> str | None:
    """The organization the view is about: its argument `org_from`, else the session's."""
    if org_from is None:
        session: Session = g.get(_SESSION)
        return session.org_id
    if org_from not in view_args:
        raise ConfigError(f"@clerk: the guarded view has no argument {org_from!r}")
    value = view_args[org_from]
    return value if isinstance(value, str) else str(value)


def _not_a_member() -> ApiError:
    return ApiError("not_a_member", "you are not a member of this organization", status=403)


async def _membership(org_id: str | None) -> dict[str, Any]:
    """The caller's live membership of `org_id`; 403 `ApiError` without one."""
    session: Session = g.get(_SESSION)
    if org_id is None:
        raise ApiError("no_active_organization", "no organization is active", status=403)
    membership = await live_membership(database(), org_id, session.user_id)
    if membership is None:
        raise _not_a_member()
    return membership


async def check_role(role: str, org_id: str | None) -> Response | None:
    try:
        membership = await _membership(org_id)
    except ApiError as error:
        return refuse(error)
    if membership.get("role") != role:
        return refuse(ApiError("org_role_required", f"this needs the role {role}", status=403))
    return None


async def check_permission(key: str, org_id: str | None) -> Response | None:
    """403 unless the caller's live membership of `org_id` carries the permission `key`."""
    try:
        membership = await _membership(org_id)
    except ApiError as error:
        return refuse(error)
    if key not in await membership_permissions(database(), membership):
        return refuse(
            ApiError("permission_required", f"this needs the permission {key}", status=403)
        )
    return None


async def entitlements(user_id: str, organization_id: str | None) -> Entitlements | None:
    """The entitlements of the user, or of the organization it is a live member of; None for an
    organization it does not belong to. From synced state at the present time."""
    subject = await subject_for(database(), user_id, organization_id)
    if subject is None:
        return None
    return await subject_entitlements(subject)


async def subject_entitlements(subject: Subject) -> Entitlements:
    grace = timedelta(seconds=runtime().settings.clerk_sync_past_due_grace)
    return await entitlements_of(database(), subject, now=datetime.now(UTC), grace=grace)


async def check_billing(kind: str, wanted: str, org_id: str | None) -> Response | None:
    """403 unless the subject (the organization `org_id` of a member, else the caller) has the
    plan (`kind="plan"`) or the feature (`kind="feature"`) `wanted`."""
    session: Session = g.get(_SESSION)
    found = await entitlements(session.user_id, org_id)
    if found is None:
        return refuse(_not_a_member())
    held = found.plans if kind == "plan" else found.features
    if wanted not in held:
        return refuse(ApiError(f"{kind}_required", f"this needs the {kind} {wanted}", status=403))
    return None


async def refused(error: ApiError) -> Response:
    """An `ApiError` raised in a view of the host app (storage not started) as JSON."""
    return refuse(error)
