"""Shared fixtures: settings pointing at the session's MongoDB, and running apps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from quart import Quart
from quart.typing import TestClientProtocol

from clerk_sync import Plugin, Settings, create_app
from clerk_sync.runtime import Runtime
from clerk_sync.testing import TEST_SECRET, signed_headers
from tests.scheduling import (  # noqa: F401 (hooks)
    pytest_collection_modifyitems,
    pytest_xdist_make_scheduler,
)


@pytest.fixture
def make_settings(mongodb_url: str, mongodb_db: str) -> Callable[..., Settings]:
    """Settings for the test's own database; keyword arguments override fields."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "clerk_webhook_signing_secret": TEST_SECRET,
            "mongodb_url": mongodb_url,
            "mongodb_db": mongodb_db,
            "log_format": "json",
            "clerk_sync_plugins": None,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@dataclass
class Running:
    """A started app with its test client and a direct handle on its database."""

    app: Quart
    client: TestClientProtocol
    db: AsyncIOMotorDatabase[dict[str, Any]]

    async def post(
        self,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        settle: bool = True,
        **sign: Any,
    ) -> tuple[int, dict[str, Any]]:
        """POST a delivery, signed with the test secret unless headers are given; then, unless
        `settle=False`, write the queued outcomes as the next group commit would."""
        headers = headers if headers is not None else signed_headers(body, **sign)
        response = await self.client.post("/webhooks/clerk", data=body, headers=headers)
        if settle:
            await self.settle()
        return response.status_code, await response.get_json()

    async def settle(self) -> None:
        """Write the outcomes queued for group commit now (the flusher would within its
        interval), so that what a test reads is what MongoDB holds once they are written."""
        runtime: Runtime = self.app.extensions["clerk_sync"]
        if runtime.writer is not None:
            assert await runtime.writer.flush()

    async def hold_outcomes(self) -> None:
        """Stop the background group commit: queued outcomes wait for `settle` (or shut-down),
        so a test sees them queued whatever the machine's speed."""
        runtime: Runtime = self.app.extensions["clerk_sync"]
        assert runtime.flusher is not None
        runtime.flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runtime.flusher

    async def event(self, svix_id: str) -> dict[str, Any] | None:
        await self.settle()
        return await self.db.webhook_events.find_one({"_id": svix_id})


type Runner = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def running(make_settings: Callable[..., Settings]) -> Runner:
    """`async with running(plugins=[...], **settings) as r:` starts an app and stops it after."""

    @asynccontextmanager
    async def run(
        plugins: Iterable[Plugin] | None = (), settings: Settings | None = None, **overrides: Any
    ) -> AsyncIterator[Running]:
        settings = settings or make_settings(**overrides)
        app = create_app(settings, plugins=plugins)
        assert settings.mongodb_url is not None
        mongo: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
            settings.mongodb_url.get_secret_value(), tz_aware=True
        )
        try:
            async with app.test_app() as test_app:
                yield Running(app, test_app.test_client(), mongo[settings.mongodb_db])
        finally:
            mongo.close()

    return run


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """Run with the process's local time zone 10 hours off UTC (times must still be stored UTC)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Honolulu"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
