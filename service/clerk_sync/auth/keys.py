"""Where the keys that verify session tokens come from: CLERK_JWT_KEY, or Clerk's JWKS.

Plain async code with an injectable clock and fetcher; a JWKS that cannot be fetched or read is
an `AuthError` (`jwks_unavailable`, `key_not_found`), answered 401, never a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import RSAAlgorithm

from clerk_sync.errors import AuthError, ConfigError

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


ALGORITHM = "RS256"
JWKS_MIN_INTERVAL = 10.0
JWKS_CACHE_SECONDS = 3600.0
JWKS_TIMEOUT = 5.0

type Clock = Callable[[], float]
type Fetch = Callable[[str], Awaitable[object]]


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
