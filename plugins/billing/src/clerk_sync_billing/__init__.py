"""Built-in plugin `billing`: Clerk Billing subscriptions, subscription items and payment
attempts in MongoDB (`billing_subscriptions`, `billing_subscription_items`,
`billing_payment_attempts`), and the plans with their features (`billing_plans`, from
`clerk-sync reconcile` only: Clerk sends no plan webhooks).

Every write is order-safe (`upsert_if_newer` on `updated_at`): Svix does not keep order, and
several events of one item or attempt share its id. A subscription's embedded items are applied
to `billing_subscription_items` too, with the subscription's id and payer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clerk_sync import Context, Event, Plugin
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import upsert_if_newer
from clerk_sync_billing.fields import (
    item_identity,
    project_item,
    project_payment_attempt,
    project_subscription,
)
from clerk_sync_billing.listed import (
    NOT_TOMBSTONED,
    item_fill,
    project_plan,
    reconciled_item,
    reconciled_subscription,
    subscription_fill,
)
from clerk_sync_billing.models import PaymentAttempt, Plan, Subscription, SubscriptionItem

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

__all__ = ["PaymentAttempt", "Plan", "Subscription", "SubscriptionItem", "plugin"]

plugin = Plugin("billing", models=[Subscription, SubscriptionItem, PaymentAttempt, Plan])

# `clerk-sync reconcile`: plans, the listed items, then each payer's subscription (its items
# with it); the webhook projections, without emptying what only webhooks know (`listed`)
plugin.reconciler("plans", collection="billing_plans", cleared=NOT_TOMBSTONED)(project_plan)
plugin.reconciler(
    "subscription_items",
    collection="billing_subscription_items",
    cleared=NOT_TOMBSTONED,
    fill=item_fill,
)(reconciled_item)
plugin.reconciler(
    "subscriptions",
    collection="billing_subscriptions",
    cleared=NOT_TOMBSTONED,
    fill=subscription_fill,
)(reconciled_subscription)

type Collection = AsyncIOMotorCollection[dict[str, Any]]


def _required_id(event: Event) -> str:
    clerk_id = event.data.get("id")
    if not isinstance(clerk_id, str) or not clerk_id:
        raise ValueError(f"{event.type} without a string 'id'")
    return clerk_id


async def _upsert(
    ctx: Context[None], collection: Collection, clerk_id: str, fields: dict[str, Any], data: Any
) -> None:
    updated_at = timestamp_from_clerk(data.get("updated_at"))
    if await upsert_if_newer(collection, clerk_id, fields, updated_at) == "stale":
        ctx.log.info("billing_stale_event_skipped", clerk_id=clerk_id)


async def apply_item(
    ctx: Context[None], data: dict[str, Any], identity: Mapping[str, str | None]
) -> None:
    """Write one item, then fill its identity fields where they are still missing: whichever
    event names the subscription or the payer first, none empties them again."""
    clerk_id = data.get("id")
    if not isinstance(clerk_id, str) or not clerk_id:
        raise ValueError("subscription item without a string 'id'")
    items = ctx.engine.get_collection(SubscriptionItem)
    await _upsert(ctx, items, clerk_id, project_item(data), data)
    fill = {key: {"$ifNull": [f"${key}", {"$literal": value}]} for key, value in identity.items()}
    await items.update_one({"clerk_id": clerk_id}, [{"$set": fill}])


@plugin.on("subscription.*")
async def upsert_subscription(event: Event, ctx: Context[None]) -> None:
    """The subscription, and each of its embedded items with the subscription's id."""
    clerk_id = _required_id(event)
    data = event.data
    subscriptions = ctx.engine.get_collection(Subscription)
    await _upsert(ctx, subscriptions, clerk_id, project_subscription(data), data)
    items = data.get("items")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            await apply_item(ctx, item, item_identity(item, clerk_id, data.get("payer")))


@plugin.on("subscriptionItem.*")
async def upsert_subscription_item(event: Event, ctx: Context[None]) -> None:
    """One of the ten item events: the item's newest state wins."""
    _required_id(event)
    await apply_item(ctx, event.data, item_identity(event.data))


@plugin.on("paymentAttempt.*")
async def upsert_payment_attempt(event: Event, ctx: Context[None]) -> None:
    clerk_id = _required_id(event)
    attempts = ctx.engine.get_collection(PaymentAttempt)
    await _upsert(ctx, attempts, clerk_id, project_payment_attempt(event.data), event.data)
