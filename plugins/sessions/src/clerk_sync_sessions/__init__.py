"""Built-in plugin `sessions`: Clerk sessions projected into the `sessions` collection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from odmantic import Field, Model

from clerk_sync import Context, Event, Plugin
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import str_or_none, upsert_if_newer


class Session(Model):
    """One Clerk session. Sessions are never deleted in Clerk, so `deleted` stays false."""

    model_config = {"collection": "sessions"}  # noqa: RUF012 - ODMantic reads a plain dict

    clerk_id: str = Field(unique=True)
    user_id: str | None = Field(default=None, index=True)
    client_id: str | None = None
    status: str | None = None
    last_active_at: datetime | None = None
    expire_at: datetime | None = None
    abandon_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    actor: dict[str, Any] | None = None
    deleted: bool = False


#: The status an event implies when the payload carries none (FACTS.md section 3.3).
STATUS_OF_EVENT = {
    "session.created": "active",
    "session.pending": "pending",
    "session.ended": "ended",
    "session.removed": "removed",
    "session.revoked": "revoked",
}

plugin = Plugin("sessions", models=[Session])


def project_session(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a session from a Clerk `session` object; unknown fields are ignored."""
    actor = data.get("actor")
    return {
        "user_id": str_or_none(data.get("user_id")),
        "client_id": str_or_none(data.get("client_id")),
        "status": str_or_none(data.get("status")) or STATUS_OF_EVENT.get(event_type),
        "last_active_at": timestamp_from_clerk(data.get("last_active_at")),
        "expire_at": timestamp_from_clerk(data.get("expire_at")),
        "abandon_at": timestamp_from_clerk(data.get("abandon_at")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
        "actor": actor if isinstance(actor, dict) else None,
    }


@plugin.on("session.*")
async def upsert_session(event: Event, ctx: Context[None]) -> None:
    """Insert or update the session unless a newer version is stored."""
    clerk_id = event.data.get("id")
    if not isinstance(clerk_id, str):
        raise ValueError(f"{event.type} without a string 'id'")
    collection = ctx.engine.get_collection(Session)
    updated_at = timestamp_from_clerk(event.data.get("updated_at"))
    fields = project_session(event.type, event.data)
    result = await upsert_if_newer(collection, clerk_id, fields, updated_at)
    if result == "stale":
        ctx.log.info("session_stale_event_skipped", clerk_id=clerk_id)
