"""Clerk Billing in the Backend API: plans, subscription items, and the subscription of a payer.

Beside `client` (whose retry policy every call goes through): `GET /v1/billing/plans` and
`GET /v1/billing/subscription_items` (free-plan items included), both newest first (Clerk offers
no other order: an object created during the listing shifts the pages, which shows an object
twice, never skips one), and `GET /v1/users/{id}/billing/subscription` /
`GET /v1/organizations/{id}/billing/subscription` for one payer. None of them has a
single-object endpoint for items or plans: an item is re-checked in its payer's subscription,
a plan in the whole plan listing.

The Backend API's subscription names its payer by `payer_id` only and its items carry no
`subscription_id`: the subscription is given the payer asked for (`payer`: its ids, nothing
personal) and each embedded item its subscription's id and that payer, the shape a
`subscription.*` webhook delivers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clerk_sync.reconcile.catalog import ClerkClient, Page, as_json

if TYPE_CHECKING:
    from clerk_backend_api.models import (
        CommerceSubscription,
        PaginatedCommercePlanResponse,
        PaginatedCommerceSubscriptionItemResponse,
    )

RESOURCES = ("plans", "subscription_items")
#: the most plans the re-check of one plan reads
MAX_PLANS = 500


@dataclass(frozen=True)
class Payer:
    """Whom a subscription belongs to, by id: an organization when `organization_id` is set."""

    payer_id: str | None
    user_id: str | None
    organization_id: str | None

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Payer:
        def text(name: str) -> str | None:
            value = doc.get(name)
            return value if isinstance(value, str) and value else None

        return cls(text("payer_id"), text("user_id"), text("organization_id"))

    def as_payload(self) -> dict[str, str | None]:
        return {
            "id": self.payer_id,
            "user_id": self.user_id,
            "organization_id": self.organization_id,
        }


async def page(client: ClerkClient, resource: str, *, offset: int, limit: int) -> Page:
    """One page of `resource` and its `total_count`."""
    billing = client.sdk.billing
    listed: PaginatedCommercePlanResponse | PaginatedCommerceSubscriptionItemResponse
    if resource == "plans":
        listed = await client.listing(
            "GET /v1/billing/plans",
            lambda: billing.list_plans_async(paginated=True, limit=limit, offset=offset),
        )
    elif resource == "subscription_items":
        listed = await client.listing(
            "GET /v1/billing/subscription_items",
            lambda: billing.list_subscription_items_async(
                paginated=True, include_free=True, limit=limit, offset=offset
            ),
        )
    else:
        raise ValueError(f"unknown resource {resource!r}")
    return [as_json(item) for item in listed.data], listed.total_count


async def current(
    client: ClerkClient, resource: str, doc: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The Clerk object a stored document projects, None when Clerk lists no such object."""
    clerk_id = doc["clerk_id"]
    if resource == "plans":
        plans = await client.call(
            "GET /v1/billing/plans",
            lambda: client.sdk.billing.list_plans_async(paginated=True, limit=MAX_PLANS),
        )
        listed = [] if plans is None else [as_json(plan) for plan in plans.data]
        return next((plan for plan in listed if plan.get("id") == clerk_id), None)
    found = await subscription(client, Payer.of(doc))
    items = [] if found is None else found["subscription_items"]
    return next((item for item in items if item.get("id") == clerk_id), None)


async def subscription(client: ClerkClient, payer: Payer) -> dict[str, Any] | None:
    """The payer's subscription (None when it has none), with its payer and items filled in."""
    sdk = client.sdk
    got: CommerceSubscription | None
    if payer.organization_id is not None:
        organization_id = payer.organization_id
        got = await client.call(
            f"GET /v1/organizations/{organization_id}/billing/subscription",
            lambda: sdk.organizations.get_billing_subscription_async(
                organization_id=organization_id
            ),
        )
    elif payer.user_id is not None:
        user_id = payer.user_id
        got = await client.call(
            f"GET /v1/users/{user_id}/billing/subscription",
            lambda: sdk.users.get_billing_subscription_async(user_id=user_id),
        )
    else:
        return None
    if got is None:
        return None
    found = as_json(got)
    ids = Payer(found.get("payer_id") or payer.payer_id, payer.user_id, payer.organization_id)
    found.setdefault("payer", ids.as_payload())
    items = found.get("subscription_items")
    found["subscription_items"] = items = items if isinstance(items, list) else []
    for item in items:
        item.setdefault("subscription_id", found.get("id"))
        item.setdefault("payer", ids.as_payload())
    return found
