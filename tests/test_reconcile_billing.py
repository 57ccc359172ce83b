"""`clerk-sync reconcile` of Clerk Billing (plans, subscription items, each payer's subscription)
against the Backend API stand-in of tests/clerk_api.py and a real MongoDB."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from clerk_sync.auth.entitlements import Subject, entitlements_of
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import upsert_if_newer
from clerk_sync.reconcile import (
    MARKER,
    Options,
    Report,
    ensure_indexes,
    reconcile,
    reconcile_plugin,
    resources,
)
from clerk_sync.testing import envelope, sample
from tests.clerk_api import (
    FEATURES,
    ITEMS,
    SpecClerk,
    backend_item,
    clerk_billing,
    data_of,
    database,
    subscription_active_state,
    with_item,
)
from tests.conftest import Runner
from tests.test_reconcile import FIXED_NOW, Sleeps, make_client, served

BILLING = ("plans", "subscription_items", "subscriptions")
COLLECTIONS = ("billing_subscriptions", "billing_subscription_items", "billing_plans")
MAYA = "user_3AvkQGK8zGLvRC091k2sjGGUeLN"

type Db = Any


@pytest.fixture
def clerk() -> Iterator[SpecClerk]:
    with served(SpecClerk()) as fake:
        yield fake


@pytest.fixture
async def other_db(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Db]:
    """A database beside the app's (`running` writes `mongodb_db`), dropped afterwards."""
    async for found in database(mongodb_url, f"{mongodb_db}_b"):
        yield found


async def run(db: Db, clerk: SpecClerk, sleeps: Sleeps | None = None, **options: Any) -> Report:
    client = make_client(clerk, sleeps)
    options.setdefault("resources", BILLING)
    try:
        return await reconcile(db, client, Options(page_size=2, **options), now=lambda: FIXED_NOW)
    finally:
        await client.aclose()


async def stored(db: Db, collection: str) -> list[dict[str, Any]]:
    found = db[collection].find({}, {"_id": 0, MARKER: 0}).sort("clerk_id", 1)
    return [doc async for doc in found]


def item_active_state(clerk: SpecClerk) -> None:
    """Clerk as `subscriptionItem.active` left it: that item, in its payer's subscription."""
    item = data_of("subscriptionItem.active")
    clerk_billing(clerk, with_item(data_of("subscription.active"), item), FEATURES)
    clerk.objects["subscription_items"] = [backend_item(item, None)]


@pytest.mark.parametrize(
    ("event_type", "state", "compared"),
    [
        (
            "subscription.active",
            subscription_active_state,
            ("billing_subscriptions", "billing_subscription_items"),
        ),
        ("subscriptionItem.active", item_active_state, ("billing_subscription_items",)),
    ],
)
async def test_billing_documents_are_equal_by_webhook_and_by_reconcile(
    running: Runner,
    clerk: SpecClerk,
    other_db: Db,
    event_type: str,
    state: Callable[[SpecClerk], None],
    compared: tuple[str, ...],
) -> None:
    """A signed delivery through the app stores a subscription (with its embedded item) or an
    item; reconcile stores the same objects from the stand-in's listings into another database:
    the documents are equal field by field, but for the subscription's `latest_payment_id`,
    which the Backend API's subscription does not carry."""
    from clerk_sync_billing import plugin as billing

    async with running(plugins=[billing]) as r:
        assert (await r.post(sample(event_type)))[0] == 200
        by_webhook = {c: await stored(r.db, c) for c in compared}
    state(clerk)
    report = await run(other_db, clerk)
    assert report.ok, report.as_dict()
    by_reconcile = {c: await stored(other_db, c) for c in compared}
    if "billing_subscriptions" in compared:
        (webhook_subscription,) = by_webhook["billing_subscriptions"]
        (reconciled_subscription,) = by_reconcile["billing_subscriptions"]
        assert webhook_subscription.pop("latest_payment_id") == "cpa_3Bt0kJsaj4UAZXAtLkvMVh7XJk5"
        assert reconciled_subscription.pop("latest_payment_id") is None
    assert by_reconcile == by_webhook
    (item,) = by_reconcile["billing_subscription_items"]
    assert item["subscription_id"] == "csub_3BWPl4U1juTrJylWmraWDRmpupt"  # from the payer's
    assert (item["user_id"], item["organization_id"]) == (MAYA, None)


async def test_plans_are_kept_with_their_features_and_reach_the_entitlements(
    clerk: SpecClerk, other_db: Db
) -> None:
    """`billing_plans` holds the fields DESIGN.md names, and a reconciled subject has the
    features of its plan (what `require_feature` answers from)."""
    subscription_active_state(clerk)
    report = await run(other_db, clerk)
    assert report.ok, report.as_dict()
    assert await stored(other_db, "billing_plans") == [
        {
            "clerk_id": "cplan_39cetQEPMkpqyNDST4gyAvQm9ny",
            "slug": "pro",
            "name": "Pro",
            "for_payer_type": "user",
            "is_default": False,
            "amount": 2400,
            "currency": "EUR",
            "features": FEATURES,
            "updated_at": None,  # Clerk's plan has no update time
            "deleted": False,
        }
    ]
    now = timestamp_from_clerk(data_of("subscription.active")["updated_at"])
    assert now is not None
    found = await entitlements_of(other_db, Subject(user_id=MAYA), now=now, grace=timedelta(0))
    assert (found.plans, found.features) == (["pro"], FEATURES)
    counts = {r.resource: r.counts for r in report.resources}
    assert counts["plans"]["created"] == 1
    assert counts["subscription_items"]["created"] == 1
    # the subscription, and its embedded item given its subscription's id
    assert counts["subscriptions"]["created"] == 1
    assert counts["subscriptions"]["updated"] == 1


async def test_reconcile_keeps_a_newer_webhook_version_and_what_only_webhooks_know(
    running: Runner, clerk: SpecClerk
) -> None:
    """The item stored from `subscription.active` is newer than the stand-in's listing: it is
    kept. The stand-in's subscription is newer than the stored one: it is applied, without
    emptying the `latest_payment_id` only the webhook carried."""
    from clerk_sync_billing import plugin as billing

    older_item = data_of("subscriptionItem.active")  # seats 5, an earlier updated_at
    newer = data_of("subscription.active")
    newer |= {"status": "past_due", "past_due_at": newer["updated_at"] + 1000}
    newer["updated_at"] += 1000
    async with running(plugins=[billing]) as r:
        assert (await r.post(sample("subscription.active")))[0] == 200
        clerk_billing(clerk, with_item(newer, older_item), FEATURES)
        report = await run(r.db, clerk)
        (subscription,) = await stored(r.db, "billing_subscriptions")
        (item,) = await stored(r.db, "billing_subscription_items")
    assert report.ok, report.as_dict()
    assert item["seats"] == 8
    assert item["updated_at"] == timestamp_from_clerk(data_of("subscription.active")["updated_at"])
    assert item["subscription_id"] == newer["id"]
    assert subscription["status"] == "past_due"
    assert subscription["past_due_at"] == timestamp_from_clerk(newer["past_due_at"])
    assert subscription["latest_payment_id"] == "cpa_3Bt0kJsaj4UAZXAtLkvMVh7XJk5"
    items = next(r for r in report.resources if r.resource == "subscription_items")
    assert items.counts["unchanged"] == 1


async def test_billing_collections_hold_no_payer_data_card_digits_or_gateway_ids(
    clerk: SpecClerk, other_db: Db
) -> None:
    """The stand-in's items carry the payer's names, e-mail and image and a card (digits,
    gateway ids); none of it is in any billing document after reconcile."""
    subscription_active_state(clerk)
    assert (await run(other_db, clerk)).ok
    text = json.dumps([await stored(other_db, c) for c in COLLECTIONS], default=str, sort_keys=True)
    payer = data_of("subscription.active")["payer"]
    assert "cpayer_" in text  # the documents are there and were searched
    for secret in (
        payer["email"],
        payer["first_name"],
        payer["last_name"],
        payer["image_url"],
        "4242",
        "visa",
        "stripe",
        "pm_1SecretGatewayId0000000",
        "acct_1SecretAccount0000",
        "cpm_3BWPl5Z3lGDdRcM4rlp8XVQYoN6",
    ):
        assert secret not in text, secret


async def test_billing_objects_missing_from_clerk_are_rechecked_never_tombstoned(
    clerk: SpecClerk, other_db: Db
) -> None:
    """An active item neither listed nor in its payer's subscription, and a plan Clerk no
    longer lists, stay as they are; an ended item is not even re-checked."""
    subscription_active_state(clerk)
    await ensure_indexes(other_db)
    specs = resources()
    kept = data_of("subscriptionItem.active") | {"id": "csub_item_kept", "status": "active"}
    ended = data_of("subscriptionItem.ended") | {"id": "csub_item_ended", "status": "ended"}
    spec = specs["subscription_items"]
    assert spec.fill is not None
    for item in (kept, ended):  # as their webhooks stored them, payer included
        at = timestamp_from_clerk(item["updated_at"])
        fields = {**spec.project(item), **spec.fill(item)}
        await upsert_if_newer(other_db.billing_subscription_items, item["id"], fields, at)
    await upsert_if_newer(other_db.billing_plans, "cplan_archived", {"slug": "old"}, None)
    report = await run(other_db, clerk)
    assert report.ok, report.as_dict()
    live = {
        d["clerk_id"]: d["deleted"] for d in await stored(other_db, "billing_subscription_items")
    }
    assert live == {
        "csub_item_3BWPl2lweQhtnnaeLCDXOyc1eyr": False,
        "csub_item_kept": False,
        "csub_item_ended": False,
    }
    assert {d["clerk_id"]: d["deleted"] for d in await stored(other_db, "billing_plans")} == {
        "cplan_39cetQEPMkpqyNDST4gyAvQm9ny": False,
        "cplan_archived": False,
    }
    assert {r.resource: r.tombstoning for r in report.resources} == dict.fromkeys(BILLING, "kept")
    asked = [p for p, _ in clerk.requests if p == f"/v1/users/{MAYA}/billing/subscription"]
    assert len(asked) == 2  # the subscriptions listing, and the re-check of csub_item_kept only


def numbered_item(n: int) -> dict[str, Any]:
    """The `subscriptionItem.active` item of an n-th payer, created n seconds later."""
    item = copy.deepcopy(data_of("subscriptionItem.active"))
    payer = item["payer"] | {"id": f"cpayer_{n}", "user_id": f"user_{n}", "email": f"p{n}@ex.test"}
    return item | {"id": f"csub_item_{n}", "payer": payer, "created_at": item["created_at"] + n}


async def test_an_interrupted_item_listing_resumes_and_rate_limits_are_waited_out(
    clerk: SpecClerk, other_db: Db
) -> None:
    """A 429 on the items listing waits its Retry-After; a listing that fails for good after
    one page keeps its checkpoint, and the next run resumes there; every payer seen in the
    items then gets its subscription."""
    items = [numbered_item(n) for n in range(3)]
    clerk.objects["subscription_items"] = [backend_item(i, None) for i in items]
    for n, item in enumerate(items):
        subscription = data_of("subscription.active") | {"id": f"csub_{n}", "payer": item["payer"]}
        subscription["payer_id"] = item["payer"]["id"]
        clerk_billing(clerk, with_item(subscription, item), FEATURES)
    clerk.objects["subscription_items"] = [backend_item(i, None) for i in items]
    clerk.rate_limited[(ITEMS, 0)] = 1
    clerk.fail_after[ITEMS] = 1
    sleeps = Sleeps()
    first = await run(other_db, clerk, sleeps, resources=("subscription_items",))
    assert not first.ok
    assert 0.1 in sleeps.calls  # Retry-After honoured
    state = await other_db.reconcile_state.find_one({"_id": "subscription_items"})
    assert state is not None
    assert (state["offset"], state["status"]) == (2, "listing")

    clerk.fail_after.clear()
    clerk.requests.clear()
    second = await run(other_db, clerk)
    assert second.ok, second.as_dict()
    assert second.resources[1].resumed_from == 2
    assert clerk.list_requests(ITEMS) == [2]  # page 1 was not fetched again
    subscriptions = await stored(other_db, "billing_subscriptions")
    assert [s["clerk_id"] for s in subscriptions] == ["csub_0", "csub_1", "csub_2"]
    by_item = {
        d["clerk_id"]: d["subscription_id"]
        for d in await stored(other_db, "billing_subscription_items")
    }
    assert by_item == {f"csub_item_{n}": f"csub_{n}" for n in range(3)}


async def test_a_subscription_webhook_after_reconcile_is_applied_over_it(
    running: Runner, clerk: SpecClerk
) -> None:
    """Reconcile's documents follow the same ordering guard: a later `subscription.updated`
    replaces them, and its `latest_payment_id` fills the field the Backend API lacked."""
    from clerk_sync_billing import plugin as billing

    subscription_active_state(clerk)
    later = data_of("subscription.active") | {"status": "canceled"}
    later["updated_at"] += 5000
    async with running(plugins=[billing]) as r:
        assert (await run(r.db, clerk)).ok
        (before,) = await stored(r.db, "billing_subscriptions")
        assert (await r.post(envelope("subscription.updated", later)))[0] == 200
        (after,) = await stored(r.db, "billing_subscriptions")
    assert before["latest_payment_id"] is None
    assert (after["status"], after["latest_payment_id"]) == ("canceled", later["latest_payment_id"])


async def test_free_plan_items_are_listed_and_a_dry_run_writes_nothing(
    clerk: SpecClerk, other_db: Db
) -> None:
    """Items of a free plan are asked for (`include_free=true`, which Clerk's listing does not
    default to); a dry run names each object it would create and writes nothing."""
    subscription_active_state(clerk)
    free = numbered_item(7)
    free["plan"] = free["plan"] | {"id": "cplan_free", "slug": "free", "name": "Free", "amount": 0}
    free["plan_id"] = "cplan_free"
    clerk.objects["subscription_items"].append(backend_item(free, None))
    dry = await run(other_db, clerk, dry_run=True)
    assert dry.ok, dry.as_dict()
    assert {(d.resource, d.clerk_id, d.kind) for d in dry.differences} == {
        ("plans", "cplan_39cetQEPMkpqyNDST4gyAvQm9ny", "missing"),
        ("subscription_items", "csub_item_3BWPl2lweQhtnnaeLCDXOyc1eyr", "missing"),
        ("subscription_items", "csub_item_7", "missing"),
    }  # no payer is stored yet, so no subscription is asked for
    assert sorted(await other_db.list_collection_names()) == []
    assert (await run(other_db, clerk)).ok
    items = await stored(other_db, "billing_subscription_items")
    assert {i["clerk_id"]: i["plan"]["slug"] for i in items} == {
        "csub_item_3BWPl2lweQhtnnaeLCDXOyc1eyr": "pro",
        "csub_item_7": "free",
    }


async def test_one_plugins_reconcilers_run_alone(clerk: SpecClerk, other_db: Db) -> None:
    """`reconcile_plugin` (what `plugins catch-up NAME --reconcile` runs) reconciles the
    resources the billing plugin declares, and nothing else."""
    from clerk_sync_billing import plugin as billing

    subscription_active_state(clerk)
    client = make_client(clerk)
    try:
        report = await reconcile_plugin(other_db, client, billing, now=lambda: FIXED_NOW)
    finally:
        await client.aclose()
    assert report.ok, report.as_dict()
    assert [r.resource for r in report.resources] == list(BILLING)
    assert {p for p, _ in clerk.requests} == {
        "/v1/billing/plans",
        ITEMS,
        f"/v1/users/{MAYA}/billing/subscription",
    }
