"""Roles, permissions, organization domains (plugin `organizations`), app invitations and the
waitlist (plugin `users`) behind POST /webhooks/clerk: every bundled sample of those types is
`processed` and its stored document checked field by field; deletions leave tombstones, also
when they arrive first; an organization's deletion tombstones its domains."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from clerk_sync_organizations import plugin as organizations
from clerk_sync_users import plugin as users

from clerk_sync.testing import sample
from tests.conftest import Runner, Running

PLUGINS = (users, organizations)
ROLE = "role_3A1GYqlQ00Tmqr1EYDXjI7n2WD1"
READ_INVOICES = "perm_3A1FxCO2MsiVnpNuVGKJLVDH027"
MANAGE_INVOICES = "perm_3A1G4ig7FaqqxB93vu35K5aZZRw"
DOMAIN = "orgdmn_3BNzesHXicywQSyYpO6IPj3CTBb"
ORG = "org_3B72uttDvPCKIgNoDUyqs4uTIyC"
ENTRY = "wle_3AnH3GC1YJFWV5o9d334uhSjLHR"
INVITATION = "inv_3Aq6AxceGLHeIpEhqaJhC5Vav6V"
REVOKED = "inv_3AvjaPgkixNxJJdeakCkOZGpfhy"


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def envelope_time(event_type: str) -> datetime:
    return at(json.loads(sample(event_type))["timestamp"])


async def deliver(r: Running, *event_types: str) -> None:
    for event_type in event_types:
        status, answer = await r.post(sample(event_type))
        assert (status, answer["status"]) == (200, "processed"), event_type


async def stored(r: Running, collection: str, clerk_id: str) -> dict[str, Any]:
    doc = await r.db[collection].find_one({"clerk_id": clerk_id}, {"_id": 0})
    assert doc is not None, f"{collection} has no {clerk_id}"
    return doc


ROLE_CREATED = {
    "clerk_id": ROLE,
    "key": "org:billing_manager",
    "name": "Billing manager",
    "description": "Can read and manage invoices, can see members",
    "is_creator_eligible": False,
    "permissions": ["org:invoices:read", "org:invoices:manage", "org:sys_memberships:read"],
    "created_at": at(1771752713000),
    "updated_at": at(1771752713000),
    "deleted": False,
}
ROLE_UPDATED = ROLE_CREATED | {
    "description": "Can read and manage invoices",
    "permissions": ["org:invoices:read", "org:invoices:manage"],
    "updated_at": at(1771839233000),
}
ROLE_TOMBSTONE = {
    "clerk_id": ROLE,
    "key": None,
    "name": None,
    "description": None,
    "is_creator_eligible": None,
    "permissions": [],
    "created_at": None,
    "updated_at": None,
    "deleted": True,
    "deleted_at": envelope_time("role.deleted"),
}
PERMISSION_CREATED = {
    "clerk_id": MANAGE_INVOICES,
    "key": "org:invoices:manage",
    "name": "Manage invoices",
    "description": "Create, edit and void invoices",
    "type": "custom",
    "created_at": at(1771752473000),
    "updated_at": at(1771752473000),
    "deleted": False,
}
PERMISSION_UPDATED = PERMISSION_CREATED | {
    "description": "Create, edit, send and void invoices",
    "updated_at": at(1771839173000),
}
PERMISSION_TOMBSTONE = {
    "clerk_id": READ_INVOICES,
    "key": None,
    "name": None,
    "description": None,
    "type": None,
    "created_at": None,
    "updated_at": None,
    "deleted": True,
    "deleted_at": envelope_time("permission.deleted"),
}
VERIFIED = {
    "status": "verified",
    "strategy": "email_code",
    "attempts": 1,
    "expire_at": at(1774345013000),
}
DOMAIN_CREATED = {
    "clerk_id": DOMAIN,
    "organization_id": ORG,
    "name": "northwind.example",
    "enrollment_mode": "automatic_suggestion",
    "verification": VERIFIED,
    "affiliation_email_address": "maya.okafor@northwind.example",
    "total_pending_invitations": 0,
    "total_pending_suggestions": 0,
    "created_at": at(1774344413000),
    "updated_at": at(1774344533000),
    "deleted": False,
}
DOMAIN_UPDATED = DOMAIN_CREATED | {
    "enrollment_mode": "automatic_invitation",
    "total_pending_invitations": 2,
    "updated_at": at(1774431013000),
}


def domain_tombstone(deleted_at: datetime) -> dict[str, Any]:
    cleared = dict.fromkeys(set(DOMAIN_CREATED) - {"clerk_id", "organization_id", "deleted"})
    return DOMAIN_CREATED | cleared | {"deleted": True, "deleted_at": deleted_at}


INVITATION_CREATED = {
    "clerk_id": INVITATION,
    "email_address": "early.bird@fastmail.example",
    "status": "pending",
    "public_metadata": {"source": "waitlist"},
    "expires_at": at(1773307613000 + 30 * 86_400_000),
    "created_at": at(1773307613000),
    "updated_at": at(1773307613000),
    "deleted": False,
}
INVITATION_ACCEPTED = INVITATION_CREATED | {"status": "accepted", "updated_at": at(1773394013000)}
INVITATION_REVOKED = {
    "clerk_id": REVOKED,
    "email_address": "auditor@kpmg-example.example",
    "status": "revoked",
    "public_metadata": {"role": "auditor"},
    "expires_at": at(1773480000000 + 30 * 86_400_000),
    "created_at": at(1773480000000),
    "updated_at": at(1773566400000),
    "deleted": False,
}
ENTRY_CREATED = {
    "clerk_id": ENTRY,
    "email_address": "early.bird@fastmail.example",
    "status": "pending",
    "is_locked": False,
    "invitation_id": None,
    "created_at": at(1773221213000),
    "updated_at": at(1773221213000),
    "deleted": False,
}
ENTRY_UPDATED = ENTRY_CREATED | {
    "status": "invited",
    "invitation_id": INVITATION,
    "updated_at": at(1773307613000),
}

#: each sample, the document it leaves when delivered after the ones before it in this list
EXPECTED: list[tuple[str, str, str, dict[str, Any]]] = [
    ("role.created", "roles", ROLE, ROLE_CREATED),
    ("role.updated", "roles", ROLE, ROLE_UPDATED),
    ("role.deleted", "roles", ROLE, ROLE_TOMBSTONE),
    ("permission.created", "permissions", MANAGE_INVOICES, PERMISSION_CREATED),
    ("permission.updated", "permissions", MANAGE_INVOICES, PERMISSION_UPDATED),
    ("permission.deleted", "permissions", READ_INVOICES, PERMISSION_TOMBSTONE),
    ("organizationDomain.created", "organization_domains", DOMAIN, DOMAIN_CREATED),
    ("organizationDomain.updated", "organization_domains", DOMAIN, DOMAIN_UPDATED),
    (
        "organizationDomain.deleted",
        "organization_domains",
        DOMAIN,
        domain_tombstone(envelope_time("organizationDomain.deleted")),
    ),
    ("invitation.created", "invitations", INVITATION, INVITATION_CREATED),
    ("invitation.accepted", "invitations", INVITATION, INVITATION_ACCEPTED),
    ("invitation.revoked", "invitations", REVOKED, INVITATION_REVOKED),
    ("waitlistEntry.created", "waitlist_entries", ENTRY, ENTRY_CREATED),
    ("waitlistEntry.updated", "waitlist_entries", ENTRY, ENTRY_UPDATED),
]


async def test_each_sample_is_processed_into_its_document_field_by_field(
    running: Runner,
) -> None:
    async with running(plugins=PLUGINS) as r:
        for event_type, collection, clerk_id, expected in EXPECTED:
            await deliver(r, event_type)
            assert await stored(r, collection, clerk_id) == expected, event_type


async def test_an_invitation_never_stores_its_sign_up_ticket(running: Runner) -> None:
    """The invitation `url` carries a sign-up ticket: not in `invitations`, not in the
    waitlist entry that embeds the invitation."""
    async with running(plugins=PLUGINS) as r:
        await deliver(r, "invitation.created", "waitlistEntry.updated")
        docs = [
            *await r.db.invitations.find().to_list(None),
            *await r.db.waitlist_entries.find().to_list(None),
        ]
    assert docs
    assert "__clerk_ticket" not in json.dumps(docs, default=str)


@pytest.mark.parametrize(
    ("events", "collection", "clerk_id", "expected"),
    [
        (("role.created", "role.updated", "role.deleted"), "roles", ROLE, ROLE_TOMBSTONE),
        (
            ("organizationDomain.created", "organizationDomain.updated"),
            "organization_domains",
            DOMAIN,
            DOMAIN_UPDATED,
        ),
        (
            ("organizationDomain.created", "organizationDomain.deleted"),
            "organization_domains",
            DOMAIN,
            domain_tombstone(envelope_time("organizationDomain.deleted")),
        ),
        (("invitation.created", "invitation.accepted"), "invitations", INVITATION, None),
        (("waitlistEntry.created", "waitlistEntry.updated"), "waitlist_entries", ENTRY, None),
    ],
)
async def test_every_order_gives_the_same_document(
    running: Runner,
    events: tuple[str, ...],
    collection: str,
    clerk_id: str,
    expected: dict[str, Any] | None,
) -> None:
    """Newest `updated_at` wins; a deletion arriving before its create still leaves the
    tombstone, and the late create changes nothing of it."""
    results = []
    async with running(plugins=PLUGINS) as r:
        for order in itertools.permutations(events):
            await r.db[collection].delete_many({})
            await deliver(r, *order)
            results.append(await stored(r, collection, clerk_id))
    assert all(result == results[0] for result in results), results
    if expected is not None:
        assert results[0] == expected


async def test_permission_deleted_before_it_was_seen_leaves_a_tombstone(running: Runner) -> None:
    async with running(plugins=PLUGINS) as r:
        await deliver(r, "permission.deleted")
        assert await stored(r, "permissions", READ_INVOICES) == PERMISSION_TOMBSTONE


@pytest.mark.parametrize("organization_first", [False, True])
async def test_deleting_an_organization_tombstones_its_domains(
    running: Runner, organization_first: bool
) -> None:
    """Whichever arrives first: the domain ends deleted with the organization's date."""
    deleted_at = envelope_time("organization.deleted")
    order = ["organizationDomain.created", "organizationDomain.updated"]
    order = (
        ["organization.deleted", *order] if organization_first else [*order, "organization.deleted"]
    )
    async with running(plugins=PLUGINS) as r:
        await deliver(r, *order)
        domain = await stored(r, "organization_domains", DOMAIN)
    assert domain == domain_tombstone(deleted_at)
