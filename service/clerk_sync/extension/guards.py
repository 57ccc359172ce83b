"""The checks behind `ClerkSync`'s view decorators: the verified session, the organization a
view is about, the caller's synced membership, and the start-up check of decorated views.

An HTTP module (it reads Quart's request context); kept on the app, never in module state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, current_app, g, request

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
        raise ConfigError(f"@clerk.require_org_role: the view has no argument {org_from!r}")
    value = view_args[org_from]
    return value if isinstance(value, str) else str(value)


async def check_role(role: str, org_id: str | None) -> Response | None:
    session: Session = g.get(_SESSION)
    if org_id is None:
        error = ApiError("no_active_organization", "no organization is active", status=403)
        return refuse(error)
    membership = await live_membership(database(), org_id, session.user_id)
    if membership is None:
        return refuse(
            ApiError("not_a_member", "you are not a member of this organization", status=403)
        )
    if membership.get("role") != role:
        return refuse(ApiError("org_role_required", f"this needs the role {role}", status=403))
    return None


async def refused(error: ApiError) -> Response:
    """An `ApiError` raised in a view of the host app (storage not started) as JSON."""
    return refuse(error)
