"""The `billing` plugin behind POST /webhooks/clerk, against the tests' MongoDB server.

Every billing sample is `processed` and its stored documents are checked field by field; the
ten events of one subscription item, and the two of one payment attempt, end in the same
document in any order; a subscription's embedded items land in `billing_subscription_items`;
no payer name, e-mail address, image, gateway id or card detail is stored.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime
from typing import Any

from clerk_sync_billing import plugin as billing

from clerk_sync.testing import envelope, sample
from tests.conftest import Runner, Running

MAYA = "user_3AvkQGK8zGLvRC091k2sjGGUeLN"
PAYER = "cpayer_3BWPl86tnY0yVvFf3xWRjqqWHqq"
PLAN = "cplan_39cetQEPMkpqyNDST4gyAvQm9ny"
SUBSCRIPTION = "csub_3BWPl4U1juTrJylWmraWDRmpupt"
ITEM = "csub_item_3BWPl2lweQhtnnaeLCDXOyc1eyr"
ATTEMPT = "pa_3Bt0kJsaj4UAZXAtLkvMVh7XJk5"
T0 = 1774602000000
HOUR, DAY, MINUTE = 3_600_000, 86_400_000, 60_000
TRIAL_END = T0 + 14 * DAY

ITEM_EVENTS = [
    "subscriptionItem.created",
    "subscriptionItem.upcoming",
    "subscriptionItem.incomplete",
    "subscriptionItem.abandoned",
    "subscriptionItem.active",
    "subscriptionItem.freeTrialEnding",
    "subscriptionItem.updated",
    "subscriptionItem.pastDue",
    "subscriptionItem.canceled",
    "subscriptionItem.ended",
]
SUBSCRIPTION_EVENTS = [
    "subscription.created",
    "subscription.updated",
    "subscription.pastDue",
    "subscription.active",
]
ATTEMPT_EVENTS = ["paymentAttempt.created", "paymentAttempt.updated"]


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def deliver(r: Running, *event_types: str) -> None:
    for event_type in event_types:
        status, answer = await r.post(sample(event_type))
        assert (status, answer["status"]) == (200, "processed"), event_type


async def stored(r: Running, collection: str, clerk_id: str) -> dict[str, Any]:
    doc = await r.db[collection].find_one({"clerk_id": clerk_id}, {"_id": 0})
    assert doc is not None, f"{collection} has no {clerk_id}"
    return doc


PRO = {"slug": "pro", "name": "Pro", "amount": 2400, "currency": "EUR", "is_recurring": True}
ITEM_BASE = {
    "clerk_id": ITEM,
    "subscription_id": SUBSCRIPTION,
    "status": "upcoming",
    "plan_id": PLAN,
    "plan": PRO,
    "interval": "month",
    "is_free_trial": True,
    "seats": 5,
    "period_start": at(T0),
    "period_end": at(TRIAL_END),
    "payer_id": PAYER,
    "user_id": MAYA,
    "organization_id": None,
    "canceled_at": None,
    "ended_at": None,
    "created_at": at(T0),
    "updated_at": at(T0),
    "deleted": False,
}
PAID = {"is_free_trial": False, "seats": 8}
#: the item as each of its ten events leaves it, in the order they happened
ITEM_STATES = {
    "subscriptionItem.created": ITEM_BASE,
    "subscriptionItem.upcoming": ITEM_BASE | {"updated_at": at(T0 + HOUR)},
    "subscriptionItem.incomplete": ITEM_BASE
    | {"status": "incomplete", "updated_at": at(T0 + 2 * HOUR)},
    "subscriptionItem.abandoned": ITEM_BASE
    | {"status": "abandoned", "updated_at": at(T0 + 3 * HOUR)},
    "subscriptionItem.active": ITEM_BASE | {"status": "active", "updated_at": at(T0 + 4 * HOUR)},
    "subscriptionItem.freeTrialEnding": ITEM_BASE
    | {"status": "active", "updated_at": at(T0 + 12 * DAY)},
    "subscriptionItem.updated": ITEM_BASE
    | PAID
    | {"status": "active", "updated_at": at(TRIAL_END)},
    "subscriptionItem.pastDue": ITEM_BASE
    | PAID
    | {"status": "past_due", "updated_at": at(T0 + 15 * DAY)},
    "subscriptionItem.canceled": ITEM_BASE
    | PAID
    | {
        "status": "canceled",
        "canceled_at": at(T0 + 20 * DAY),
        "updated_at": at(T0 + 20 * DAY),
    },
    "subscriptionItem.ended": ITEM_BASE
    | PAID
    | {
        "status": "ended",
        "period_end": None,
        "canceled_at": at(T0 + 20 * DAY),
        "ended_at": at(T0 + 44 * DAY),
        "updated_at": at(T0 + 44 * DAY),
    },
}
SUBSCRIPTION_BASE = {
    "clerk_id": SUBSCRIPTION,
    "status": "active",
    "payer_id": PAYER,
    "user_id": MAYA,
    "organization_id": None,
    "item_ids": [ITEM],
    "latest_payment_id": None,
    "active_at": at(T0 + 4 * HOUR),
    "past_due_at": None,
    "canceled_at": None,
    "ended_at": None,
    "created_at": at(T0),
    "updated_at": at(T0 + 4 * HOUR + MINUTE),
    "deleted": False,
}
SUBSCRIPTION_STATES = {
    "subscription.created": SUBSCRIPTION_BASE,
    "subscription.updated": SUBSCRIPTION_BASE | {"updated_at": at(TRIAL_END + MINUTE)},
    "subscription.pastDue": SUBSCRIPTION_BASE
    | {
        "status": "past_due",
        "past_due_at": at(T0 + 15 * DAY),
        "latest_payment_id": "cpa_3Bt0kJsaj4UAZXAtLkvMVh7XJk5",
        "updated_at": at(T0 + 15 * DAY + MINUTE),
    },
    "subscription.active": SUBSCRIPTION_BASE
    | {
        "latest_payment_id": "cpa_3Bt0kJsaj4UAZXAtLkvMVh7XJk5",
        "updated_at": at(T0 + 16 * DAY),
    },
}


def euros(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


ATTEMPT_PENDING = {
    "clerk_id": ATTEMPT,
    "payment_id": "cpa_3Bt0kJsaj4UAZXAtLkvMVh7XJk5",
    "statement_id": "stmt_3Bt0kJsaj4UAZXAtLkvMVh7XJk5",
    "status": "pending",
    "charge_type": "recurring",
    "totals": {"subtotal": euros(2400), "tax_total": euros(456), "grand_total": euros(2856)},
    "paid_at": None,
    "failed_at": None,
    "failed_reason": None,
    "billing_date": at(TRIAL_END),
    "payer_id": PAYER,
    "user_id": MAYA,
    "organization_id": None,
    "subscription_item_ids": [ITEM],
    "payment_method": "card",
    "created_at": at(T0 + 14 * DAY),
    "updated_at": at(T0 + 14 * DAY),
    "deleted": False,
}
ATTEMPT_FAILED = ATTEMPT_PENDING | {
    "status": "failed",
    "failed_at": at(T0 + 15 * DAY - MINUTE),
    "failed_reason": {"code": "card_declined", "decline_code": "insufficient_funds"},
    "updated_at": at(T0 + 15 * DAY - MINUTE),
}


async def test_each_item_event_is_processed_into_the_item_field_by_field(running: Runner) -> None:
    async with running(plugins=[billing]) as r:
        for event_type, expected in ITEM_STATES.items():
            await deliver(r, event_type)
            assert await stored(r, "billing_subscription_items", ITEM) == expected, event_type


async def test_each_subscription_event_keeps_the_subscription_and_its_embedded_item(
    running: Runner,
) -> None:
    """The embedded item has `subscription_id: null` and no payer: it takes the
    subscription's; its own `updated_at` decides like any other item event."""
    embedded = {
        "subscription.created": ITEM_STATES["subscriptionItem.active"]
        | {"updated_at": at(T0 + 4 * HOUR + MINUTE)},
        "subscription.updated": ITEM_STATES["subscriptionItem.updated"]
        | {"updated_at": at(TRIAL_END + MINUTE)},
        "subscription.pastDue": ITEM_STATES["subscriptionItem.pastDue"]
        | {"updated_at": at(T0 + 15 * DAY + MINUTE)},
        "subscription.active": ITEM_STATES["subscriptionItem.updated"]
        | {"updated_at": at(T0 + 16 * DAY)},
    }
    async with running(plugins=[billing]) as r:
        for event_type, expected in SUBSCRIPTION_STATES.items():
            await deliver(r, event_type)
            assert await stored(r, "billing_subscriptions", SUBSCRIPTION) == expected
            item = await stored(r, "billing_subscription_items", ITEM)
            assert item == embedded[event_type], event_type


async def test_each_payment_attempt_event_is_processed_field_by_field(running: Runner) -> None:
    async with running(plugins=[billing]) as r:
        await deliver(r, "paymentAttempt.created")
        assert await stored(r, "billing_payment_attempts", ATTEMPT) == ATTEMPT_PENDING
        await deliver(r, "paymentAttempt.updated")
        assert await stored(r, "billing_payment_attempts", ATTEMPT) == ATTEMPT_FAILED


async def test_the_ten_item_events_in_any_order_end_in_the_newest_state(running: Runner) -> None:
    """15 seeded shuffles plus the reverse order, each through the receiver."""
    rng = random.Random(20260327)
    orders = [list(reversed(ITEM_EVENTS))]
    for _ in range(15):
        orders.append(rng.sample(ITEM_EVENTS, len(ITEM_EVENTS)))
    async with running(plugins=[billing]) as r:
        for order in orders:
            await r.db.billing_subscription_items.delete_many({})
            await deliver(r, *order)
            final = await stored(r, "billing_subscription_items", ITEM)
            assert final == ITEM_STATES["subscriptionItem.ended"], order


async def test_payment_attempt_and_subscription_events_in_every_order(running: Runner) -> None:
    """Both orders of the attempt's events, and the item's and subscription's events mixed
    (the subscription first or last): the same documents."""
    async with running(plugins=[billing]) as r:
        for order in itertools.permutations(ATTEMPT_EVENTS):
            await r.db.billing_payment_attempts.delete_many({})
            await deliver(r, *order)
            assert await stored(r, "billing_payment_attempts", ATTEMPT) == ATTEMPT_FAILED
        for order in (SUBSCRIPTION_EVENTS + ITEM_EVENTS, ITEM_EVENTS + SUBSCRIPTION_EVENTS):
            await r.db.billing_subscription_items.delete_many({})
            await r.db.billing_subscriptions.delete_many({})
            await deliver(r, *order)
            final = await stored(r, "billing_subscription_items", ITEM)
            assert final == ITEM_STATES["subscriptionItem.ended"]
            subscription = await stored(r, "billing_subscriptions", SUBSCRIPTION)
            assert subscription == SUBSCRIPTION_STATES["subscription.active"]


async def test_an_embedded_item_seen_first_gets_the_payer_of_its_subscription(
    running: Runner,
) -> None:
    """A subscription with an item never seen on its own: the item is stored with the
    subscription's id and payer; an organization payer's id is kept."""
    data = json.loads(sample("subscription.created"))["data"]
    data["id"] = "csub_org"
    data["payer"] |= {"organization_id": "org_3B72uttDvPCKIgNoDUyqs4uTIyC", "user_id": ""}
    data["items"][0]["id"] = "csub_item_org"
    async with running(plugins=[billing]) as r:
        status, _ = await r.post(envelope("subscription.created", data))
        item = await stored(r, "billing_subscription_items", "csub_item_org")
        subscription = await stored(r, "billing_subscriptions", "csub_org")
    assert status == 200
    identity = {
        "payer_id": PAYER,
        "user_id": None,
        "organization_id": data["payer"]["organization_id"],
    }
    assert {k: item[k] for k in identity} == identity
    assert item["subscription_id"] == "csub_org"
    assert {k: subscription[k] for k in identity} == identity


async def test_billing_collections_hold_no_payer_personal_data_gateway_ids_or_card(
    running: Runner,
) -> None:
    """Every billing sample delivered; then no name, e-mail, image, gateway id, payee or card
    detail of the payloads is in any billing collection."""
    forbidden = [
        "Maya",
        "Okafor",
        "maya.okafor@northwind.example",
        "img.clerk.com",
        "pi_3QxR8sLkT2nV6bWc1yZ4aDfE",
        "pm_1QxR8sLkT2nV6bWcPm9d",
        "acct_1QxR8sLkT2nV6bWc",
        "cpayee_",
        "cps_",
        "stripe",
        "visa",
        "4242",
        "last4",
        "email",
        "first_name",
        "image_url",
    ]
    for event_type in (*ITEM_EVENTS, *SUBSCRIPTION_EVENTS, *ATTEMPT_EVENTS):
        text = sample(event_type).decode()
        assert any(value in text for value in forbidden), "the samples carry such data"
    async with running(plugins=[billing]) as r:
        await deliver(r, *ITEM_EVENTS, *SUBSCRIPTION_EVENTS, *ATTEMPT_EVENTS)
        docs = []
        for name in (
            "billing_subscriptions",
            "billing_subscription_items",
            "billing_payment_attempts",
        ):
            docs += await r.db[name].find({}, {"_id": 0}).to_list(None)
    assert len(docs) == 3
    text = json.dumps(docs, default=str)
    found = [value for value in forbidden if value in text]
    assert found == []
