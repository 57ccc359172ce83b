"""Who may use the console, its CSRF tokens, and the headers of every answer it sends.

An HTTP module. Access is off unless configured: a Clerk session token (Bearer header, else the
`__session` cookie; the read API's checks) of a user in CLERK_SYNC_CONSOLE_USERS, or of a member
of CLERK_SYNC_CONSOLE_ORG whose synced membership has `org:clerk_sync:operate`. In development
mode with neither set, requests from 127.0.0.1 are served without a token, and no others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quart import Response, request

from clerk_sync.auth.entitlements import membership_permissions
from clerk_sync.auth.queries import live_membership
from clerk_sync.auth.read_api import caller
from clerk_sync.errors import ApiError, AuthError

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from clerk_sync.auth.tokens import TokenVerifier
    from clerk_sync.settings import Settings

PERMISSION = "org:clerk_sync:operate"
LOOPBACK = "127.0.0.1"
CSRF_FIELD = "csrf_token"
#: images only as inline SVG, styles only from our own file, no script, no framing
POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is using the console: a Clerk user, or `development` on 127.0.0.1."""

    who: str
    binding: str  # what the CSRF token is bound to: the session, else the user


def client_host() -> str | None:
    """The peer address of the connection (never a forwarded header: those can be forged)."""
    client = request.scope.get("client")
    return str(client[0]) if client else None


async def admit(
    settings: Settings, verifier: TokenVerifier | None, db: AsyncIOMotorDatabase[dict[str, Any]]
) -> Caller:
    """The caller, or an `ApiError`: 401 without a valid token, 403 when not allowed."""
    if settings.console_development:
        if client_host() != LOOPBACK:
            raise ApiError(
                "console_local_only",
                "in development mode the console answers 127.0.0.1 only",
                status=403,
            )
        return Caller("development", "development")
    if verifier is None:  # settings refuse console callers without session keys
        raise ApiError("sessions_not_configured", "the console needs session keys", status=503)
    session = await caller(verifier)
    binding = session.session_id or session.user_id
    if session.user_id in settings.clerk_sync_console_users:
        return Caller(session.user_id, binding)
    org = settings.clerk_sync_console_org
    if org is not None:
        membership = await live_membership(db, org, session.user_id)
        if membership is not None and PERMISSION in await membership_permissions(db, membership):
            return Caller(session.user_id, binding)
    raise ApiError("console_forbidden", "this user may not use the console", status=403)


def csrf_token(key: bytes, who: Caller) -> str:
    """The form token of this caller's session: an HMAC only this service can make."""
    mac = hmac.new(key, b"console csrf\x00" + who.binding.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_valid(key: bytes, who: Caller, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent, csrf_token(key, who))


def csrf_key(cursor_key: bytes) -> bytes:
    """The CSRF key, derived from the cursor key (shared by replicas the same way)."""
    return hmac.new(cursor_key, b"clerk-sync console csrf v1", hashlib.sha256).digest()


def secured(response: Response) -> Response:
    """Every console answer: strict CSP, no framing, never cached."""
    response.headers.update(HEADERS)
    return response


def status_of(error: ApiError) -> int:
    return 401 if isinstance(error, AuthError) else error.status
