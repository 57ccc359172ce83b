"""Pagination of the read API: the `limit` parameter, and opaque cursors signed with HMAC so a
cursor is one this API handed out for that organization. No Quart."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING

from clerk_sync.auth.models import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_CURSOR, MAX_LIMIT
from clerk_sync.errors import ApiError

if TYPE_CHECKING:
    from clerk_sync.settings import Settings

#: bytes of HMAC-SHA256 a cursor carries ahead of the `clerk_id` it starts after
CURSOR_MAC_BYTES = 16
_LIMIT = re.compile(r"[0-9]{1,3}")
_CURSOR = re.compile(CURSOR_PATTERN)


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
