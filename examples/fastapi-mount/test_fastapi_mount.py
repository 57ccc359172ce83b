"""The FastAPI host's lifespan starts and stops the mounted clerk-sync app; deliveries sync."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fastapi_mount import create_api
from pymongo import MongoClient
from pymongo.errors import InvalidOperation
from quart import Quart
from starlette.routing import Mount

from clerk_sync import Settings
from clerk_sync.app import runtime_of
from clerk_sync.testing import TEST_SECRET, sample, signed_headers


def mounted(api: Any) -> Quart:
    [mount] = [route for route in api.routes if isinstance(route, Mount)]
    assert isinstance(mount.app, Quart)
    return mount.app


def test_the_mount_syncs_deliveries_between_the_hosts_start_up_and_shut_down(
    mongodb_url: str, mongodb_db: str
) -> None:
    settings = Settings(
        _env_file=None,
        mongodb_url=mongodb_url,
        mongodb_db=mongodb_db,
        clerk_webhook_signing_secret=TEST_SECRET,
        clerk_sync_plugins="users",
        log_format="json",
    )
    api = create_api(settings)
    runtime = runtime_of(mounted(api))
    assert runtime.store is None  # nothing connects before the host starts
    body = sample("user.created")
    with TestClient(api) as client:  # runs the host's lifespan: start-up, then shut-down
        store = runtime.store
        ready = client.get("/clerk/readyz")
        delivered = client.post("/clerk/webhooks/clerk", content=body, headers=signed_headers(body))
        home = client.get("/")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert (delivered.status_code, delivered.json()["status"]) == (200, "processed")
    assert home.json() == {"app": "northwind"}
    mongo: MongoClient[dict[str, Any]]
    with MongoClient(mongodb_url) as mongo:
        user = mongo[mongodb_db].users.find_one({"clerk_id": "user_3AvkQGK8zGLvRC091k2sjGGUeLN"})
    assert user is not None
    assert store is not None
    with pytest.raises(InvalidOperation, match="after close"):  # closed at the host's shut-down
        store.client.delegate.admin.command("ping")
