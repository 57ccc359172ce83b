"""Shared fixtures: settings pointing at the session's MongoDB, and running apps."""

from __future__ import annotations

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
from clerk_sync.testing import TEST_SECRET, signed_headers


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
        self, body: bytes, headers: dict[str, str] | None = None, **sign: Any
    ) -> tuple[int, dict[str, Any]]:
        """POST a delivery, signed with the test secret unless headers are given."""
        headers = headers if headers is not None else signed_headers(body, **sign)
        response = await self.client.post("/webhooks/clerk", data=body, headers=headers)
        return response.status_code, await response.get_json()

    async def event(self, svix_id: str) -> dict[str, Any] | None:
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
