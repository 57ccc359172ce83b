"""Plans, features and permissions from synced Clerk state: what `ClerkSync`'s entitlement
guards, `clerk.entitlements()` and `/api/v1/me/billing` answer. Plain async functions over the
motor database; the clock is a parameter. No Quart, and no Backend API call.

The rules (docs/data.md "Entitlements"): a subject (a user, or an organization) has a plan
while one of its subscription items of that plan is `active`, `past_due` for less than the
grace (`CLERK_SYNC_PAST_DUE_GRACE`, since the subscription's `past_due_at`, else the item's
`updated_at`), or `canceled` with `period_end` still ahead; it has a feature when one of its
plans lists it in `billing_plans`. A user's own items are those with no organization.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from clerk_sync.auth.queries import live_membership, plain

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    type Database = AsyncIOMotorDatabase[dict[str, Any]]

#: The most items of one subject an answer lists (newest first); the rules see them all.
ITEMS_LISTED = 100
_ITEM_FIELDS = (
    "clerk_id",
    "subscription_id",
    "status",
    "plan_id",
    "plan",
    "interval",
    "is_free_trial",
    "seats",
    "period_start",
    "period_end",
    "canceled_at",
    "ended_at",
    "updated_at",
)
_LIVE = {"deleted": {"$ne": True}}


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose entitlements: an organization when `organization_id` is set, else a user."""

    user_id: str | None = None
    organization_id: str | None = None

    def items_query(self) -> dict[str, Any]:
        if self.organization_id is not None:
            return {"organization_id": self.organization_id}
        return {"user_id": self.user_id, "organization_id": None}


@dataclass(frozen=True, slots=True)
class Entitlements:
    """`plans` (slugs) and `features` (keys) the subject has now, and its items, newest first,
    each with `entitled`."""

    plans: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"plans": self.plans, "features": self.features, "items": self.items}


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def item_entitles(
    item: Mapping[str, Any], past_due_since: datetime | None, now: datetime, grace: timedelta
) -> bool:
    """Whether one stored subscription item gives its plan at `now` (the rules above)."""
    status = item.get("status")
    if status == "active":
        return True
    if status == "canceled":
        period_end = _aware(item.get("period_end"))
        return period_end is not None and now < period_end
    if status == "past_due":
        since = past_due_since or _aware(item.get("updated_at"))
        return since is not None and now < since + grace
    return False


async def _past_due_since(db: Database, items: list[dict[str, Any]]) -> dict[str, datetime]:
    """`past_due_at` of the subscriptions of the subject's past-due items, by subscription id."""
    ids = {i.get("subscription_id") for i in items if i.get("status") == "past_due"}
    wanted = [i for i in ids if isinstance(i, str)]
    if not wanted:
        return {}
    found = db.billing_subscriptions.find(
        {"clerk_id": {"$in": wanted}}, projection={"clerk_id": 1, "past_due_at": 1}
    )
    since = {doc["clerk_id"]: _aware(doc.get("past_due_at")) async for doc in found}
    return {k: v for k, v in since.items() if v is not None}


async def _plan_features(db: Database, plan_ids: set[str]) -> dict[str, list[str]]:
    if not plan_ids:
        return {}
    query = {"clerk_id": {"$in": sorted(plan_ids)}, **_LIVE}
    found = db.billing_plans.find(query, projection={"clerk_id": 1, "features": 1})
    return {
        doc["clerk_id"]: [f for f in doc.get("features") or [] if isinstance(f, str)]
        async for doc in found
    }


def _slug(item: Mapping[str, Any]) -> str | None:
    plan = item.get("plan")
    slug = plan.get("slug") if isinstance(plan, Mapping) else None
    return slug if isinstance(slug, str) else None


def _listed(item: Mapping[str, Any], entitled: bool) -> dict[str, Any]:
    shown = {name: plain(item.get(name)) for name in _ITEM_FIELDS if name != "clerk_id"}
    return {"id": item.get("clerk_id"), **shown, "entitled": entitled}


async def entitlements_of(
    db: Database, subject: Subject, *, now: datetime, grace: timedelta
) -> Entitlements:
    """The subject's plans, features and items at `now`, from the billing collections."""
    cursor = db.billing_subscription_items.find(
        subject.items_query(), projection=dict.fromkeys(_ITEM_FIELDS, 1)
    )
    items = await cursor.sort([("updated_at", -1), ("clerk_id", 1)]).to_list(length=None)
    since = await _past_due_since(db, items)
    plans: set[str] = set()
    plan_ids: set[str] = set()
    listed = []
    for item in items:
        past_due = since.get(str(item.get("subscription_id")))
        entitled = item_entitles(item, past_due, now, grace)
        if entitled and (slug := _slug(item)) is not None:
            plans.add(slug)
            if isinstance(plan_id := item.get("plan_id"), str):
                plan_ids.add(plan_id)
        listed.append(_listed(item, entitled))
    features = {f for keys in (await _plan_features(db, plan_ids)).values() for f in keys}
    return Entitlements(sorted(plans), sorted(features), listed[:ITEMS_LISTED])


async def subject_for(db: Database, user_id: str, organization_id: str | None) -> Subject | None:
    """The user, or the organization when given and the user is a live member of it; None
    for an organization the user does not belong to (an organization's plan is its members')."""
    if organization_id is None:
        return Subject(user_id=user_id)
    if await live_membership(db, organization_id, user_id) is None:
        return None
    return Subject(organization_id=organization_id)


async def membership_permissions(db: Database, membership: Mapping[str, Any]) -> set[str]:
    """The permission keys of a live membership: its own `permissions` when Clerk sent them,
    else those of its role in `roles` (none for a deleted or unknown role)."""
    own = membership.get("permissions")
    if isinstance(own, list) and own:
        return {p for p in own if isinstance(p, str)}
    role = membership.get("role")
    if not isinstance(role, str):
        return set()
    found = await db.roles.find_one({"key": role, **_LIVE}, projection={"permissions": 1})
    keys = (found or {}).get("permissions") or []
    return {p for p in keys if isinstance(p, str)}
