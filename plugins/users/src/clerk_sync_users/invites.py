"""App-level invitations (`invitation.*`) and waitlist entries (`waitlistEntry.*`) of the
`users` plugin: models, projections and handlers (registered in `__init__`).

No webhook deletes either (invitations are revoked, entries change status); both follow the
`updated_at` ordering guard. A waitlist entry deleted through the Backend API is found by
`clerk-sync reconcile`, which tombstones it (`WAITLIST_CLEARED`); invitations are never
tombstoned. An invitation's `url` is never stored: it carries a sign-up
ticket.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from odmantic import Field, Model

from clerk_sync import Context, Event
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import dict_or_empty, str_or_none, upsert_if_newer


class AppInvitation(Model):
    """An invitation to the application (not to an organization)."""

    model_config = {"collection": "invitations"}  # noqa: RUF012 - ODMantic reads a plain dict

    clerk_id: str = Field(unique=True)
    email_address: str | None = Field(default=None, index=True)
    status: str | None = None
    public_metadata: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False


class WaitlistEntry(Model):
    """Someone on the application's waitlist."""

    model_config = {"collection": "waitlist_entries"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    email_address: str | None = Field(default=None, index=True)
    status: str | None = None
    is_locked: bool | None = None
    invitation_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None  # set by reconcile when Clerk deleted the entry


#: The status an invitation event implies when the payload carries none.
INVITATION_STATUS_OF_EVENT = {
    "invitation.created": "pending",
    "invitation.accepted": "accepted",
    "invitation.revoked": "revoked",
}
#: Reconcile never tombstones an invitation (Clerk revokes, never deletes); what it would clear.
INVITATION_CLEARED: dict[str, Any] = {
    "email_address": None,
    "public_metadata": {},
    "expires_at": None,
    "created_at": None,
    "updated_at": None,
}
#: What reconcile leaves of a waitlist entry Clerk no longer has: its id and status.
WAITLIST_CLEARED: dict[str, Any] = {
    "email_address": None,
    "is_locked": None,
    "invitation_id": None,
    "created_at": None,
    "updated_at": None,
}


def project_invitation(data: dict[str, Any], event_type: str | None = None) -> dict[str, Any]:
    """The stored fields of an `invitation` object; never its `url`."""
    status = str_or_none(data.get("status"))
    if status is None and data.get("revoked") is True:
        status = "revoked"
    return {
        "email_address": str_or_none(data.get("email_address")),
        "status": status or INVITATION_STATUS_OF_EVENT.get(event_type or ""),
        "public_metadata": dict_or_empty(data.get("public_metadata")),
        "expires_at": timestamp_from_clerk(data.get("expires_at")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


def project_waitlist_entry(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a `waitlist_entry`; its invitation by id only."""
    invitation = data.get("invitation")
    invitation_id = (
        str_or_none(invitation.get("id")) if isinstance(invitation, dict) else None
    ) or str_or_none(data.get("invitation_id"))
    is_locked = data.get("is_locked")
    return {
        "email_address": str_or_none(data.get("email_address")),
        "status": str_or_none(data.get("status")),
        "is_locked": is_locked if isinstance(is_locked, bool) else None,
        "invitation_id": invitation_id,
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


async def _upsert(
    event: Event, ctx: Context[None], model: type[Model], fields: Callable[[], dict[str, Any]]
) -> None:
    clerk_id = event.data.get("id")
    if not isinstance(clerk_id, str):
        raise ValueError(f"{event.type} without a string 'id'")
    updated_at = timestamp_from_clerk(event.data.get("updated_at"))
    collection = ctx.engine.get_collection(model)
    if await upsert_if_newer(collection, clerk_id, fields(), updated_at) == "stale":
        ctx.log.info("stale_event_skipped", event_type=event.type, clerk_id=clerk_id)


async def upsert_app_invitation(event: Event, ctx: Context[None]) -> None:
    """`invitation.*`: the invitation, with the status its event implies when none is sent."""
    await _upsert(event, ctx, AppInvitation, lambda: project_invitation(event.data, event.type))


async def upsert_waitlist_entry(event: Event, ctx: Context[None]) -> None:
    await _upsert(event, ctx, WaitlistEntry, lambda: project_waitlist_entry(event.data))
