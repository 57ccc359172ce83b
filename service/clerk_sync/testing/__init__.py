"""Helpers for tests, ours and plugin authors': sign deliveries exactly as Svix does.

>>> from clerk_sync.testing import signed_headers
>>> headers = signed_headers(b'{"type":"user.created","data":{}}', secret="whsec_...")

Also the bundled signed samples (`samples/`) and, in `pytest_plugin`, the MongoDB fixtures. Beside
the app in the layers: it may import the delivery path (the secret format, the signature check)
and storage (the embedded store), never the app or the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

from clerk_sync.webhooks.verify import decode_secret

#: A syntactically valid secret for tests (never use it in production).
TEST_SECRET = "whsec_" + base64.b64encode(b"clerk-sync-test-secret-32-bytes!").decode()
SAMPLES = Path(__file__).with_name("samples")


def new_svix_id() -> str:
    return "msg_" + secrets.token_urlsafe(20).replace("-", "a").replace("_", "b")[:27]


def sign(body: bytes, *, secret: str, msg_id: str, timestamp: int) -> str:
    """The `svix-signature` header value (`v1,<base64>`) for `body`."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    body: bytes,
    *,
    secret: str = TEST_SECRET,
    msg_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three Svix headers for `body`: a fresh id and the current time unless given."""
    msg_id = msg_id or new_svix_id()
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": sign(body, secret=secret, msg_id=msg_id, timestamp=timestamp),
        "content-type": "application/json",
    }


def envelope(event_type: str, data: dict[str, Any], *, timestamp_ms: int | None = None) -> bytes:
    """A Clerk envelope around `data`, serialised as Clerk would send it."""
    body = {
        "data": data,
        "object": "event",
        "type": event_type,
        "timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        "instance_id": "ins_2testinstance0000000000000",
    }
    return json.dumps(body).encode()


def sample(event_type: str) -> bytes:
    """The bundled sample delivery of `event_type` (the Clerk story of ../shared/clerk/events)."""
    return (SAMPLES / f"{event_type}.json").read_bytes()


def sample_types() -> list[str]:
    return sorted(p.stem for p in SAMPLES.glob("*.json") if not p.name.startswith("_"))
