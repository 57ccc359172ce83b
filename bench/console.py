"""`python -m bench console`: the console's deliveries list over 100,000 stored deliveries.

Stores `--console-deliveries` deliveries (default 100,000: a day of a busy instance) in
`webhook_events` with the indexes the service creates, then renders pages of 50 through the app
(Quart's test client: the query, the template, the security headers; no HTTP server or network)
and reports the median and 90th percentile of each: the first page, a page half-way down (the
`after` cursor of the 50,000th delivery), and each filter. The target is under 200 ms a page
(issue 34). MongoDB: BENCH_MONGODB_URL, else an in-memory mongoeco store (`--store memory`, the
default here: filling the SQLite store with 100,000 deliveries takes most of an hour).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pymongo import MongoClient

from clerk_sync import Settings, create_app
from clerk_sync.auth.cursor import cursor_key
from clerk_sync.console.deliveries import Filters, cursor_after, list_page
from clerk_sync.storage.indexes import ORDER, query_indexes
from clerk_sync.testing import TEST_SECRET

TYPES = (
    "user.created",
    "user.updated",
    "session.created",
    "session.ended",
    "organizationMembership.created",
    "organization.updated",
)
TARGET_MS = 200.0
SAMPLES = 15
LOCAL = {"client": ("127.0.0.1", 40000)}


def delivery(n: int, now: datetime) -> dict[str, Any]:
    """The n-th delivery, one a second back from `now`: mostly processed, some failed."""
    kind = TYPES[n % len(TYPES)]
    user, org = f"user_2bench{n % 20_000:08d}", f"org_2bench{n % 500:05d}"
    data: dict[str, Any] = {"id": user if kind.startswith("user") else f"obj_{n:08d}"}
    if kind.startswith("session"):
        data["user_id"] = user
    if kind.startswith("organization"):
        data |= {"organization_id": org, "user_id": user}
    status = "failed" if n % 97 == 0 else ("ignored" if kind == "session.ended" else "processed")
    at = now - timedelta(seconds=n)
    outcome = {"status": "failed" if status == "failed" else "ok", "at": at, "error": None}
    if status == "failed":
        outcome["error"] = "RuntimeError: the CRM answered 503"
    return {
        "_id": f"msg_bench{n:010d}",
        "status": status,
        "type": kind,
        "received_at": at,
        "last_attempt_at": at,
        "attempts": 1,
        "lease_until": None,
        "lease_token": "",
        "handlers": {} if status == "ignored" else {"users:upsert_user": outcome},
        "payload": {
            "type": kind,
            "object": "event",
            "data": {**data, "object": kind.split(".")[0]},
        },
    }


def fill(url: str, database: str, count: int, progress: Callable[[str], None]) -> float:
    """Store `count` deliveries with the service's indexes; seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    with MongoClient(url, tz_aware=True) as client:
        events = client[database].webhook_events
        events.create_indexes(query_indexes())
        for start in range(0, count, 1000):
            events.insert_many([delivery(n, now) for n in range(start, min(count, start + 1000))])
            if start % 20_000 == 0:
                progress(f"stored {start:,} of {count:,} deliveries")
        assert events.estimated_document_count() == count
    return time.perf_counter() - started


def middle_cursor(url: str, database: str, count: int, key: bytes) -> str:
    with MongoClient(url, tz_aware=True) as client:
        events = client[database].webhook_events
        [half] = events.find({}, {"received_at": 1}).sort(list(ORDER)).skip(count // 2).limit(1)
    return cursor_after(key, half)


type Timings = dict[str, tuple[list[float], list[float]]]


async def measure(settings: Settings, pages: dict[str, dict[str, str]]) -> Timings:
    """Milliseconds of each page rendered, and of its query alone (the store's share), SAMPLES
    times each after two warm-up renders."""
    app = create_app(settings, plugins=[])
    key = cursor_key(settings)
    timings: Timings = {}
    async with app.test_app() as running:
        client = running.test_client()
        events = app.extensions["clerk_sync"].store.db.webhook_events
        for name, args in pages.items():
            path = f"/console/deliveries?{urlencode(args)}" if args else "/console/deliveries"
            for _ in range(2):
                await client.get(path, scope_base=LOCAL)
            rendered, queried = [], []
            for _ in range(SAMPLES):
                started = time.perf_counter()
                response = await client.get(path, scope_base=LOCAL)
                body = await response.get_data(as_text=True)
                rendered.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (name, response.status_code)
                listed = body.count('href="/console/deliveries/msg_')
                assert listed >= 1, f"{name}: no delivery listed"
                started = time.perf_counter()
                await list_page(events, Filters.parse(args, key), key)
                queried.append((time.perf_counter() - started) * 1000)
            timings[name] = (rendered, queried)
    return timings


def run(url: str, count: int, progress: Callable[[str], None]) -> str:
    """Fill, measure, and the markdown report."""
    database = f"bench_console_{int(time.time())}"
    settings = Settings(
        _env_file=None,
        mongodb_url=url,
        mongodb_db=database,
        clerk_sync_dev=True,
        clerk_sync_cursor_secret=secrets.token_hex(16),
        clerk_webhook_signing_secret=TEST_SECRET,
        log_level="warning",
        log_format="json",
    )
    try:
        filled = fill(url, database, count, progress)
        progress(f"stored {count:,} deliveries in {filled:.0f} s; rendering pages")
        after = middle_cursor(url, database, count, cursor_key(settings))
        pages = {
            "first page": {},
            "half-way down (after)": {"after": after},
            "status=failed": {"status": "failed"},
            "type=session.created": {"type": "session.created"},
            "since/until (one hour)": _window(count),
            "q=object id": {"q": "user_2bench00000042"},
            "q=svix-id": {"q": f"msg_bench{count // 3:010d}"},
        }
        timings = asyncio.run(measure(settings, pages))
    finally:
        client: MongoClient[dict[str, Any]]
        with MongoClient(url) as client:
            client.drop_database(database)
    return report(count, filled, timings)


def _window(count: int) -> dict[str, str]:
    """An hour half-way back through the stored deliveries (one a second)."""
    start = datetime.now(UTC) - timedelta(seconds=count // 2)
    end = start + timedelta(hours=1)
    return {"since": f"{start:%Y-%m-%dT%H:%M:%S}", "until": f"{end:%Y-%m-%dT%H:%M:%S}"}


def report(count: int, filled: float, timings: Timings) -> str:
    lines = [
        f"Console deliveries list over {count:,} stored deliveries (filled in {filled:.0f} s); "
        f"{SAMPLES} renders of each page of 50, target < {TARGET_MS:.0f} ms",
        "",
        "| page | median ms | p90 ms | under target | its query alone, median ms |",
        "|---|---|---|---|---|",
    ]
    for name, (rendered, queried) in timings.items():
        median = statistics.median(rendered)
        p90 = statistics.quantiles(rendered, n=10)[-1]
        under = "yes" if p90 < TARGET_MS else "no"
        query = statistics.median(queried)
        lines.append(f"| {name} | {median:.1f} | {p90:.1f} | {under} | {query:.1f} |")
    return "\n".join(lines) + "\n"


def write(text: str, folder: Path) -> Path:
    path = folder / f"console-{time.strftime('%Y-%m-%d')}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
