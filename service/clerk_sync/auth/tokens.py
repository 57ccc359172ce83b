"""Clerk session tokens: where a request carries one, which key verifies it, what it must claim.

Plain async code with injectable clocks, so tests call it directly; only
`clerk_sync.auth.read_api` touches Quart. Every failure is an `AuthError` with a reason code,
answered 401: never a 500.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from clerk_sync.auth.keys import (
    ALGORITHM,
    Clock,
    JwksKeys,
    KeySource,
    StaticKey,
)
from clerk_sync.errors import AuthError, ConfigError

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.settings import Settings

LEEWAY_SECONDS = 5.0
SESSION_COOKIE = "__session"


#: Signature and structure are PyJWT's job; times and claims are checked here, against our clock.
_DECODE_OPTIONS: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


@dataclass(frozen=True, slots=True)
class Session:
    """A verified, signed-in caller, and the organization active in the session, if any.

    `org_role` is spelled as Clerk names roles in memberships (`org:admin`), from the `o`
    claim of v2 tokens (`rol` comes without the `org:` prefix) or `org_role` of v1 tokens."""

    user_id: str
    session_id: str | None
    claims: Mapping[str, Any]
    org_id: str | None = None
    org_role: str | None = None
    org_slug: str | None = None


def token_from(authorization: str | None, session_cookie: str | None) -> str:
    """The request's token: from `Authorization: Bearer …` when that is sent, else the cookie."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("token_malformed", "the Authorization header is not 'Bearer <token>'")
        return token.strip()
    if session_cookie:
        return session_cookie
    raise AuthError(
        "token_missing",
        "no session token: send 'Authorization: Bearer <token>' or the __session cookie",
    )


class TokenVerifier:
    """Verifies a session token: RS256 signature, then times, issuer, party and session status."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str | None = None,
        authorized_parties: Collection[str] = (),
        leeway: float = LEEWAY_SECONDS,
        clock: Clock = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.authorized_parties = frozenset(authorized_parties)
        self.leeway = leeway
        self.clock = clock

    async def verify(self, token: str) -> Session:
        key = await self.keys.key_for(key_id(token))
        return self.check(decode(token, key))

    def check(self, claims: Mapping[str, Any]) -> Session:
        """Apply the claim rules to a payload whose signature is already verified."""
        now = self.clock()
        expires = _time_claim(claims, "exp", required=True)
        if expires is not None and now >= expires + self.leeway:
            raise AuthError("token_expired", "the token has expired")
        for name in ("nbf", "iat"):
            moment = _time_claim(claims, name)
            if moment is not None and now < moment - self.leeway:
                raise AuthError("token_not_yet_valid", f"the token is not valid yet ('{name}')")
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise AuthError("issuer_invalid", "the token was not issued by CLERK_ISSUER")
        party = _text_claim(claims, "azp")
        if self.authorized_parties and party is not None and party not in self.authorized_parties:
            raise AuthError("azp_not_allowed", "the token's 'azp' is not an authorized party")
        if claims.get("sts") == "pending":
            raise AuthError("session_pending", "the session is pending: the caller is signed out")
        return _session(claims)


def key_id(token: str) -> str | None:
    """The `kid` of a token whose header names RS256; anything else is refused before any key."""
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise AuthError("token_malformed", "the token is not a well-formed JWT") from error
    if header.get("alg") != ALGORITHM:
        raise AuthError("algorithm_not_allowed", f"only {ALGORITHM} tokens are accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AuthError("token_malformed", "the token's 'kid' is not a string")
    return kid


def decode(token: str, key: RSAPublicKey) -> dict[str, Any]:
    """The payload once the RS256 signature over the token checks out with `key`."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], options=_DECODE_OPTIONS
        )
    except jwt.InvalidSignatureError as error:
        raise AuthError("signature_invalid", "the token's signature does not verify") from error
    except jwt.InvalidAlgorithmError as error:
        raise AuthError("algorithm_not_allowed", f"only {ALGORITHM} tokens are accepted") from error
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise AuthError("token_malformed", "the token is not a well-formed JWT") from error
    return claims


def _time_claim(claims: Mapping[str, Any], name: str, *, required: bool = False) -> float | None:
    """A NumericDate claim as a float; JSON allows integers no float holds (10**400), refused."""
    value = claims.get(name)
    if value is None and not required:
        return None
    invalid = AuthError("claims_invalid", f"the token's '{name}' is missing or not a number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid
    try:
        moment = float(value)
    except OverflowError as error:
        raise invalid from error
    if not math.isfinite(moment):
        raise invalid
    return moment


def _text_claim(claims: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string claim that is non-empty valid Unicode (no lone surrogate: MongoDB cannot store
    or query it); absent is `None` unless required; any other type or shape is refused."""
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise AuthError("claims_invalid", f"the token's '{name}' is missing or not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise AuthError("claims_invalid", f"the token's '{name}' is not valid text") from error
    return value


def _session(claims: Mapping[str, Any]) -> Session:
    subject = _text_claim(claims, "sub", required=True)
    assert subject is not None
    org_id, role, slug = _active_organization(claims)
    return Session(subject, _text_claim(claims, "sid"), claims, org_id, role, slug)


def _active_organization(claims: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(id, role, slug) of the active organization: v2 `o: {id, rol, slg}`, else v1 `org_*`."""
    active = claims.get("o")
    if active is None:
        org_id, role, slug = (_text_claim(claims, f"org_{n}") for n in ("id", "role", "slug"))
    elif isinstance(active, Mapping):
        org_id, role, slug = (_text_claim(active, n) for n in ("id", "rol", "slg"))
    else:
        raise AuthError("claims_invalid", "the token's 'o' is not an object")
    if role is not None and not role.startswith("org:"):
        role = "org:" + role
    return org_id, role, slug


def build_verifier(settings: Settings, log: FilteringBoundLogger | None = None) -> TokenVerifier:
    """The verifier the settings describe: CLERK_JWT_KEY when set, else CLERK_JWKS_URL."""
    keys: KeySource
    if settings.clerk_jwt_key is not None:
        keys = StaticKey.from_pem(settings.clerk_jwt_key.get_secret_value())
    elif settings.clerk_jwks_url is not None:
        url = settings.clerk_jwks_url
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigError("invalid configuration: CLERK_JWKS_URL: not an http(s) URL")
        keys = JwksKeys(url, max_age=settings.clerk_jwks_cache_seconds, log=log)
    else:
        raise ConfigError("the read API needs CLERK_JWT_KEY or CLERK_JWKS_URL")
    return TokenVerifier(
        keys, issuer=settings.clerk_issuer, authorized_parties=settings.clerk_authorized_parties
    )
