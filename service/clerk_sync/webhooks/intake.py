"""What the webhook endpoint checks before it reads a body, and how it reads one.

A webhook body is buffered whole before its signature can be checked, so everything that can be
refused without it is refused first, before a byte of it is read: a declared size over
CLERK_SYNC_MAX_BODY_BYTES (413), Svix headers missing or malformed (400), no signing secret (503),
a timestamp outside the 5-minute window (401), and a body that would take the bodies being read
at once past CLERK_SYNC_BODY_BUFFER_BYTES (503 with `Retry-After`), each counted at its declared
Content-Length (CLERK_SYNC_MAX_BODY_BYTES without one), so a burst of small real deliveries
passes while 1 MB fakes are held to a few at a time. A body then has CLERK_SYNC_BODY_TIMEOUT
seconds in all to arrive (408), however slowly its bytes trickle in. Plain ASGI: any server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from clerk_sync.errors import BodyTimeout, Busy, InvalidSignature, NotConfigured, PayloadTooLarge
from clerk_sync.webhooks.verify import TOLERANCE_SECONDS, parse_headers

if TYPE_CHECKING:
    from clerk_sync.webhooks.pipeline import Receiver

type Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class Intake:
    """Admission and reading of webhook bodies for one app (one process, one event loop)."""

    def __init__(self, receiver: Receiver, limit: int) -> None:
        settings = receiver.settings
        self.receiver, self.limit = receiver, limit
        self.deadline = settings.clerk_sync_body_timeout
        self.budget = settings.clerk_sync_body_buffer_bytes
        #: the declared sizes of the bodies being read right now, summed
        self.reading = 0

    def admit(self, headers: Mapping[str, str]) -> int:
        """The size this body takes of the budget; raise the DeliveryError that refuses the
        request before its body is read instead."""
        declared = headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else self.limit
        if size > self.limit:
            raise PayloadTooLarge("body exceeds CLERK_SYNC_MAX_BODY_BYTES")
        parsed = parse_headers(headers)
        if not self.receiver.keys:
            raise NotConfigured("CLERK_WEBHOOK_SIGNING_SECRET is not set")
        if abs(self.receiver.clock() - parsed.timestamp) > TOLERANCE_SECONDS:
            raise InvalidSignature("timestamp outside the 5 minute tolerance")
        if self.reading and self.reading + size > self.budget:  # one is always let through
            raise Busy("too many webhook bodies being read at once, retry later")
        return size

    async def read(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        """Admit, then the whole body within the deadline; a DeliveryError otherwise."""
        size = self.admit(headers)
        self.reading += size  # no await since `admit`: the sum it checked is still true
        try:
            async with asyncio.timeout(self.deadline):
                return await self._body(receive)
        except TimeoutError as error:
            raise BodyTimeout(
                f"body not received within CLERK_SYNC_BODY_TIMEOUT ({self.deadline:g} s)"
            ) from error
        finally:
            self.reading -= size

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge("body exceeds CLERK_SYNC_MAX_BODY_BYTES")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
