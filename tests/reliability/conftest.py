"""Fixtures of the reliability harness: a counting plugin, real server processes, figures."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from clerk_sync.testing import TEST_SECRET
from tests.processes import ServerProcess
from tests.test_plugin_loading import install_fake_distribution

LAST_RUN = Path(__file__).with_name("last-run.json")
COMMAND = "pytest tests/reliability -q -p no:cacheprovider -m reliability"
HANDLER_TIMEOUT = 3.0  # lease = timeout + 5 s = 8 s

#: A plugin counting handler runs in `reliability_counts`, keyed by svix-id: `started` when it
#: begins, `completed` when it returns. `data.reliability.sleep_first` makes its first run sleep;
#: `data.reliability.fail` makes every run raise after counting its start.
COUNTER_SOURCE = """
    import asyncio

    from pymongo import ReturnDocument

    from clerk_sync import Plugin

    plugin = Plugin("counter")


    @plugin.on("user.created", "user.updated")
    async def count(event, ctx):
        counts = ctx.engine.database["reliability_counts"]
        doc = await counts.find_one_and_update(
            {"_id": event.svix_id},
            {"$inc": {"started": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        mode = event.data.get("reliability") or {}
        if mode.get("sleep_first") and doc["started"] == 1:
            await asyncio.sleep(mode["sleep_first"])
        if mode.get("fail"):
            raise RuntimeError("told to fail")
        await counts.update_one({"_id": event.svix_id}, {"$inc": {"completed": 1}})
"""


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, Any]]:
    """Figures of this run, merged into last-run.json when the session ends."""
    found: dict[str, Any] = {}
    started = time.time()
    yield found
    if not found:
        return
    # under pytest-xdist every worker merges its own figures: one at a time, under a lock
    with LAST_RUN.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous: dict[str, Any] = {}
        if LAST_RUN.exists():
            previous = json.loads(LAST_RUN.read_text())
        previous.update(found)
        previous["command"] = COMMAND
        previous["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        previous["session_seconds"] = round(time.time() - started, 1)
        LAST_RUN.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the counting plugin as an installed distribution."""
    root = tmp_path_factory.mktemp("reliability-plugins")
    install_fake_distribution(root, "counter", COUNTER_SOURCE)
    return root


def server_env(plugin_dir: Path, url: str, db: str, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(plugin_dir), os.environ.get("PYTHONPATH")) if p)
    return {
        "PYTHONPATH": path,
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "MONGODB_URL": url,
        "MONGODB_DB": db,
        "CLERK_SYNC_PLUGINS": "users,counter",
        "CLERK_SYNC_REQUIRED_PLUGINS": "users,counter",
        "CLERK_SYNC_HANDLER_TIMEOUT": str(HANDLER_TIMEOUT),
        # the stale-delivery sweeper out of the way: the crash tests check what a redelivery
        # or `events replay --stale` finishes (test_stale_sweeper.py sets its own interval)
        "CLERK_SYNC_STALE_SWEEP_SECONDS": "3600",
        "LOG_LEVEL": "warning",
        **extra,
    }


class Pair:
    """Two `clerk-sync serve` processes sharing one database."""

    def __init__(self, servers: list[ServerProcess], url: str, db: str, env: dict[str, str]):
        self.servers, self.url, self.db_name, self.env = servers, url, db, env
        self.client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
        self.db = self.client[db]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]


@pytest.fixture(scope="session")
def pair(plugin_dir: Path, mongodb_url: str) -> Iterator[Pair]:
    """Two servers on one database of the session's MongoDB, with the counting plugin."""
    with started_pair(plugin_dir, mongodb_url) as result:
        yield result


@contextmanager
def started_pair(plugin_dir: Path, mongodb_url: str, **extra: str) -> Iterator[Pair]:
    """Two servers on a new database of `mongodb_url`, with the counting plugin and `extra`
    settings; dropped and stopped afterwards."""
    db = f"reliability_{uuid.uuid4().hex[:12]}"
    env = server_env(plugin_dir, mongodb_url, db, **extra)
    servers = [ServerProcess(env), ServerProcess(env)]
    try:
        for server in servers:
            server.start()
        result = Pair(servers, mongodb_url, db, env)
        yield result
        result.client.drop_database(db)
        result.client.close()
    finally:
        for server in servers:
            server.stop()
