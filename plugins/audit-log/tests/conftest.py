"""Fixtures for the audit-log tests: the plugin's source on sys.path, an app, its database.

The plugin is not installed by default (it is not in the Makefile's PLUGINS), so its `src`
folder is put on sys.path when the package cannot be imported otherwise.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

SRC = Path(__file__).resolve().parents[1] / "src"
if importlib.util.find_spec("clerk_sync_audit_log") is None:
    sys.path.insert(0, str(SRC))

from clerk_sync import Plugin, Settings, create_app  # noqa: E402
from clerk_sync.testing import TEST_SECRET, signed_headers  # noqa: E402


@pytest.fixture
def settings(mongodb_url: str, mongodb_db: str) -> Callable[..., Settings]:
    """Settings for the test's own database; keyword arguments override fields."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "clerk_webhook_signing_secret": TEST_SECRET,
            "mongodb_url": mongodb_url,
            "mongodb_db": mongodb_db,
            "clerk_sync_plugins": None,
            "log_format": "json",
        }
        return Settings(_env_file=None, **{**values, **overrides})

    return make


@pytest.fixture
async def db(mongodb_url: str, mongodb_db: str) -> AsyncIterator[AsyncIOMotorDatabase[Any]]:
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url, tz_aware=True)
    yield client[mongodb_db]
    client.close()


class Delivering:
    """A started app: `await deliver(body)` posts a freshly signed delivery."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def __call__(self, body: bytes, **sign: Any) -> tuple[int, dict[str, Any]]:
        headers = signed_headers(body, **sign)
        response = await self.client.post("/webhooks/clerk", data=body, headers=headers)
        return response.status_code, await response.get_json()


@pytest.fixture
def app_with(settings: Callable[..., Settings]) -> Callable[..., Any]:
    """`async with app_with([plugin], **settings) as deliver:` runs an app for the block."""

    @asynccontextmanager
    async def run(plugins: list[Plugin] | None, **overrides: Any) -> AsyncIterator[Delivering]:
        app = create_app(settings(**overrides), plugins=plugins)
        async with app.test_app() as test_app:
            yield Delivering(test_app.test_client())

    return run
