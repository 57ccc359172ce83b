"""The read API's answers as pydantic models: they shape every response and `/openapi.json`."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

#: A time as the read API writes it: ISO-8601 (UTC), or null.
Time = Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]
Text = str | None

CURSOR_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR = 512

AuthReason = Literal[
    "token_missing",
    "token_malformed",
    "token_expired",
    "token_not_yet_valid",
    "signature_invalid",
    "algorithm_not_allowed",
    "issuer_invalid",
    "azp_not_allowed",
    "session_pending",
    "claims_invalid",
    "key_not_found",
    "jwks_unavailable",
]


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class AuthError(_Answer):
    """No valid session token; `reason` says why."""

    error: str
    reason: AuthReason


class BadRequest(_Answer):
    error: str
    reason: Literal["limit_invalid", "cursor_invalid"]


class Forbidden(_Answer):
    error: str
    reason: Literal["not_a_member"]


class UserNotFound(_Answer):
    error: str
    reason: Literal["user_not_synced", "user_deleted"]


class StorageUnavailable(_Answer):
    error: str
    reason: Literal["storage_unavailable"]


class User(_Answer):
    """The user as projected by the `users` plugin; `private_metadata` is never returned.

    Fields other plugins store in the user's document are returned as they are."""

    model_config = ConfigDict(
        frozen=True, extra="allow", json_schema_extra={"not": {"required": ["private_metadata"]}}
    )

    clerk_id: str
    external_id: Text = None
    email: Text = None
    email_addresses: list[str] = Field(default_factory=list)
    phone: Text = None
    username: Text = None
    first_name: Text = None
    last_name: Text = None
    image_url: Text = None
    public_metadata: dict[str, Any] = Field(default_factory=dict)
    unsafe_metadata: dict[str, Any] = Field(default_factory=dict)
    banned: bool = False
    locked: bool = False
    last_sign_in_at: Time = None
    created_at: Time = None
    updated_at: Time = None
    deleted: bool = False
    deleted_at: Time = None


class OrganizationSummary(_Answer):
    """Names are null while the organization itself is not yet synced."""

    id: Text
    name: Text
    slug: Text
    image_url: Text


class UserSummary(_Answer):
    id: Text
    username: Text
    first_name: Text
    last_name: Text
    image_url: Text


class Membership(_Answer):
    id: str
    organization_id: Text
    user_id: Text
    role: Text
    permissions: list[str]
    public_metadata: dict[str, Any]
    created_at: Time
    updated_at: Time


class MyMembership(Membership):
    organization: OrganizationSummary


class Member(Membership):
    """`user` is null while the user is not synced, or once deleted."""

    user: UserSummary | None


class MyOrganizations(_Answer):
    data: list[MyMembership]


class MemberPage(_Answer):
    data: list[Member]
    next_cursor: Annotated[str | None, Field(pattern=CURSOR_PATTERN)]


class PlanSummary(_Answer):
    slug: Text = None
    name: Text = None
    amount: int | None = None
    currency: Text = None
    is_recurring: bool | None = None


class BillingItem(_Answer):
    """One subscription item of the subject; `entitled`: whether it gives its plan now."""

    id: str
    subscription_id: Text
    status: Text
    plan_id: Text
    plan: PlanSummary | None
    interval: Text
    is_free_trial: bool | None
    seats: int | None
    period_start: Time
    period_end: Time
    canceled_at: Time
    ended_at: Time
    updated_at: Time
    entitled: bool


class Billing(_Answer):
    """What the subject is entitled to now (docs/data.md "Entitlements"): plan slugs, feature
    keys, and its subscription items (newest first, at most 100)."""

    plans: list[str]
    features: list[str]
    items: list[BillingItem]


class BillingQuery(BaseModel):
    """The query string of `/me/billing`."""

    organization_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="An organization the caller is a live member of; without it, the caller's own.",
    )


class MembersQuery(BaseModel):
    """The query string of `/organizations/{org_id}/members` (documentation: parsing is strict
    and answers `limit_invalid` or `cursor_invalid` in the read API itself)."""

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(
        default=None,
        min_length=2,
        max_length=MAX_CURSOR,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page (opaque).",
    )


def _reasons(model: type[BaseModel]) -> tuple[str, ...]:
    return get_args(model.model_fields["reason"].annotation)


#: The error model of each reason the read API refuses with.
ERRORS: dict[str, type[BaseModel]] = {
    reason: model
    for model in (AuthError, BadRequest, Forbidden, UserNotFound, StorageUnavailable)
    for reason in _reasons(model)
}


def shaped(model: type[BaseModel], value: Any) -> dict[str, Any]:
    """`value` (plain JSON already) as `model` answers it: checked, in the documented shape."""
    dumped: dict[str, Any] = model.model_validate(value).model_dump(mode="json")
    return dumped
