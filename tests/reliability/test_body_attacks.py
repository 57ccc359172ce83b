"""Two attacks on the webhook body before authentication, against a real `clerk-sync serve`.

1. A flood: 300 connections at once, each with plausible fake Svix headers (a current
   timestamp, a junk signature) and 1 MB of body, then stalling. Before the intake checks the
   app read every body: 83 MB -> 399 MB RSS (the chart's limit is 512Mi). Now at most
   CLERK_SYNC_BODY_BUFFER_BYTES (16 MiB: 16 such bodies) are read at once, the others get 503 with
   `Retry-After` from their headers alone. The 150 MB bound on peak RSS does not hold under
   hypercorn, which reads ahead before the app runs (`HYPERCORN` below): a strict xfail there,
   so that it fails as soon as the server that replaces it keeps the bound.
2. A drip: one byte every 0.5 s of a 10,000-byte body. The 30 s timeout between reads never
   fires; the body deadline (CLERK_SYNC_BODY_TIMEOUT, 2 s here, 10 s by default) answers 408.

Each takes about the body timeout plus a server start (about 5 s here); figures go to
last-run.json.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clerk_sync.cli import server as served
from clerk_sync.settings import Settings
from tests.processes import ServerProcess
from tests.reliability.conftest import server_env
from tests.reliability.test_limits import rss_kib

pytestmark = pytest.mark.reliability

CONNECTIONS = 300
BODY_BYTES = 1_000_000  # sent of each body; it declares more, so it never ends by itself
DECLARED = 1_048_576  # CLERK_SYNC_MAX_BODY_BYTES, the default
BODY_TIMEOUT = 2.0
RSS_LIMIT_KIB = 150 * 1024
BUDGET = Settings.model_fields["clerk_sync_body_buffer_bytes"].default
CHUNK = b"a" * 65_536


def head(declared: int) -> bytes:
    return (
        b"POST /webhooks/clerk HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        + f"content-length: {declared}\r\nsvix-id: msg_flood\r\n".encode()
        + f"svix-timestamp: {int(time.time())}\r\nsvix-signature: v1,AAAA\r\n\r\n".encode()
    )


@pytest.fixture(scope="module")
def server(plugin_dir: Path, mongodb_url: str) -> Iterator[ServerProcess]:
    env = server_env(plugin_dir, mongodb_url, "reliability_body_attacks")
    env["CLERK_SYNC_BODY_TIMEOUT"] = str(BODY_TIMEOUT)
    with ServerProcess(env) as started:
        yield started


async def flood_one(port: int) -> tuple[int | None, bool]:
    """Send the head and 1 MB, then wait for the answer: (status, whether it has Retry-After).

    The answer is read while the body is still being sent: a server that refuses from the
    headers answers at once and closes, and the rest of the body is then refused by the socket.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head(DECLARED))
    answered = asyncio.create_task(reader.read(4096))
    try:
        sent = 0
        while sent < BODY_BYTES and not answered.done():
            writer.write(CHUNK[: BODY_BYTES - sent])
            await writer.drain()
            sent += len(CHUNK)
    except ConnectionError:
        pass  # refused while sending: the answer came first
    try:
        answer = await asyncio.wait_for(answered, BODY_TIMEOUT * 10)
    except (ConnectionError, TimeoutError):
        answer = b""
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
    return status, b"\r\nretry-after: " in answer.lower()


async def flood(port: int) -> list[tuple[int | None, bool]]:
    return await asyncio.gather(*(flood_one(port) for _ in range(CONNECTIONS)))


@pytest.fixture(scope="module")
def flooded(server: ServerProcess, figures: dict[str, Any]) -> dict[str, Any]:
    """300 x 1 MB of fake deliveries at once, once for this module: answers and RSS."""
    assert server.process is not None
    before = rss_kib(server.process.pid)
    answers = asyncio.run(flood(server.port))
    after = rss_kib(server.process.pid)
    found = {
        "connections": CONNECTIONS,
        "body_bytes_each": BODY_BYTES,
        "body_buffer_bytes": BUDGET,
        "body_timeout_seconds": BODY_TIMEOUT,
        "answers": dict(Counter(str(status) for status, _ in answers)),
        "answers_503_without_retry_after": sum(1 for s, r in answers if s == 503 and not r),
        "rss_before_kib": before["VmRSS"],
        "peak_rss_kib": after["VmHWM"],
        "server_alive": server.process.poll() is None,
        "http_server": "hypercorn" if HYPERCORN else "other",
    }
    figures["body_flood"] = found
    return found


#: Hypercorn reads up to ~450 KB of each connection's body (its asyncio stream buffer and its
#: app queue of 10 chunks) before the app is even called, so 300 stalled senders cost about
#: 130 MB there whatever the app does (measured: peak 198-210 MB, from 81 MB).
HYPERCORN = getattr(getattr(served, "Config", None), "__module__", "").startswith("hypercorn")


def test_a_flood_of_unauthenticated_bodies_is_refused_from_headers_or_cut_off(
    flooded: dict[str, Any],
) -> None:
    """Every answer is a 503 with Retry-After (past the cap, body unread) or a 408 (admitted,
    then cut off by the body deadline); none is a 2xx; the server survives. A server may
    reset a refused connection whose body it did not read before the client has read the
    503: that counts as no answer ("None"). How many are reset first is timing: granian reset
    18 to 58 of the 300 in one set of runs and 246 in a run beside other tests, so only some
    503 is required here; that the refused bodies were not read is what the RSS test shows."""
    answers = flooded["answers"]
    assert set(answers) <= {"503", "408", "None"}, answers
    assert flooded["answers_503_without_retry_after"] == 0
    assert answers.get("503", 0) >= 1
    assert answers.get("408", 0) >= 1
    assert flooded["server_alive"]


@pytest.mark.xfail(
    HYPERCORN,
    strict=True,
    reason="hypercorn buffers ~450 KB per connection before the ASGI app runs (see HYPERCORN)",
)
def test_a_flood_of_unauthenticated_bodies_stays_under_150_mb_rss(
    flooded: dict[str, Any],
) -> None:
    assert flooded["peak_rss_kib"] < RSS_LIMIT_KIB, f"peak RSS {flooded['peak_rss_kib']} KiB"


async def drip(port: int) -> tuple[int | None, int]:
    """A byte every 0.5 s until the server answers: (status, bytes of body sent by then)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head(10_000))
    sent = 0
    answer = b""
    try:
        while not answer and sent < 10_000:
            writer.write(b" ")
            await writer.drain()
            sent += 1
            try:
                answer = await asyncio.wait_for(reader.read(4096), 0.5)
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
    return status, sent


def test_a_body_dripped_a_byte_at_a_time_is_cut_off_by_the_body_deadline(
    server: ServerProcess, figures: dict[str, Any]
) -> None:
    """No read waits 30 s, yet the body never ends: 408 while it is still arriving."""
    started = time.monotonic()
    status, sent = asyncio.run(drip(server.port))
    figures["body_drip"] = {
        "body_timeout_seconds": BODY_TIMEOUT,
        "byte_every_seconds": 0.5,
        "status": status,
        "bytes_sent_before_answer": sent,
        "answered_after_seconds": round(time.monotonic() - started, 1),
    }
    assert status == 408
    assert sent < 10_000
