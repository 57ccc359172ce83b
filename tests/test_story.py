"""The sample story of ../shared/clerk/events: delivered in order, shuffled, and twice.

Maya signs up, adds a phone, creates "Northwind Labs" (renamed later); Leo is promoted, then
removed; Priya accepts an invitation, a contractor's is revoked; sessions end, are removed,
revoked or pending; a billing role is defined and later deleted, the organization claims a
domain, an early bird leaves the waitlist through an app invitation, Maya's Pro trial turns into
a paid subscription whose renewal fails; finally the organization and Maya are deleted.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from typing import Any

from clerk_sync_billing import plugin as billing
from clerk_sync_organizations import plugin as organizations
from clerk_sync_sessions import plugin as sessions
from clerk_sync_users import plugin as users
from motor.motor_asyncio import AsyncIOMotorDatabase

from clerk_sync import Context, Event
from clerk_sync.app import runtime_of
from clerk_sync.events import EVENT_TYPES
from clerk_sync.runtime import Runtime
from clerk_sync.testing import new_svix_id, sample, sample_types, signed_headers
from tests.conftest import Runner, Running

PLUGINS = (users, sessions, organizations, billing)
COLLECTIONS = (
    "users",
    "sessions",
    "organizations",
    "organization_memberships",
    "organization_invitations",
    "roles",
    "permissions",
    "organization_domains",
    "invitations",
    "waitlist_entries",
    "billing_subscriptions",
    "billing_subscription_items",
    "billing_payment_attempts",
)

MAYA = "user_3AvkQGK8zGLvRC091k2sjGGUeLN"
LEO = "user_393wMQhhD2LzcIe6ik8CDpx788R"
PRIYA = "user_3BF300Cn7ynMylGKego29dQJyNF"
ORG = "org_3B72uttDvPCKIgNoDUyqs4uTIyC"
MAYA_MEMBERSHIP = "orgmem_3B72uxTJCDJVKbGXgRCXnAPssSe"
LEO_MEMBERSHIP = "orgmem_3BADvmSdOCddB84uuNUYGDuubCA"
PRIYA_INVITATION = "orginv_3BChAAuuAHtj2y9lyT4dITIMl7Z"
CONTRACTOR_INVITATION = "orginv_3BD33QIizNJ7KE0gK8NZ4nuLymM"


def envelope_timestamp(event_type: str) -> int:
    timestamp: int = json.loads(sample(event_type))["timestamp"]
    return timestamp


#: Every bundled sample, in the order the story happened (envelope `timestamp`).
STORY = sorted(sample_types(), key=envelope_timestamp)
#: The samples the built-in plugins project: all but e-mail and SMS (recorded as `ignored`).
PROJECTED = [t for t in STORY if t not in {"email.created", "sms.created"}]


def at(ms: int) -> datetime:
    """A Clerk millisecond timestamp as the UTC datetime MongoDB gives back."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def deliver(r: Running, event_type: str, svix_id: str | None = None) -> int:
    """Deliver one bundled sample through the receiver, freshly signed; return the status."""
    body = sample(event_type)
    answer = await runtime_of(r.app).receiver.receive(body, signed_headers(body, msg_id=svix_id))
    await r.settle()
    return answer.status


async def dispatch(runtime: Runtime, envelope: dict[str, Any]) -> None:
    """Run every subscribed handler on one event, concurrently, as the receiver does."""
    event = Event.from_envelope(envelope, new_svix_id())
    assert runtime.store is not None
    engine = runtime.store.engine
    await asyncio.gather(
        *(
            sub.func(event, Context(engine, runtime.log, None, runtime.settings, sub.plugin))
            for sub in runtime.router.handlers_for(event.type)
        )
    )


async def clear(db: AsyncIOMotorDatabase[dict[str, Any]], *more: str) -> None:
    for name in (*COLLECTIONS, *more):
        await db[name].delete_many({})


async def snapshot(db: AsyncIOMotorDatabase[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every projected document, without `_id`, sorted by `clerk_id`."""
    state = {}
    for name in COLLECTIONS:
        docs = await db[name].find({}, {"_id": 0}).sort("clerk_id", 1).to_list(None)
        state[name] = docs
    return state


async def by_id(db: AsyncIOMotorDatabase[dict[str, Any]], name: str) -> dict[str, Any]:
    docs = await db[name].find({}, {"_id": 0}).to_list(None)
    return {doc["clerk_id"]: doc for doc in docs}


def test_every_known_event_type_has_a_sample_in_the_story() -> None:
    """Each of Clerk's event types (its spec's 45 and the catalog's four more) is delivered
    by the story, so the in-order test below sees each `processed` (e-mail, SMS: `ignored`)."""
    assert set(STORY) == EVENT_TYPES
    assert set(STORY) - set(PROJECTED) == {"email.created", "sms.created"}


def test_story_order_follows_the_envelope_timestamps() -> None:
    """The story order is derived from the samples, and reads as the README tells it."""
    assert STORY.index("user.created") < STORY.index("organization.created")
    assert STORY.index("organizationMembership.deleted") < STORY.index("organization.deleted")
    assert STORY[-2:] == ["organization.deleted", "user.deleted"]
    assert len(PROJECTED) == 47


async def test_story_in_order_ends_with_the_state_the_story_implies(running: Runner) -> None:
    """Field by field: Maya scrubbed, the org and its memberships deleted, invitations and
    sessions in their last status."""
    async with running(plugins=PLUGINS) as r:
        statuses = {t: await deliver(r, t) for t in STORY}
        state = {name: await by_id(r.db, name) for name in COLLECTIONS}
        events = await r.db.webhook_events.find({}, {"status": 1, "type": 1}).to_list(None)
    assert set(statuses.values()) == {200}
    assert {e["type"]: e["status"] for e in events} == {
        t: "processed" if t in PROJECTED else "ignored" for t in STORY
    }
    assert state["users"] == {
        MAYA: {
            "clerk_id": MAYA,
            "external_id": "acct_10442",
            "email": None,
            "email_addresses": [],
            "phone": None,
            "username": None,
            "first_name": None,
            "last_name": None,
            "image_url": None,
            "public_metadata": {},
            "private_metadata": {},
            "unsafe_metadata": {},
            "banned": False,
            "locked": False,
            "last_sign_in_at": None,
            "created_at": None,
            "updated_at": None,
            "deleted": True,
            "deleted_at": at(1778664413000),
        }
    }
    assert state["organizations"] == {
        ORG: {
            "clerk_id": ORG,
            "name": None,
            "slug": None,
            "image_url": None,
            "members_count": None,
            "max_allowed_memberships": None,
            "public_metadata": {},
            "private_metadata": {},
            "created_by": None,
            "created_at": None,
            "updated_at": None,
            "deleted": True,
            "deleted_at": at(1778578013000),
        }
    }
    tombstone: dict[str, Any] = {
        "organization_id": ORG,
        "role": None,
        "permissions": [],
        "public_metadata": {},
        "created_at": None,
        "updated_at": None,
        "deleted": True,
    }
    assert state["organization_memberships"] == {
        # deleted with the organization, a day before Maya herself
        MAYA_MEMBERSHIP: tombstone
        | {"clerk_id": MAYA_MEMBERSHIP, "user_id": MAYA, "deleted_at": at(1778578013000)},
        # Leo was removed before the organization went
        LEO_MEMBERSHIP: tombstone
        | {"clerk_id": LEO_MEMBERSHIP, "user_id": LEO, "deleted_at": at(1775554013075)},
    }
    assert state["organization_invitations"] == {
        PRIYA_INVITATION: {
            "clerk_id": PRIYA_INVITATION,
            "organization_id": ORG,
            "email_address": "priya.raman@northwind.example",
            "role": "org:member",
            "status": "accepted",
            "user_id": PRIYA,
            "expires_at": at(1776590813000),
            "created_at": at(1773998813000),
            "updated_at": at(1774070813000),
            "deleted": False,
        },
        CONTRACTOR_INVITATION: {
            "clerk_id": CONTRACTOR_INVITATION,
            "organization_id": ORG,
            "email_address": "contractor@gmail.example",
            "role": "org:member",
            "status": "revoked",
            "user_id": None,
            "expires_at": at(1776601613000),
            "created_at": at(1774009613000),
            "updated_at": at(1774016813000),
            "deleted": False,
        },
    }
    assert state["sessions"] == {
        "sess_3AvkQE2PoM4dQhT27e7B06ZTIhf": {
            "clerk_id": "sess_3AvkQE2PoM4dQhT27e7B06ZTIhf",
            "user_id": MAYA,
            "client_id": "client_3AvkIlBTMtN8Ko38KRdbJswHsEJ",
            "status": "ended",
            "last_active_at": at(1773667433000),
            "expire_at": at(1774085213300),
            "abandon_at": at(1776072413300),
            "created_at": at(1773480413300),
            "updated_at": at(1773667613000),
            "actor": None,
            "deleted": False,
        },
        "sess_3AyZXzn439KImAUia1tUWUfkrVh": {
            "clerk_id": "sess_3AyZXzn439KImAUia1tUWUfkrVh",
            "user_id": MAYA,
            "client_id": "client_3AyZUD9ioKBFNbPlfVDsiEITciN",
            "status": "removed",
            "last_active_at": at(1773911753000),
            "expire_at": at(1774171613000),
            "abandon_at": at(1776158813000),
            "created_at": at(1773566813000),
            "updated_at": at(1773912413000),
            "actor": None,
            "deleted": False,
        },
        "sess_3BChA9O8E83KxP6TrEvDgJ0crfC": {
            "clerk_id": "sess_3BChA9O8E83KxP6TrEvDgJ0crfC",
            "user_id": MAYA,
            "client_id": "client_3BCh7h0bduYRZYX4luyJkruTeVV",
            "status": "revoked",
            "last_active_at": at(1774176293000),
            "expire_at": at(1774603613000),
            "abandon_at": at(1776590813000),
            "created_at": at(1773998813000),
            "updated_at": at(1774178813000),
            "actor": None,
            "deleted": False,
        },
        "sess_3BLAXCj9muRpImmYyJNfeNwJ0Cy": {
            "clerk_id": "sess_3BLAXCj9muRpImmYyJNfeNwJ0Cy",
            "user_id": LEO,
            "client_id": "client_3BLAWAS8UtznshwoAuYit4SpR7A",
            "status": "pending",
            "last_active_at": at(1774258013000),
            "expire_at": at(1774862813000),
            "abandon_at": at(1776850013000),
            "created_at": at(1774258013000),
            "updated_at": at(1774258013000),
            "actor": None,
            "deleted": False,
        },
    }


async def test_story_documents_load_as_the_plugins_models(running: Runner) -> None:
    """Live documents and tombstones alike read back through ODMantic (as the read API does)."""
    models = [m for plugin in PLUGINS for m in plugin.models]
    async with running(plugins=PLUGINS) as r:
        for event_type in STORY:
            await deliver(r, event_type)
        store = runtime_of(r.app).store
        assert store is not None
        engine = store.engine
        loaded = {m.__collection__: len(await engine.find(m)) for m in models}
    assert loaded == {
        "users": 1,
        "sessions": 4,
        "organizations": 1,
        "organization_memberships": 2,
        "organization_invitations": 2,
        "roles": 1,
        "permissions": 2,
        "organization_domains": 1,
        "invitations": 2,
        "waitlist_entries": 1,
        "billing_subscriptions": 1,
        "billing_subscription_items": 1,
        "billing_payment_attempts": 1,
        "billing_plans": 0,  # reconcile alone fills it
    }


async def test_story_before_the_deletions_holds_the_live_objects(running: Runner) -> None:
    """Up to Leo's removal, Maya, the renamed org and both memberships are stored in full."""
    async with running(plugins=PLUGINS) as r:
        for event_type in STORY[: STORY.index("organizationMembership.deleted")]:
            assert await deliver(r, event_type) == 200
        state = {name: await by_id(r.db, name) for name in COLLECTIONS}
    maya = state["users"][MAYA]
    assert maya["email"] == "maya.okafor@northwind.example"
    assert maya["phone"] == "+14155550143"
    assert maya["username"] == "maya_ok"
    assert maya["private_metadata"] == {
        "stripe_customer_id": "cus_RqT8vYb2mN4kLx",
        "risk_score": 0.07,
    }
    assert maya["updated_at"] == at(1773758333000)
    assert maya["deleted"] is False
    org = state["organizations"][ORG]
    assert (org["name"], org["members_count"], org["max_allowed_memberships"]) == (
        "Northwind Labs GmbH",
        3,
        25,
    )
    assert org["public_metadata"] == {"tier": "team", "region": "eu-central"}
    assert org["created_by"] == MAYA
    memberships = state["organization_memberships"]
    assert {k: (m["user_id"], m["role"], m["deleted"]) for k, m in memberships.items()} == {
        MAYA_MEMBERSHIP: (MAYA, "org:admin", False),
        LEO_MEMBERSHIP: (LEO, "org:admin", False),
    }
    assert "org:sys_memberships:manage" in memberships[LEO_MEMBERSHIP]["permissions"]


async def test_any_order_with_duplicates_ends_in_the_in_order_state(running: Runner) -> None:
    """72 seeded shuffles of the projected samples, some sent twice, all end exactly as
    in-order delivery does; handlers are run as the receiver runs them, minus the bookkeeping."""
    rng = random.Random(20260312)
    envelopes = {t: json.loads(sample(t)) for t in PROJECTED}
    async with running(plugins=PLUGINS) as r:
        runtime = runtime_of(r.app)

        async def run(order: list[str]) -> dict[str, list[dict[str, Any]]]:
            await clear(r.db)
            for event_type in order:
                await dispatch(runtime, envelopes[event_type])
            return await snapshot(r.db)

        expected = await run(PROJECTED)
        for _ in range(72):  # 47 types now: as many deliveries as 200 rounds of the former 17
            order = PROJECTED + rng.choices(PROJECTED, k=rng.randint(1, 6))
            rng.shuffle(order)
            assert await run(order) == expected, order
    assert expected["organization_memberships"][0]["deleted"] is True


async def test_shuffled_deliveries_through_the_receiver_end_in_the_in_order_state(
    running: Runner,
) -> None:
    """Shuffled deliveries with redeliveries (same svix-id, answered as duplicates) and
    re-sends (new svix-id, handled again) mixed in end as in-order delivery does."""
    rng = random.Random(7)
    async with running(plugins=PLUGINS) as r:

        async def run(order: list[tuple[str, str]]) -> dict[str, list[dict[str, Any]]]:
            await clear(r.db, "webhook_events")
            for event_type, svix_id in order:
                assert await deliver(r, event_type, svix_id) == 200, event_type
            return await snapshot(r.db)

        expected = await run([(t, new_svix_id()) for t in PROJECTED])
        for _ in range(8):  # 47 types now (17 before, with 15 rounds)
            order = [(t, new_svix_id()) for t in PROJECTED]
            for event_type, svix_id in rng.sample(order, 4):
                order.append((event_type, svix_id if rng.random() < 0.5 else new_svix_id()))
            rng.shuffle(order)
            assert await run(order) == expected, [t for t, _ in order]


async def test_replaying_the_whole_story_changes_no_document(running: Runner) -> None:
    """A second delivery of every sample under new svix-ids leaves every document as it was."""
    async with running(plugins=PLUGINS) as r:
        for event_type in STORY:
            await deliver(r, event_type)
        before = await r.db.list_collection_names()
        first = await snapshot(r.db)
        for event_type in STORY:
            assert await deliver(r, event_type) == 200
        second = await snapshot(r.db)
        processed = await r.db.webhook_events.count_documents({"status": "processed"})
    assert "users" in before
    assert processed == 2 * len(PROJECTED), "the replay ran the handlers, not the duplicate path"
    assert second == first
