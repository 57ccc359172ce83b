"""Pure functions from Clerk Billing payloads to stored fields (../shared/clerk/FACTS.md 3.8).

What is left out on purpose: the payer's names, e-mail address and image, the payee, every
gateway id, and the payment source's card type and digits. Only the payment method's kind
(`card`) is kept.
"""

from __future__ import annotations

from typing import Any

from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import dict_or_empty, int_or_none, str_or_none

#: The fields of an item that one event may not know and another does: the subscription's id
#: (null in a subscription's own embedded items) and the payer (absent there). A write never
#: empties them; `identity_update` fills them when they are missing.
ITEM_IDENTITY = ("subscription_id", "payer_id", "user_id", "organization_id")


def id_or_none(value: object) -> str | None:
    """An id; Clerk's empty strings (a user payer's `organization_id`) are stored as null."""
    return value if isinstance(value, str) and value else None


def bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def payer_fields(payer: object, payer_id: object = None) -> dict[str, str | None]:
    """`payer_id`, `user_id`, `organization_id` of an embedded payer, nothing personal."""
    found = dict_or_empty(payer)
    return {
        "payer_id": id_or_none(payer_id) or id_or_none(found.get("id")),
        "user_id": id_or_none(found.get("user_id")),
        "organization_id": id_or_none(found.get("organization_id")),
    }


def plan_price(plan: dict[str, Any]) -> tuple[int | None, str | None]:
    """`amount` (minor units) and `currency` of a plan: webhooks send them on the plan, the
    Backend API in its monthly `fee` (`{amount, amount_formatted, currency, …}`)."""
    fee = dict_or_empty(plan.get("fee"))
    amount = int_or_none(plan.get("amount"))
    currency = str_or_none(plan.get("currency"))
    return (
        int_or_none(fee.get("amount")) if amount is None else amount,
        str_or_none(fee.get("currency")) if currency is None else currency,
    )


def plan_summary(plan: object) -> dict[str, Any] | None:
    """`slug`, `name`, `amount` (minor units), `currency`, `is_recurring` of an embedded plan."""
    if not isinstance(plan, dict):
        return None
    amount, currency = plan_price(plan)
    return {
        "slug": str_or_none(plan.get("slug")),
        "name": str_or_none(plan.get("name")),
        "amount": amount,
        "currency": currency,
        "is_recurring": bool_or_none(plan.get("is_recurring")),
    }


def item_identity(
    data: dict[str, Any], subscription_id: str | None = None, payer: object = None
) -> dict[str, str | None]:
    """The identity fields of an item; a subscription's embedded items take its id and payer."""
    own = payer_fields(data.get("payer"), data.get("payer_id"))
    inherited = payer_fields(payer)
    return {
        "subscription_id": id_or_none(data.get("subscription_id")) or subscription_id,
        **{key: own[key] or inherited[key] for key in own},
    }


def project_item(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a subscription item, without its identity fields (see above)."""
    plan = data.get("plan")
    interval = str_or_none(data.get("interval")) or str_or_none(data.get("plan_period"))
    return {
        "status": str_or_none(data.get("status")),
        "plan_id": id_or_none(data.get("plan_id")) or id_or_none(dict_or_empty(plan).get("id")),
        "plan": plan_summary(plan),
        "interval": interval,
        "is_free_trial": bool_or_none(data.get("is_free_trial")),
        "seats": int_or_none(dict_or_empty(data.get("seats")).get("quantity")),
        "period_start": timestamp_from_clerk(data.get("period_start")),
        "period_end": timestamp_from_clerk(data.get("period_end")),
        "canceled_at": timestamp_from_clerk(data.get("canceled_at")),
        "ended_at": timestamp_from_clerk(data.get("ended_at")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


def ids_of(items: object) -> list[str]:
    if not isinstance(items, list):
        return []
    return [i["id"] for i in items if isinstance(i, dict) and id_or_none(i.get("id"))]


def project_subscription(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a subscription; its items are stored on their own (`items` in
    webhooks, `subscription_items` in the Backend API)."""
    items = data.get("items")
    return {
        "status": str_or_none(data.get("status")),
        **payer_fields(data.get("payer"), data.get("payer_id")),
        "item_ids": ids_of(data.get("subscription_items") if items is None else items),
        "latest_payment_id": id_or_none(data.get("latest_payment_id")),
        "active_at": timestamp_from_clerk(data.get("active_at")),
        "past_due_at": timestamp_from_clerk(data.get("past_due_at")),
        "canceled_at": timestamp_from_clerk(data.get("canceled_at")),
        "ended_at": timestamp_from_clerk(data.get("ended_at")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


def money(value: object) -> dict[str, Any] | None:
    found = dict_or_empty(value)
    if not found:
        return None
    return {
        "amount": int_or_none(found.get("amount")),
        "currency": str_or_none(found.get("currency")),
    }


def failed_reason(value: object) -> dict[str, str | None] | None:
    """`code` and `decline_code` (WH-SPEC `BillingPaymentFailedReason`); a bare string as code."""
    if isinstance(value, str):
        return {"code": value, "decline_code": None}
    if not isinstance(value, dict):
        return None
    return {
        "code": str_or_none(value.get("code")),
        "decline_code": str_or_none(value.get("decline_code")),
    }


def project_payment_attempt(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a payment attempt: amounts, dates, outcome, who paid (by id)."""
    totals = dict_or_empty(data.get("totals"))
    return {
        "payment_id": id_or_none(data.get("payment_id")),
        "statement_id": id_or_none(data.get("statement_id")),
        "status": str_or_none(data.get("status")),
        "charge_type": str_or_none(data.get("charge_type")),
        "totals": {key: money(totals.get(key)) for key in ("subtotal", "tax_total", "grand_total")},
        "paid_at": timestamp_from_clerk(data.get("paid_at")),
        "failed_at": timestamp_from_clerk(data.get("failed_at")),
        "failed_reason": failed_reason(data.get("failed_reason")),
        "billing_date": timestamp_from_clerk(data.get("billing_date")),
        **payer_fields(data.get("payer"), data.get("payer_id")),
        "subscription_item_ids": ids_of(data.get("subscription_items")),
        "payment_method": str_or_none(
            dict_or_empty(data.get("payment_source")).get("payment_method")
        ),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }
