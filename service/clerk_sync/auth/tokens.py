"""Clerk session tokens: where a request carries one, which key verifies it, what it must claim.

Plain async code with injectable clocks, so tests call it directly; only
`clerk_sync.auth.read_api` touches Quart. Every failure is an `AuthError` with a reason code,
answered 401: never a 500.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import RSAAlgorithm

from clerk_sync.errors import AuthError, ConfigError

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.settings import Settings

ALGORITHM = "RS256"
LEEWAY_SECONDS = 5.0
JWKS_MIN_INTERVAL = 10.0
JWKS_CACHE_SECONDS = 3600.0
JWKS_TIMEOUT = 5.0
SESSION_COOKIE = "__session"

type Clock = Callable[[], float]
type Fetch = Callable[[str], Awaitable[object]]

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
    """A verified, signed-in caller."""

    user_id: str
    session_id: str | None
    claims: Mapping[str, Any]


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


class KeySource(Protocol):
    async def key_for(self, kid: str | None) -> RSAPublicKey: ...


class StaticKey:
    """The PEM public key of CLERK_JWT_KEY: networkless, whatever `kid` the token names."""

    def __init__(self, key: RSAPublicKey) -> None:
        self.key = key

    @classmethod
    def from_pem(cls, pem: str) -> StaticKey:
        """Load the key; literal `\\n` (as env files often carry it) counts as a line break."""
        try:
            key = load_pem_public_key(pem.strip().replace("\\n", "\n").encode())
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise ConfigError(
                "invalid configuration: CLERK_JWT_KEY: not a PEM public key"
            ) from error
        if not isinstance(key, RSAPublicKey):
            raise ConfigError("invalid configuration: CLERK_JWT_KEY: not an RSA public key")
        return cls(key)

    async def key_for(self, kid: str | None) -> RSAPublicKey:
        return self.key


async def fetch_json(url: str) -> object:
    """GET a JSON document; any transport, status or parse problem raises."""
    async with httpx.AsyncClient(timeout=JWKS_TIMEOUT) as client:
        response = await client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        return response.json()


def parse_jwks(document: object) -> dict[str, RSAPublicKey]:
    """The RS256 signing keys of a JWKS by `kid`; keys of other kinds are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS: no 'keys' list")
    keys: dict[str, RSAPublicKey] = {}
    for jwk in document["keys"]:
        if not _usable_jwk(jwk):
            continue
        try:
            key = RSAAlgorithm.from_jwk(jwk)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        if isinstance(key, RSAPublicKey):
            keys[jwk["kid"]] = key
    return keys


def _usable_jwk(jwk: object) -> bool:
    return (
        isinstance(jwk, dict)
        and isinstance(jwk.get("kid"), str)
        and jwk.get("kty") == "RSA"
        and jwk.get("use", "sig") == "sig"
        and jwk.get("alg", ALGORITHM) == ALGORITHM
    )


class JwksKeys:
    """Keys from CLERK_JWKS_URL, cached by `kid` for `max_age` seconds (CLERK_JWKS_CACHE_SECONDS).

    An unknown `kid` refetches, at most once per `min_interval` seconds, so a stream of forged
    `kid`s cannot hammer the JWKS endpoint. Keys older than `max_age` are not trusted: the next
    token refetches, so a key removed from the JWKS stops verifying within `max_age`; while that
    refetch fails the old keys stay refused (`jwks_unavailable`) rather than trusted for longer.
    """

    def __init__(
        self,
        url: str,
        *,
        fetch: Fetch = fetch_json,
        clock: Clock = time.monotonic,
        min_interval: float = JWKS_MIN_INTERVAL,
        max_age: float = JWKS_CACHE_SECONDS,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        self.url = url
        self.keys: dict[str, RSAPublicKey] = {}
        self.fetches = 0
        self._fetch = fetch
        self.clock = clock
        self._min_interval = min_interval
        self.max_age = max_age
        self._log = log
        self._fetched_at: float | None = None
        self._loaded_at: float | None = None
        self._failed = False
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> RSAPublicKey:
        if kid is None:
            raise AuthError("key_not_found", "the token names no key ('kid')")
        if kid not in self.keys or self._stale():
            async with self._lock:
                if (kid not in self.keys or self._stale()) and self._may_refresh():
                    await self._refresh()
        if self._stale() and self.keys:
            raise AuthError("jwks_unavailable", "the JWKS could not be refreshed; retry later")
        key = self.keys.get(kid)
        if key is not None:
            return key
        if self._failed:
            raise AuthError("jwks_unavailable", "the JWKS could not be fetched; retry later")
        raise AuthError("key_not_found", "no key of the JWKS matches the token's 'kid'")

    def _stale(self) -> bool:
        loaded = self._loaded_at
        return loaded is not None and self.clock() - loaded >= self.max_age

    def _may_refresh(self) -> bool:
        last = self._fetched_at
        return last is None or self.clock() - last >= self._min_interval

    async def _refresh(self) -> None:
        self._fetched_at = self.clock()
        self.fetches += 1
        try:
            keys = parse_jwks(await self._fetch(self.url))
        except (httpx.HTTPError, ValueError) as error:
            self._failed = True
            if self._log is not None:
                self._log.warning("jwks_fetch_failed", error=f"{type(error).__name__}: {error}")
            return
        self._failed = False
        self.keys = keys
        self._loaded_at = self._fetched_at
        if self._log is not None:
            self._log.info("jwks_fetched", kids=sorted(keys))


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
    return Session(subject, _text_claim(claims, "sid"), claims)


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
