"""The Backend API stand-in of tests/test_reconcile.py grown by the listings of app invitations,
the waitlist and Clerk Billing, and Backend API objects built from the bundled webhook samples.

The shapes are those of `clerk-backend-api` 7.0.0's models (which follow Clerk's spec and
validate every answer): a billing item has `plan_period` where webhooks say `interval`, its
`payer_id` but no `subscription_id`, and a plan whose price is its `fee`; a subscription lists
`subscription_items` and names its payer by `payer_id` only, without `latest_payment_id`,
`canceled_at` or `ended_at` (../shared/clerk/FACTS.md 3.7, 3.8).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from clerk_sync.testing import sample
from tests.test_reconcile import FakeClerk

type Db = AsyncIOMotorDatabase[dict[str, Any]]
type Answer = tuple[int, dict[str, str], Any]

INSTANCE = "ins_2bo4GL9mt2BVvxDd1qfmxzzLhOe"
INVITATIONS = "/v1/invitations"
WAITLIST = "/v1/waitlist_entries"
PLANS = "/v1/billing/plans"
ITEMS = "/v1/billing/subscription_items"
#: the feature keys the stand-in's plans list
FEATURES = ["exports", "sso"]
NOT_FOUND: Answer = (404, {}, {"errors": [{"code": "resource_not_found"}]})


def data_of(event_type: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(sample(event_type))["data"]
    return found


class SpecClerk(FakeClerk):
    """FakeClerk plus `GET /v1/invitations`, `/v1/waitlist_entries`, `/v1/billing/plans`,
    `/v1/billing/subscription_items` and the billing subscription of a user or organization."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("invitations", "waitlist_entries", "plans", "subscription_items"):
            self.objects[name] = []
        #: ("users" | "organizations", id) -> the payer's subscription
        self.subscriptions: dict[tuple[str, str], dict[str, Any]] = {}

    def route(self, path: str, query: dict[str, str], offset: int, limit: int) -> Answer:
        parts = path.strip("/").split("/")
        if len(parts) == 5 and parts[1] in ("users", "organizations") and parts[3] == "billing":
            found = self.subscriptions.get((parts[1], parts[2]))
            return NOT_FOUND if found is None else (200, {}, found)
        listed = self._listing(path, query)
        if listed is None:
            return super().route(path, query, offset, limit)
        if self.failing(path):
            return 500, {}, {"errors": []}
        page = listed[offset : offset + limit]
        if path == INVITATIONS:
            return 200, {}, page  # a bare array, like the users list
        return 200, {}, {"data": page, "total_count": len(listed)}

    def _listing(self, path: str, query: dict[str, str]) -> list[dict[str, Any]] | None:
        """What a listing holds after its filters, in its order; None for other paths."""
        if path == INVITATIONS:
            wanted = query.get("status")
            found = [
                i
                for i in self.objects["invitations"]
                if (i["status"] == wanted if wanted else i["status"] != "revoked")
            ]
            return _oldest_first(_matching(found, query.get("query")))
        if path == WAITLIST:
            found = _matching(self.objects["waitlist_entries"], query.get("query"))
            return _oldest_first(found)
        if path == PLANS:
            return list(self.objects["plans"])  # newest first: as given
        if path == ITEMS:
            items = self.objects["subscription_items"]
            if query.get("include_free") != "true":  # Clerk's default leaves free plans out
                items = [i for i in items if i["plan"]["fee"]["amount"] > 0]
            return list(items)
        return None


def _matching(objects: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if text is None:
        return objects
    return [o for o in objects if text in (o["id"], o.get("email_address"))]


def _oldest_first(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda o: o["created_at"])


# --------------------------------------------------------------------------- Backend API shapes


def backend_plan(plan: dict[str, Any], features: Sequence[str] = ()) -> dict[str, Any]:
    """A `commerce_plan` with the webhook plan's id, slug, name and price, and `features`."""
    amount, currency = plan["amount"], plan["currency"]
    return {
        "object": "commerce_plan",
        "id": plan["id"],
        "name": plan["name"],
        "fee": {
            "amount": amount,
            "amount_formatted": f"{amount / 100:.2f}",
            "currency": currency,
            "currency_symbol": "€",
        },
        "annual_monthly_fee": None,
        "annual_fee": None,
        "description": f"The {plan['name']} plan",
        "product_id": "cprod_39cetOqPn1yhtn7YS0uWQ5Vh4Tz",
        "is_default": amount == 0,
        "is_recurring": plan["is_recurring"],
        "publicly_visible": True,
        "has_base_fee": amount > 0,
        "for_payer_type": "user",
        "slug": plan["slug"],
        "avatar_url": None,
        "free_trial_enabled": True,
        "free_trial_days": 14,
        "features": [
            {
                "object": "feature",
                "id": f"feat_{key}",
                "name": key.title(),
                "description": None,
                "slug": key,
                "avatar_url": None,
            }
            for key in features
        ],
    }


def backend_payer(payer: dict[str, Any]) -> dict[str, Any]:
    """The webhook payer as a `commerce_payer`: names, e-mail and image included, as Clerk
    sends them (the billing plugin must drop them)."""
    return {**payer, "object": "commerce_payer", "instance_id": INSTANCE}


def payment_method(payer_id: str) -> dict[str, Any]:
    """A card on file, with the gateway ids and digits no projection may keep."""
    return {
        "object": "commerce_payment_method",
        "id": "cpm_3BWPl5Z3lGDdRcM4rlp8XVQYoN6",
        "payer_id": payer_id,
        "payment_type": "card",
        "gateway": "stripe",
        "gateway_external_id": "pm_1SecretGatewayId0000000",
        "gateway_external_account_id": "acct_1SecretAccount0000",
        "last4": "4242",
        "status": "active",
        "card_type": "visa",
    }


def backend_item(
    item: dict[str, Any], payer: dict[str, Any] | None, *, with_payer: bool = True
) -> dict[str, Any]:
    """A webhook subscription item as the Backend API lists it."""
    payer_id = (payer or item["payer"])["id"]
    shaped = {
        "object": "commerce_subscription_item",
        "id": item["id"],
        "instance_id": INSTANCE,
        "status": item["status"],
        "plan_id": item["plan_id"],
        "plan_period": item["interval"],
        "payer_id": payer_id,
        "is_free_trial": item["is_free_trial"],
        "period_start": item["period_start"],
        "period_end": item.get("period_end"),
        "canceled_at": item.get("canceled_at"),
        "past_due_at": item.get("past_due_at"),
        "ended_at": item.get("ended_at"),
        "plan": backend_plan(item["plan"]),
        "payment_method": payment_method(payer_id),
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
    }
    if "seats" in item:
        shaped["seats"] = {"quantity": item["seats"]["quantity"]}
    if with_payer:
        shaped["payer"] = backend_payer(payer or item["payer"])
    return shaped


def backend_subscription(subscription: dict[str, Any]) -> dict[str, Any]:
    """A `subscription.*` payload as `GET /v1/users/{id}/billing/subscription` answers it:
    its items without payer or subscription id."""
    payer = subscription["payer"]
    return {
        "object": "commerce_subscription",
        "id": subscription["id"],
        "instance_id": INSTANCE,
        "status": subscription["status"],
        "payer_id": subscription["payer_id"],
        "created_at": subscription["created_at"],
        "updated_at": subscription["updated_at"],
        "active_at": subscription["active_at"],
        "past_due_at": subscription["past_due_at"],
        "subscription_items": [
            backend_item(i, payer, with_payer=False) for i in subscription["items"]
        ],
    }


def clerk_billing(clerk: SpecClerk, subscription: dict[str, Any], features: list[str]) -> None:
    """Serve the state a `subscription.*` payload describes: its items listed (with their
    payer), its plans with `features`, and the subscription for its user."""
    payer = subscription["payer"]
    items = [backend_item(i, payer) for i in subscription["items"]]
    clerk.objects["subscription_items"] = items
    plans = {i["plan"]["id"]: backend_plan(i["plan"], features) for i in subscription["items"]}
    clerk.objects["plans"] = list(plans.values())
    clerk.subscriptions[("users", payer["user_id"])] = backend_subscription(subscription)


def subscription_active_state(clerk: SpecClerk) -> None:
    """Clerk as `subscription.active` left it."""
    clerk_billing(clerk, data_of("subscription.active"), FEATURES)


def with_item(subscription: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """`subscription` holding `item` (as its embedded items are: no payer, no subscription id)."""
    embedded = {k: v for k, v in copy.deepcopy(item).items() if k not in ("payer",)}
    embedded["subscription_id"] = None
    return {**copy.deepcopy(subscription), "items": [embedded]}


async def database(url: str, name: str) -> AsyncIterator[Db]:
    """A tz-aware motor database, dropped afterwards (for the fixtures of the test modules)."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(url, tz_aware=True)
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        client.close()
