"""Svix / Standard Webhooks signature verification: a pure function of bytes, headers and a clock.

The signed content is ``f"{id}.{timestamp}.{body}"``, HMAC-SHA256 keyed with the base64 part of each
``whsec_`` secret; any ``v1`` entry matching any secret wins. Timestamps outside ±5 minutes fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from clerk_sync.errors import BadRequest, InvalidSignature
from clerk_sync.whsec import decode_secret

__all__ = ["HeaderLookup", "SvixHeaders", "decode_secret", "parse_headers", "verify"]

TOLERANCE_SECONDS = 5 * 60
_MAX_ID = 256
_MAX_SIGNATURE_HEADER = 4096


class HeaderLookup(Protocol):
    """Anything with a case-insensitive `get`, e.g. a Werkzeug `Headers` or a plain dict."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SvixHeaders:
    """The three delivery headers, validated for shape (not yet for authenticity)."""

    id: str
    timestamp: int
    signatures: tuple[bytes, ...]


def _header(headers: HeaderLookup, name: str) -> str | None:
    value = headers.get(f"svix-{name}")
    return value if value is not None else headers.get(f"webhook-{name}")


def parse_headers(headers: HeaderLookup) -> SvixHeaders:
    """Read `svix-*` (or `webhook-*`) headers; raise BadRequest when missing or malformed."""
    msg_id, timestamp, signature = (_header(headers, n) for n in ("id", "timestamp", "signature"))
    if not msg_id or not timestamp or not signature:
        raise BadRequest("missing svix-id, svix-timestamp or svix-signature header")
    if len(msg_id) > _MAX_ID or not msg_id.isprintable() or not msg_id.isascii():
        raise BadRequest("malformed svix-id header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise BadRequest("malformed svix-timestamp header")
    if len(signature) > _MAX_SIGNATURE_HEADER:
        raise BadRequest("malformed svix-signature header")
    return SvixHeaders(msg_id, int(timestamp), _v1_signatures(signature))


def _v1_signatures(header: str) -> tuple[bytes, ...]:
    """Decode every `v1,<base64>` entry; other versions are ignored; none valid is a bad request."""
    found: list[bytes] = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not found:
        raise BadRequest("malformed svix-signature header: no v1 signature")
    return tuple(found)


def verify(body: bytes, headers: SvixHeaders, keys: Iterable[bytes], now: float) -> None:
    """Raise InvalidSignature unless a `v1` signature matches one key and the time is in range."""
    if abs(now - headers.timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the 5 minute tolerance")
    prefix = f"{headers.id}.{headers.timestamp}.".encode()
    for key in keys:
        mac = hmac.new(key, prefix, hashlib.sha256)
        mac.update(body)
        expected = mac.digest()
        if any(hmac.compare_digest(expected, given) for given in headers.signatures):
            return
    raise InvalidSignature("no signature matches a configured secret")
