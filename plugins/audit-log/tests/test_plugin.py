"""The audit-log plugin: exactly the security-relevant changes, each recorded once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from clerk_sync_audit_log import AuditLogSettings, membership_changed, plugin, user_flags
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from odmantic import AIOEngine

from clerk_sync import Context, Event, Settings
from clerk_sync.observability.logs import make_logger
from clerk_sync.plugins import direct, load_plugins
from clerk_sync.testing import envelope, sample, sample_types

type Entries = list[tuple[str, str, str | None, dict[str, Any]]]


def data_of(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sample(event_type))["data"]
    return data


def story() -> list[bytes]:
    """Every bundled sample, in the order the story happened (envelope timestamps)."""
    bodies = [sample(t) for t in sample_types()]
    return sorted(bodies, key=lambda body: json.loads(body)["timestamp"])


async def entries(db: AsyncIOMotorDatabase[Any], collection: str = "audit_log") -> Entries:
    found = db[collection].find({}, sort=[("occurred_at", 1), ("kind", 1)])
    return [(e["kind"], e["subject_id"], e.get("user_id"), e["details"]) async for e in found]


def user_update(offset_ms: int, **flags: object) -> bytes:
    """The sample user.updated with other flags and an `updated_at` moved by `offset_ms`."""
    data = data_of("user.updated")
    data.update(flags, updated_at=data["updated_at"] + offset_ms)
    return envelope("user.updated", data, timestamp_ms=data["updated_at"] + 50)


async def test_sample_story_records_exactly_its_security_relevant_changes(
    app_with: Callable[..., Any], db: AsyncIOMotorDatabase[Any]
) -> None:
    """Admin membership, Leo's promotion and removal, a revoked session, Maya's deletion."""
    async with app_with([plugin]) as deliver:
        statuses = [(await deliver(body))[0] for body in story()]
    maya, leo = data_of("user.created")["id"], data_of("organizationMembership.updated")
    admin = data_of("organizationMembership.created")
    assert set(statuses) == {200}
    assert await entries(db) == [
        ("membership.created", admin["id"], maya, {"role": "org:admin"}),
        (
            "membership.role_changed",
            leo["id"],
            leo["public_user_data"]["user_id"],
            {"role": "org:admin", "previous_role": None},
        ),
        (
            "session.revoked",
            data_of("session.revoked")["id"],
            maya,
            {"client_id": data_of("session.revoked")["client_id"], "status": "revoked"},
        ),
        (
            "membership.deleted",
            leo["id"],
            leo["public_user_data"]["user_id"],
            {"role": "org:admin"},
        ),
        ("user.deleted", maya, maya, {"external_id": "acct_10442"}),
    ]


async def test_entries_carry_time_request_and_organization(
    app_with: Callable[..., Any], db: AsyncIOMotorDatabase[Any]
) -> None:
    """An entry says when, from where (Clerk's request attributes) and in which organization."""
    async with app_with([plugin]) as deliver:
        status, answer = await deliver(sample("organizationMembership.created"))
    entry = await db.audit_log.find_one({"kind": "membership.created"})
    assert status == 200
    assert entry is not None
    assert entry["_id"] == f"{answer['svix_id']}:membership.created"
    assert entry["organization_id"] == data_of("organization.created")["id"]
    assert entry["request"]["client_ip"] == "203.0.113.24"
    assert (
        entry["occurred_at"].timestamp()
        == json.loads(sample("organizationMembership.created"))["timestamp"] / 1000
    )
    assert entry["recorded_at"] >= entry["occurred_at"]


async def test_bans_and_locks_are_recorded_when_they_change(
    app_with: Callable[..., Any], db: AsyncIOMotorDatabase[Any]
) -> None:
    """Each flip of `banned` or `locked` is one entry; updates that keep them add nothing."""
    maya = data_of("user.created")["id"]
    updates = [
        user_update(1000, banned=True),
        user_update(2000, banned=True, first_name="M."),
        user_update(3000, banned=True, locked=True, lockout_expires_in_seconds=1800),
        user_update(4000, banned=False, locked=True),
        user_update(5000, banned=False, locked=False),
    ]
    async with app_with([plugin]) as deliver:
        await deliver(sample("user.created"))
        for body in updates:
            await deliver(body)
    assert await entries(db) == [
        ("user.banned", maya, maya, {"banned": True}),
        ("user.locked", maya, maya, {"locked": True, "lockout_expires_in_seconds": 1800}),
        ("user.unbanned", maya, maya, {"banned": False}),
        ("user.unlocked", maya, maya, {"locked": False}),
    ]


async def test_an_older_update_arriving_late_is_compared_with_what_came_before_it(
    app_with: Callable[..., Any], db: AsyncIOMotorDatabase[Any]
) -> None:
    """An unchanged older version delivered after a newer one records nothing."""
    async with app_with([plugin]) as deliver:
        await deliver(user_update(2000, banned=True))
        await deliver(user_update(1000, banned=False))
    assert [kind for kind, *_ in await entries(db)] == ["user.banned"]


async def test_a_handler_run_twice_appends_once(
    mongodb_url: str, mongodb_db: str, db: AsyncIOMotorDatabase[Any]
) -> None:
    """Running the same handler on the same delivery again (a redelivery) adds no entry."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url, tz_aware=True)
    ctx: Context[AuditLogSettings] = Context(
        engine=AIOEngine(client=client, database=mongodb_db),
        log=make_logger("warning", "json"),
        settings=AuditLogSettings(),
        app_settings=Settings(_env_file=None),
        plugin="audit-log",
    )
    banned = json.loads(user_update(1000, banned=True))
    membership = json.loads(sample("organizationMembership.updated"))
    try:
        for _ in range(2):
            await user_flags(Event.from_envelope(banned, "msg_same_user"), ctx)
            await membership_changed(Event.from_envelope(membership, "msg_same_membership"), ctx)
    finally:
        client.close()
    assert [kind for kind, *_ in await entries(db)] == ["user.banned", "membership.role_changed"]


async def test_a_role_change_is_compared_with_the_recorded_role(
    app_with: Callable[..., Any], db: AsyncIOMotorDatabase[Any]
) -> None:
    """An update keeping the role adds nothing; a new role records the old one too."""
    created = data_of("organizationMembership.updated") | {"role": "org:member"}
    same = created | {"updated_at": created["updated_at"] + 1000, "public_metadata": {"x": 1}}
    promoted = created | {"updated_at": created["updated_at"] + 2000, "role": "org:admin"}
    async with app_with([plugin]) as deliver:
        await deliver(envelope("organizationMembership.created", created))
        await deliver(envelope("organizationMembership.updated", same))
        await deliver(envelope("organizationMembership.updated", promoted))
    assert [(kind, details) for kind, _, _, details in await entries(db)] == [
        ("membership.created", {"role": "org:member"}),
        ("membership.role_changed", {"role": "org:admin", "previous_role": "org:member"}),
    ]


async def test_events_and_collection_come_from_plugin_settings(
    app_with: Callable[..., Any], db: AsyncIOMotorDatabase[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLERK_SYNC_PLUGIN_AUDIT_LOG_EVENTS narrows what is audited; _COLLECTION moves the trail."""
    monkeypatch.setenv("CLERK_SYNC_PLUGIN_AUDIT_LOG_EVENTS", "session.revoked, user.deleted")
    monkeypatch.setenv("CLERK_SYNC_PLUGIN_AUDIT_LOG_COLLECTION", "security_trail")
    async with app_with([plugin]) as deliver:
        for body in story():
            await deliver(body)
    indexes = await db.security_trail.index_information()
    assert [kind for kind, *_ in await entries(db, "security_trail")] == [
        "session.revoked",
        "user.deleted",
    ]
    assert await db.audit_log.count_documents({}) == 0
    assert "subject_kind_changed_at" in indexes


def test_unknown_audited_event_is_a_load_error_naming_the_variable(
    settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in EVENTS stops the plugin from loading with the variable in the message."""
    monkeypatch.setenv("CLERK_SYNC_PLUGIN_AUDIT_LOG_EVENTS", "user.banned")
    [record] = load_plugins(direct([plugin]), settings())
    assert record.status == "failed"
    assert "CLERK_SYNC_PLUGIN_AUDIT_LOG_EVENTS" in (record.error or "")
    assert "cannot audit user.banned" in (record.error or "")
