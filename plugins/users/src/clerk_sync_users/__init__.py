"""Built-in plugin `users`: Clerk users projected into the `users` collection, with the
application's invitations and waitlist (`clerk_sync_users.invites`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from odmantic import Field, Model

from clerk_sync import Context, Event, Plugin
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import dict_or_empty, str_or_none, tombstone, upsert_if_newer
from clerk_sync_users.invites import (
    INVITATION_CLEARED,
    WAITLIST_CLEARED,
    AppInvitation,
    WaitlistEntry,
    project_invitation,
    project_waitlist_entry,
    upsert_app_invitation,
    upsert_waitlist_entry,
)


class User(Model):
    """One Clerk user. `email` is the address whose id is `primary_email_address_id`."""

    model_config = {"collection": "users"}  # noqa: RUF012 - ODMantic reads a plain dict

    clerk_id: str = Field(unique=True)
    external_id: str | None = Field(default=None, index=True)
    email: str | None = None
    email_addresses: list[str] = Field(default_factory=list)
    phone: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    image_url: str | None = None
    public_metadata: dict[str, Any] = Field(default_factory=dict)
    private_metadata: dict[str, Any] = Field(default_factory=dict)
    unsafe_metadata: dict[str, Any] = Field(default_factory=dict)
    banned: bool = False
    locked: bool = False
    last_sign_in_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None


#: What a deletion leaves of a user: identifiers only. Every other field is emptied, so a
#: tombstone is the same whichever of the user's events arrived before the deletion.
SCRUBBED: dict[str, Any] = {
    "email": None,
    "email_addresses": [],
    "phone": None,
    "username": None,
    "first_name": None,
    "last_name": None,
    "image_url": None,
    "public_metadata": {},
    "private_metadata": {},
    "unsafe_metadata": {},
    "banned": False,
    "locked": False,
    "last_sign_in_at": None,
    "created_at": None,
    "updated_at": None,
}

plugin = Plugin("users", models=[User, AppInvitation, WaitlistEntry])
plugin.on("invitation.*")(upsert_app_invitation)
plugin.on("waitlistEntry.*")(upsert_waitlist_entry)


def _primary(items: object, primary_id: object, value_key: str) -> str | None:
    """The value of the entry whose `id` is `primary_id` (never simply the first entry)."""
    if not isinstance(items, list) or primary_id is None:
        return None
    for item in items:
        if isinstance(item, dict) and item.get("id") == primary_id:
            value = item.get(value_key)
            return value if isinstance(value, str) else None
    return None


def project_user(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a user from a Clerk `user` object; unknown fields are ignored."""
    addresses = data.get("email_addresses")
    return {
        "external_id": str_or_none(data.get("external_id")),
        "email": _primary(addresses, data.get("primary_email_address_id"), "email_address"),
        "email_addresses": [
            a["email_address"]
            for a in (addresses if isinstance(addresses, list) else [])
            if isinstance(a, dict) and isinstance(a.get("email_address"), str)
        ],
        "phone": _primary(
            data.get("phone_numbers"), data.get("primary_phone_number_id"), "phone_number"
        ),
        "username": str_or_none(data.get("username")),
        "first_name": str_or_none(data.get("first_name")),
        "last_name": str_or_none(data.get("last_name")),
        "image_url": str_or_none(data.get("image_url")),
        "public_metadata": dict_or_empty(data.get("public_metadata")),
        "private_metadata": dict_or_empty(data.get("private_metadata")),
        "unsafe_metadata": dict_or_empty(data.get("unsafe_metadata")),
        "banned": data.get("banned") is True,
        "locked": data.get("locked") is True,
        "last_sign_in_at": timestamp_from_clerk(data.get("last_sign_in_at")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


#: `clerk-sync reconcile` applies Backend API users, invitations and waitlist entries with the
#: same projections as webhooks (an invitation's status is in the object: no event implies it)
plugin.reconciler("users", collection="users", cleared=SCRUBBED)(project_user)
plugin.reconciler("invitations", collection="invitations", cleared=INVITATION_CLEARED)(
    project_invitation
)
plugin.reconciler("waitlist_entries", collection="waitlist_entries", cleared=WAITLIST_CLEARED)(
    project_waitlist_entry
)


@plugin.on("user.created", "user.updated")
async def upsert_user(event: Event, ctx: Context[None]) -> None:
    """Insert or update the user unless a newer version or a tombstone is stored."""
    clerk_id = event.data.get("id")
    if not isinstance(clerk_id, str):
        raise ValueError(f"{event.type} without a string 'id'")
    collection = ctx.engine.get_collection(User)
    updated_at = timestamp_from_clerk(event.data.get("updated_at"))
    result = await upsert_if_newer(collection, clerk_id, project_user(event.data), updated_at)
    if result == "stale":
        ctx.log.info("user_stale_event_skipped", clerk_id=clerk_id)


@plugin.on("user.deleted")
async def delete_user(event: Event, ctx: Context[None]) -> None:
    """Leave a scrubbed tombstone, found by `id`, else by `external_id`, else a logged no-op."""
    collection = ctx.engine.get_collection(User)
    clerk_id, external_id = (
        str_or_none(event.data.get("id")),
        str_or_none(event.data.get("external_id")),
    )
    if clerk_id is not None:
        # created when the deletion arrives first, so a late create or update changes nothing
        identity = {"external_id": external_id} if external_id is not None else {}
        changed = await tombstone(
            collection,
            {"clerk_id": clerk_id},
            deleted_at=event.timestamp,
            cleared=SCRUBBED,
            identity=identity,
            upsert=True,
        )
    elif external_id is not None:
        changed = await tombstone(
            collection,
            {"external_id": external_id},
            deleted_at=event.timestamp,
            cleared=SCRUBBED,
            many=True,
        )
    else:
        ctx.log.warning("user_deleted_without_id", reason="neither id nor external_id given")
        return
    ctx.log.info("user_deleted", clerk_id=clerk_id, changed=changed)
