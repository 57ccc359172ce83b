"""What the webhook endpoint refuses before it reads a body, and the limits on reading one.

Driven at the ASGI level (the app's `asgi_app`, as any server calls it), with a `receive` that
records whether the body was asked for at all. Over real sockets: tests/reliability/
test_body_attacks.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clerk_sync.testing import envelope, signed_headers
from tests.conftest import Runner

BODY = envelope("user.created", {"id": "user_intake", "updated_at": 1_700_000_000_000})
#: a safety net against a hang, never an assertion on speed
HANG = 20.0


class Request:
    """One ASGI request to the webhook path: what `receive` handed out, what was sent."""

    def __init__(self, headers: dict[str, str], chunks: AsyncIterator[bytes] | None = None):
        self.headers = headers
        self.chunks = chunks
        self.received = 0
        self.asked = asyncio.Event()  # set once `receive` was called
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, app: Any) -> Request:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/webhooks/clerk",
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in self.headers.items()],
        }
        async with asyncio.timeout(HANG):
            await app.asgi_app(scope, self.receive, self.send)
        return self

    async def receive(self) -> dict[str, Any]:
        self.received += 1
        self.asked.set()
        if self.chunks is None:
            return {"type": "http.request", "body": BODY, "more_body": False}
        try:
            chunk = await anext(self.chunks)
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def answer_headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def body(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.sent[1]["body"])
        return found


def with_length(headers: dict[str, str], size: int = len(BODY)) -> dict[str, str]:
    return {**headers, "content-length": str(size)}


async def stall() -> AsyncIterator[bytes]:
    """A body whose first bytes arrive and whose rest never does."""
    yield b'{"type": '
    await asyncio.Event().wait()


async def drip() -> AsyncIterator[bytes]:
    """One byte every 50 ms, forever: no single read waits long, the body never ends."""
    while True:
        await asyncio.sleep(0.05)
        yield b" "


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 400, "missing svix-id, svix-timestamp or svix-signature header"),
        (
            {**signed_headers(BODY), "svix-timestamp": "soon"},
            400,
            "malformed svix-timestamp header",
        ),
        (
            signed_headers(BODY, timestamp=int(time.time()) - 600),
            401,
            "timestamp outside the 5 minute tolerance",
        ),
        ({**signed_headers(BODY), "content-length": "1048577"}, 413, None),
    ],
    ids=["missing", "malformed", "out-of-window", "declared-oversize"],
)
async def test_a_request_refused_by_its_headers_never_has_its_body_read(
    running: Runner, headers: dict[str, str], status: int, error: str | None
) -> None:
    """Missing or malformed Svix headers, an out-of-window timestamp, a declared size over the
    limit: answered from the headers alone, `receive` never called, the connection closed."""
    async with running() as r:
        request = await Request(headers if "content-length" in headers else with_length(headers))(
            r.app
        )
    assert request.received == 0
    assert request.status == status
    assert request.answer_headers["connection"] == "close"
    if error is not None:
        assert request.body == {"error": error}


async def test_without_a_signing_secret_the_body_is_not_read_and_503_says_when_to_retry(
    running: Runner,
) -> None:
    async with running(clerk_webhook_signing_secret="") as r:
        request = await Request(with_length(signed_headers(BODY)))(r.app)
    assert request.received == 0
    assert request.status == 503
    assert request.answer_headers["retry-after"].isdigit()
    assert request.body == {"error": "CLERK_WEBHOOK_SIGNING_SECRET is not set"}


async def test_past_the_budget_of_bodies_read_at_once_a_request_gets_503_with_retry_after(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """With CLERK_SYNC_BODY_BUFFER_BYTES the size of two bodies and two stalled mid-read, a
    third request is refused at once without its body being read; once room is free again, one
    is read."""
    budget = {"clerk_sync_body_buffer_bytes": 2 * len(BODY), "clerk_sync_body_timeout": HANG}
    async with running(**budget) as r:
        stalled = [Request(with_length(signed_headers(BODY)), stall()) for _ in range(2)]
        tasks = [asyncio.create_task(s(r.app)) for s in stalled]
        for s in stalled:
            await s.asked.wait()
        third = await Request(with_length(signed_headers(BODY)))(r.app)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        fourth = await Request(with_length(signed_headers(BODY)))(r.app)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    summaries = [x for x in lines if x.get("event") == "webhook" and x["status"] == 503]
    assert third.received == 0
    assert third.status == 503
    assert third.answer_headers["retry-after"] == "1"
    assert third.body == {"error": "too many webhook bodies being read at once, retry later"}
    assert [x["outcome"] for x in summaries] == ["unavailable"]
    assert fourth.status == 200, fourth.body
    assert fourth.body["status"] == "ignored"


@pytest.mark.parametrize("body", [stall, drip], ids=["stalled", "dripping"])
async def test_a_body_not_whole_within_the_body_timeout_is_408_and_frees_its_room(
    running: Runner, body: Any
) -> None:
    """The deadline is for the whole body, not between reads: a body dripping a byte every
    50 ms is cut off as surely as one that stalls. Its share of the budget is free again."""
    settings = {"clerk_sync_body_timeout": 0.3, "clerk_sync_body_buffer_bytes": 10_000}
    async with running(**settings) as r:
        slow = await Request(with_length(signed_headers(BODY), 10_000), body())(r.app)
        after = await Request(with_length(signed_headers(BODY)))(r.app)
    assert slow.status == 408
    assert slow.body == {"error": "body not received within CLERK_SYNC_BODY_TIMEOUT (0.3 s)"}
    assert slow.answer_headers["connection"] == "close"
    assert after.status == 200, after.body


async def test_a_burst_of_small_deliveries_fits_the_budget_that_holds_off_large_ones(
    running: Runner,
) -> None:
    """Bodies count at their declared size: with a budget of two 1 MiB bodies, 40 small
    deliveries mid-read at once and one body declaring 1 MiB are all admitted, where a second
    body declaring 1 MiB is refused with 503."""
    mib = 1_048_576
    async with running(clerk_sync_body_buffer_bytes=2 * mib, clerk_sync_body_timeout=HANG) as r:
        held = [Request(with_length(signed_headers(BODY)), stall()) for _ in range(40)]
        held.append(Request(with_length(signed_headers(BODY), mib), stall()))
        tasks = [asyncio.create_task(s(r.app)) for s in held]
        for s in held:
            await s.asked.wait()
        refused = await Request(with_length(signed_headers(BODY), mib))(r.app)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert all(s.received for s in held)
    assert refused.received == 0
    assert refused.status == 503
    assert refused.answer_headers["retry-after"] == "1"
