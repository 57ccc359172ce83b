"""The ODMantic models of the `billing` plugin; their indexes are created at start.

No payer names, e-mail addresses or images (they are in `users`), no gateway ids, no card
details: a subject is joined to `users` or `organizations` by `user_id` / `organization_id`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from odmantic import Field, Model


class Subscription(Model):
    """A payer's subscription: the envelope of its items."""

    model_config = {"collection": "billing_subscriptions"}  # noqa: RUF012 - ODMantic reads a dict

    clerk_id: str = Field(unique=True)
    status: str | None = None
    payer_id: str | None = Field(default=None, index=True)
    user_id: str | None = Field(default=None, index=True)
    organization_id: str | None = Field(default=None, index=True)
    item_ids: list[str] = Field(default_factory=list)
    latest_payment_id: str | None = None
    active_at: datetime | None = None
    past_due_at: datetime | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False


class SubscriptionItem(Model):
    """One plan a payer is (or was) subscribed to: what entitlements are read from."""

    model_config = {"collection": "billing_subscription_items"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    subscription_id: str | None = Field(default=None, index=True)
    status: str | None = None
    plan_id: str | None = Field(default=None, index=True)
    plan: dict[str, Any] | None = None
    interval: str | None = None
    is_free_trial: bool | None = None
    seats: int | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    payer_id: str | None = Field(default=None, index=True)
    user_id: str | None = Field(default=None, index=True)
    organization_id: str | None = Field(default=None, index=True)
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False


class PaymentAttempt(Model):
    """One attempt to collect a payment (`pending`, `paid`, `failed`)."""

    model_config = {"collection": "billing_payment_attempts"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    payment_id: str | None = None
    statement_id: str | None = None
    status: str | None = Field(default=None, index=True)
    charge_type: str | None = None
    totals: dict[str, Any] = Field(default_factory=dict)
    paid_at: datetime | None = None
    failed_at: datetime | None = Field(default=None, index=True)
    failed_reason: dict[str, Any] | None = None
    billing_date: datetime | None = None
    payer_id: str | None = Field(default=None, index=True)
    user_id: str | None = Field(default=None, index=True)
    organization_id: str | None = Field(default=None, index=True)
    subscription_item_ids: list[str] = Field(default_factory=list)
    payment_method: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False


class Plan(Model):
    """A plan of the instance, from the Backend API only (Clerk sends no plan webhooks): where
    the features of a plan are read from. `updated_at` is null: Clerk's plan has no such time."""

    model_config = {"collection": "billing_plans"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    slug: str | None = Field(default=None, index=True)
    name: str | None = None
    for_payer_type: str | None = None
    is_default: bool | None = None
    amount: int | None = None
    currency: str | None = None
    features: list[str] = Field(default_factory=list)
    updated_at: datetime | None = None
    deleted: bool = False
