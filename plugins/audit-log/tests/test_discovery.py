"""The audit-log plugin as an installed distribution, switched on and off by the environment."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorDatabase

from clerk_sync import Settings, create_app
from clerk_sync.testing import TEST_SECRET, sample, signed_headers


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `clerk-sync-audit-log` discoverable: real when installed, else a dist-info on sys.path.

    The dist-info carries the same entry point as pyproject.toml and points at the source tree.
    """
    try:
        importlib.metadata.distribution("clerk-sync-audit-log")
    except importlib.metadata.PackageNotFoundError:
        info = tmp_path / "clerk_sync_audit_log-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: clerk-sync-audit-log\nVersion: 0.1.0\n"
        )
        (info / "entry_points.txt").write_text(
            "[clerk_sync.plugins]\naudit-log = clerk_sync_audit_log:plugin\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


@pytest.fixture
def environment(
    installed: None, mongodb_url: str, mongodb_db: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings read from the environment only, as `clerk-sync serve` reads them."""

    def read(**variables: str) -> Settings:
        base = {"MONGODB_URL": mongodb_url, "MONGODB_DB": mongodb_db, "LOG_FORMAT": "json"}
        base["CLERK_WEBHOOK_SIGNING_SECRET"] = TEST_SECRET
        for name in ("CLERK_SYNC_PLUGINS", "CLERK_SYNC_DISABLED_PLUGINS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**base, **variables}.items():
            monkeypatch.setenv(name, value)
        return Settings(_env_file=None)

    return read


async def revoke_session(settings: Settings) -> dict[str, Any]:
    """Start an app with discovered plugins, deliver session.revoked, return /plugins' audit-log."""
    app = create_app(settings)
    body = sample("session.revoked")
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await client.post("/webhooks/clerk", data=body, headers=signed_headers(body))
        listing = await (await client.get("/plugins")).get_json()
    entry: dict[str, Any] = next(p for p in listing["plugins"] if p["name"] == "audit-log")
    return entry


@pytest.mark.parametrize(
    ("variables", "status"),
    [
        ({}, "loaded"),
        ({"CLERK_SYNC_PLUGINS": "audit-log"}, "loaded"),
        ({"CLERK_SYNC_PLUGINS": "users"}, "disabled"),
        ({"CLERK_SYNC_DISABLED_PLUGINS": "audit-log"}, "disabled"),
    ],
)
async def test_allow_and_deny_lists_switch_the_plugin(
    environment: Callable[..., Settings],
    db: AsyncIOMotorDatabase[Any],
    variables: dict[str, str],
    status: str,
) -> None:
    """Installed, it is found by its entry point; CLERK_SYNC_PLUGINS/_DISABLED_PLUGINS rule."""
    listed = await revoke_session(environment(**variables))
    recorded = await db.audit_log.count_documents({"kind": "session.revoked"})
    assert listed["status"] == status
    assert listed["distribution"] == "clerk-sync-audit-log"
    assert recorded == (1 if status == "loaded" else 0)
