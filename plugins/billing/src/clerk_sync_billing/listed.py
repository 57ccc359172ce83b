"""What `clerk-sync reconcile` applies of the Backend API's billing objects (pure functions).

Items and subscriptions go through the webhook projections (`fields`); the Backend API leaves
out some fields webhooks carry (a subscription's `latest_payment_id`, `canceled_at` and
`ended_at`; an item's `subscription_id`), so a field whose source the object lacks is not
written over what a webhook stored: it is only filled where the document has none, like the
identity fields of an item. Plans exist only in the Backend API (`project_plan`).

Reconcile never tombstones billing objects (Clerk ends them, it does not delete them), so what
a tombstone would clear is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clerk_sync.projection import str_or_none
from clerk_sync_billing.fields import (
    bool_or_none,
    item_identity,
    plan_price,
    project_item,
    project_subscription,
)

NOT_TOMBSTONED: dict[str, Any] = {}
#: the payload keys each stored field is projected from, where they are not the field's name
ITEM_SOURCES: dict[str, tuple[str, ...]] = {
    "plan_id": ("plan_id", "plan"),
    "interval": ("interval", "plan_period"),
}
SUBSCRIPTION_SOURCES: dict[str, tuple[str, ...]] = {
    "payer_id": ("payer", "payer_id"),
    "user_id": ("payer",),
    "organization_id": ("payer",),
    "item_ids": ("items", "subscription_items"),
}

type Projection = Callable[[dict[str, Any]], dict[str, Any]]


def _carried(name: str, data: Mapping[str, Any], sources: Mapping[str, tuple[str, ...]]) -> bool:
    return any(key in data for key in sources.get(name, (name,)))


def known(project: Projection, sources: Mapping[str, tuple[str, ...]]) -> Projection:
    """`project`, keeping only the fields whose source the object carries."""

    def projected(data: dict[str, Any]) -> dict[str, Any]:
        fields = project(data)
        return {k: v for k, v in fields.items() if _carried(k, data, sources)}

    return projected


def unknown(project: Projection, sources: Mapping[str, tuple[str, ...]]) -> Projection:
    """The other fields of `project`, as null: filled only where the document has none."""

    def missing(data: dict[str, Any]) -> dict[str, Any]:
        return {k: None for k in project(data) if not _carried(k, data, sources)}

    return missing


reconciled_item = known(project_item, ITEM_SOURCES)
reconciled_subscription = known(project_subscription, SUBSCRIPTION_SOURCES)
subscription_fill = unknown(project_subscription, SUBSCRIPTION_SOURCES)
_item_unknown = unknown(project_item, ITEM_SOURCES)


def item_fill(data: dict[str, Any]) -> dict[str, Any]:
    """An item's identity fields (a listed item has no `subscription_id`; the items of a
    payer's subscription are given it) and the fields the object does not carry."""
    return {**_item_unknown(data), **item_identity(data)}


def feature_keys(value: object) -> list[str]:
    """The keys (`slug`) of a plan's features; what `require_feature` is asked for."""
    if not isinstance(value, list):
        return []
    keys = [f.get("slug") if isinstance(f, dict) else None for f in value]
    return [key for key in keys if isinstance(key, str) and key]


def project_plan(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a Backend API `commerce_plan`; its price is the monthly `fee`."""
    amount, currency = plan_price(data)
    return {
        "slug": str_or_none(data.get("slug")),
        "name": str_or_none(data.get("name")),
        "for_payer_type": str_or_none(data.get("for_payer_type")),
        "is_default": bool_or_none(data.get("is_default")),
        "amount": amount,
        "currency": currency,
        "features": feature_keys(data.get("features")),
    }
