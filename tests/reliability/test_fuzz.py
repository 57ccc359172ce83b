"""Fuzzing the receiver in-process: nothing unsigned is accepted, nothing answers 5xx."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clerk_sync.testing import TEST_SECRET, envelope, new_svix_id, sign
from tests.conftest import Runner

pytestmark = pytest.mark.reliability

MAX_EXAMPLES = 1000
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=64)


def nested(depth: int, kind: str) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def bodies() -> st.SearchStrategy[bytes]:
    # around MongoDB's 100 levels, the embedded server's recursion limit and orjson's 1024
    edges = st.sampled_from([96, 97, 98, 99, 100, 101, 450, 500, 999, 1022, 1023, 1024, 1025])
    depth = st.integers(min_value=1, max_value=3000) | edges
    kind = st.sampled_from(["list", "dict"])
    return st.one_of(
        st.binary(max_size=512),  # mostly invalid UTF-8 / not JSON
        st.builds(
            lambda d, k: envelope("user.created", {"id": "user_x", "deep": nested(d, k)}),
            depth,
            kind,
        ),
        st.builds(lambda d: b"[" * d + b"]" * d, depth),
        st.builds(lambda d: b'{"a":' * d + b"1" + b"}" * d, depth),
        st.builds(
            lambda t, data: json.dumps({"type": t, "data": data}).encode(),
            st.text(max_size=30),
            st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4),
        ),
        st.just(envelope("user.created", {"id": "user_big", "n": 2**70})),
        st.just(b'{"type":"user.created","data":{"id":"\xff\xfe"}}'),
        st.just(envelope("made.up", {"id": "x"})),
    )


def mutate(kind: str, body: bytes, junk: str, now: int) -> tuple[bytes, dict[str, str], bool]:
    """Headers for `body` after mutation `kind`; the flag says whether a valid signature remains."""
    msg_id = new_svix_id()
    good = sign(body, secret=TEST_SECRET, msg_id=msg_id, timestamp=now)
    headers = {"svix-id": msg_id, "svix-timestamp": str(now), "svix-signature": good}
    valid = False
    if kind == "valid":
        valid = True
    elif kind == "webhook_twins":
        headers = {f"webhook-{k.removeprefix('svix-')}": v for k, v in headers.items()}
        valid = True
    elif kind == "junk_then_valid":
        headers["svix-signature"] = f"v1,{junk} v2,abc v1a,zz {good}"
        valid = True
    elif kind == "drop":
        headers.pop(["svix-id", "svix-timestamp", "svix-signature"][len(junk) % 3])
    elif kind == "replace":
        headers[["svix-id", "svix-timestamp", "svix-signature"][len(junk) % 3]] = junk
    elif kind == "flip":
        raw = bytearray(base64.b64decode(good[3:]))
        raw[len(junk) % len(raw)] ^= 1 + len(junk) % 255
        headers["svix-signature"] = "v1," + base64.b64encode(bytes(raw)).decode()
    elif kind == "old":
        headers["svix-timestamp"] = str(now - 301 - len(junk) * 1000)
    elif kind == "future":
        headers["svix-timestamp"] = str(now + 301 + len(junk) * 1000)
    elif kind == "tampered_body":
        body = body + b" " + junk.encode("latin-1")
    elif kind == "other_secret":
        other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
        headers["svix-signature"] = sign(body, secret=other, msg_id=msg_id, timestamp=now)
    elif kind == "huge":
        headers["svix-signature"] = good + " v1," + "A" * 20_000
    elif kind == "junk_header":
        headers["x-" + str(len(junk))] = junk
        headers["svix-signature"] = "v1," + base64.b64encode(junk.encode("latin-1")).decode()
    elif kind == "unsigned":
        headers = {"content-type": junk or "application/json"}
    return body, headers, valid


KINDS = [
    "valid",
    "webhook_twins",
    "junk_then_valid",
    "drop",
    "replace",
    "flip",
    "old",
    "future",
    "tampered_body",
    "other_secret",
    "huge",
    "junk_header",
    "unsigned",
]


def test_fuzzed_deliveries_are_never_accepted_unsigned_and_never_5xx(
    running: Runner, figures: dict[str, Any]
) -> None:
    loop = asyncio.new_event_loop()
    context = running(plugins=())
    r = loop.run_until_complete(context.__aenter__())
    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    problems: list[str] = []

    def run(coro: Any) -> Any:
        return loop.run_until_complete(coro)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(kind=st.sampled_from(KINDS), body=bodies(), junk=HEADER_TEXT)
    def case(kind: str, body: bytes, junk: str) -> None:
        body, headers, valid = mutate(kind, body, junk, int(time.time()))
        status, answer = run(r.post(body, headers=headers))
        seen[kind] += 1
        statuses[status] += 1
        where = f"{kind}: {status} {answer} body={body[:60]!r}"
        if status >= 500:
            problems.append("5xx " + where)
        if not valid:
            assert not 200 <= status < 300, "accepted without a valid signature: " + where
        else:
            assert status in (200, 202), where
            stored = run(r.event(headers.get("svix-id") or headers["webhook-id"]))
            assert stored is not None, "acknowledged but not recorded: " + where

    check: Callable[[], None] = case
    try:
        check()
    finally:
        run(context.__aexit__(None, None, None))
        loop.close()
        figures["fuzz"] = {
            "cases": sum(seen.values()),
            "by_mutation": dict(seen),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors": len(problems),
        }
    assert not problems, problems[:5]
