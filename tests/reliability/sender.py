"""A sender that behaves like Svix: signs every attempt afresh, retries non-2xx, remembers acks.

Each delivery keeps its `svix-id` across attempts; every attempt is re-signed with a fresh
timestamp. Non-2xx answers and transport errors are retried on a compressed Svix schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

from clerk_sync.testing import TEST_SECRET, signed_headers

#: Svix retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; compressed to seconds here.
SCHEDULE: tuple[float, ...] = (0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)
PATH = "/webhooks/clerk"


@dataclass(frozen=True, slots=True)
class Delivery:
    svix_id: str
    body: bytes


@dataclass(slots=True)
class Attempt:
    svix_id: str
    url: str
    status: int | None  # None: transport error
    at: float
    body: str = ""
    retry_after: str | None = None


@dataclass
class Sender:
    """Deliver to one or several base URLs (round robin per attempt) with Svix-style retries."""

    urls: Sequence[str]
    secret: str = TEST_SECRET
    concurrency: int = 32
    schedule: Sequence[float] = SCHEDULE
    timeout: float = 30.0
    acked: set[str] = field(default_factory=set)
    gave_up: set[str] = field(default_factory=set)
    attempts: list[Attempt] = field(default_factory=list)
    statuses: Counter[int | None] = field(default_factory=Counter)
    _turn: int = 0

    def server_errors(self) -> list[Attempt]:
        """Attempts answered with a 5xx status."""
        return [a for a in self.attempts if a.status is not None and a.status >= 500]

    def _next_url(self) -> str:
        url = self.urls[self._turn % len(self.urls)]
        self._turn += 1
        return url

    async def send_all(self, deliveries: Iterable[Delivery]) -> None:
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        gate = asyncio.Semaphore(self.concurrency)
        async with (
            httpx.AsyncClient(timeout=self.timeout, limits=limits) as client,
            asyncio.TaskGroup() as group,
        ):
            for delivery in deliveries:
                group.create_task(self._deliver(client, gate, delivery))

    async def stream(self, deliveries: AsyncIterator[Delivery]) -> None:
        """Deliver each delivery as it comes, at most `concurrency` at once (retries included),
        on a fresh connection per attempt."""
        limits = httpx.Limits(max_connections=self.concurrency * 2, max_keepalive_connections=0)
        gate = asyncio.Semaphore(self.concurrency)
        slots = asyncio.Semaphore(self.concurrency)
        async with (
            httpx.AsyncClient(timeout=self.timeout, limits=limits) as client,
            asyncio.TaskGroup() as group,
        ):
            async for delivery in deliveries:
                await slots.acquire()
                task = group.create_task(self._deliver(client, gate, delivery))
                task.add_done_callback(lambda _: slots.release())

    async def send_once(self, client: httpx.AsyncClient, delivery: Delivery, url: str) -> Attempt:
        """One attempt, signed now with the delivery's fixed svix-id."""
        headers = signed_headers(delivery.body, secret=self.secret, msg_id=delivery.svix_id)
        try:
            response = await client.post(url + PATH, content=delivery.body, headers=headers)
            attempt = Attempt(
                delivery.svix_id,
                url,
                response.status_code,
                time.time(),
                response.text[:200],
                response.headers.get("Retry-After"),
            )
        except httpx.HTTPError as error:
            attempt = Attempt(delivery.svix_id, url, None, time.time(), type(error).__name__)
        self.attempts.append(attempt)
        self.statuses[attempt.status] += 1
        if attempt.status is not None and 200 <= attempt.status < 300:
            self.acked.add(delivery.svix_id)
        return attempt

    async def _deliver(
        self, client: httpx.AsyncClient, gate: asyncio.Semaphore, delivery: Delivery
    ) -> None:
        for delay in self.schedule:
            await asyncio.sleep(delay)
            async with gate:
                attempt = await self.send_once(client, delivery, self._next_url())
            if attempt.status is not None and 200 <= attempt.status < 300:
                return
        self.gave_up.add(delivery.svix_id)
