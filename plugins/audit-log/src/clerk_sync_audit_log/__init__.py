"""clerk-sync plugin `audit-log`: an append-only trail of security-relevant changes.

Kinds of entries, one per change:

- `user.banned`, `user.unbanned`, `user.locked`, `user.unlocked`: from `user.created` and
  `user.updated`, when `banned` / `locked` differ from the newest earlier entry of that user
  (a user with no entry counts as neither banned nor locked);
- `user.deleted`;
- `membership.created`, `membership.deleted`, and `membership.role_changed` when an
  `organizationMembership.updated` carries a role other than the newest earlier one (or there is
  none on record);
- `session.revoked`.

Entries are keyed `<svix-id>:<kind>` and only ever inserted, so a redelivery or a second run of a
handler appends nothing. The trail is its own state: no other plugin's collection is read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from odmantic import Field, Model
from pydantic import BaseModel, field_validator
from pydantic import Field as SettingField
from pydantic_settings import NoDecode
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from clerk_sync import Context, Event, Plugin
from clerk_sync.events import timestamp_from_clerk

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

DEFAULT_COLLECTION = "audit_log"
#: The event types the plugin can audit; all of them unless EVENTS says otherwise.
AUDITED = (
    "user.created",
    "user.updated",
    "user.deleted",
    "session.revoked",
    "organizationMembership.created",
    "organizationMembership.updated",
    "organizationMembership.deleted",
)
#: user flag → (kind when it turns on, kind when it turns off)
FLAGS = {"banned": ("user.banned", "user.unbanned"), "locked": ("user.locked", "user.unlocked")}
ROLE_KINDS = ["membership.created", "membership.role_changed"]
INDEXES = [
    IndexModel(
        [("subject_id", ASCENDING), ("kind", ASCENDING), ("changed_at", DESCENDING)],
        name="subject_kind_changed_at",
    ),
    IndexModel([("user_id", ASCENDING), ("occurred_at", DESCENDING)], name="user_occurred_at"),
]


class AuditLogSettings(BaseModel):
    """Read from CLERK_SYNC_PLUGIN_AUDIT_LOG_<FIELD> (EVENTS, COLLECTION) when the plugin loads."""

    events: Annotated[tuple[str, ...], NoDecode] = AUDITED
    collection: str = SettingField(
        default=DEFAULT_COLLECTION, pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,119}$"
    )

    @field_validator("events", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item for item in value.replace(",", " ").split() if item)
        return value

    @field_validator("events")
    @classmethod
    def _audited(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [item for item in value if item not in AUDITED]
        if unknown:
            raise ValueError(f"cannot audit {', '.join(unknown)}; choose from {', '.join(AUDITED)}")
        return value


class AuditEntry(Model):
    """One security-relevant change. `key` is `<svix-id>:<kind>`, so each is stored once."""

    model_config = {  # noqa: RUF012 - ODMantic reads a plain dict
        "collection": DEFAULT_COLLECTION,
        "indexes": lambda: INDEXES,
    }

    key: str = Field(primary_field=True)
    kind: str
    svix_id: str
    event_type: str
    subject_id: str
    user_id: str | None = None
    organization_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    changed_at: datetime | None = None
    occurred_at: datetime | None = None
    recorded_at: datetime
    request: dict[str, str] | None = None


plugin = Plugin("audit-log", models=[AuditEntry], settings=AuditLogSettings)


def _trail(ctx: Context[AuditLogSettings]) -> AsyncIOMotorCollection[dict[str, Any]]:
    collection: AsyncIOMotorCollection[dict[str, Any]] = ctx.engine.database[
        ctx.settings.collection
    ]
    return collection


def _request(event: Event) -> dict[str, str] | None:
    attributes = event.raw.get("event_attributes")
    request = attributes.get("http_request") if isinstance(attributes, dict) else None
    if not isinstance(request, dict):
        return None
    return {
        k: v for k, v in request.items() if k in ("client_ip", "user_agent") and isinstance(v, str)
    }


def _changed_at(event: Event) -> datetime | None:
    """When the object changed: its `updated_at`, else the envelope timestamp."""
    if event.type.endswith(".deleted"):
        return event.timestamp
    return timestamp_from_clerk(event.data.get("updated_at")) or event.timestamp


async def _append(
    event: Event,
    ctx: Context[AuditLogSettings],
    kind: str,
    subject_id: str,
    **fields: Any,
) -> None:
    """Insert the entry `<svix-id>:<kind>` unless it is already there."""
    entry = AuditEntry(
        key=f"{event.svix_id}:{kind}",
        kind=kind,
        svix_id=event.svix_id,
        event_type=event.type,
        subject_id=subject_id,
        changed_at=_changed_at(event),
        occurred_at=event.timestamp,
        recorded_at=datetime.now(UTC),
        request=_request(event),
        **fields,
    )
    document = entry.model_dump_doc()
    key = document.pop("_id")
    trail = _trail(ctx)
    if ctx.settings.collection != DEFAULT_COLLECTION:  # the service indexes only the default
        await trail.create_indexes(INDEXES)
    try:
        await trail.update_one({"_id": key}, {"$setOnInsert": document}, upsert=True)
    except DuplicateKeyError:  # a concurrent insert of the same entry won: it is recorded
        return
    ctx.log.info("audit_entry", kind=kind, subject_id=subject_id)


async def _latest(
    event: Event, ctx: Context[AuditLogSettings], subject_id: str, kinds: list[str]
) -> dict[str, Any] | None:
    """The newest entry of `kinds` for the subject that changed before this event did."""
    query: dict[str, Any] = {
        "subject_id": subject_id,
        "kind": {"$in": kinds},
        "svix_id": {"$ne": event.svix_id},
    }
    changed_at = _changed_at(event)
    if changed_at is not None:
        query["changed_at"] = {"$lt": changed_at}
    return await _trail(ctx).find_one(query, sort=[("changed_at", DESCENDING)])


def _audited(event: Event, ctx: Context[AuditLogSettings]) -> bool:
    return event.type in ctx.settings.events


@plugin.on("user.created", "user.updated")
async def user_flags(event: Event, ctx: Context[AuditLogSettings]) -> None:
    """Record a ban, lock, or their lifting, compared with the user's newest earlier entry."""
    user_id = event.data.get("id")
    if not _audited(event, ctx) or not isinstance(user_id, str):
        return
    for flag, (on, off) in FLAGS.items():
        now = event.data.get(flag) is True
        before = await _latest(event, ctx, user_id, [on, off])
        was = before is not None and before["kind"] == on
        if now != was:
            details: dict[str, Any] = {flag: now}
            if flag == "locked" and now:
                details["lockout_expires_in_seconds"] = event.data.get("lockout_expires_in_seconds")
            await _append(event, ctx, on if now else off, user_id, user_id=user_id, details=details)


@plugin.on("user.deleted")
async def user_deleted(event: Event, ctx: Context[AuditLogSettings]) -> None:
    """Record a user's deletion (matched by `external_id` when Clerk sends no `id`)."""
    user_id, external_id = event.data.get("id"), event.data.get("external_id")
    subject = user_id if isinstance(user_id, str) else external_id
    if not _audited(event, ctx) or not isinstance(subject, str):
        return
    await _append(
        event,
        ctx,
        "user.deleted",
        subject,
        user_id=user_id if isinstance(user_id, str) else None,
        details={"external_id": external_id},
    )


@plugin.on("organizationMembership.*")
async def membership_changed(event: Event, ctx: Context[AuditLogSettings]) -> None:
    """Record a membership's creation, deletion, and every change of its role."""
    data = event.data
    membership_id, role = data.get("id"), data.get("role")
    if not _audited(event, ctx) or not isinstance(membership_id, str):
        return
    user = data.get("public_user_data")
    organization = data.get("organization")
    fields: dict[str, Any] = {
        "user_id": user.get("user_id") if isinstance(user, dict) else None,
        "organization_id": organization.get("id") if isinstance(organization, dict) else None,
    }
    action = event.type.rpartition(".")[2]
    if action != "updated":
        details = {"role": role}
        await _append(event, ctx, f"membership.{action}", membership_id, details=details, **fields)
        return
    before = await _latest(event, ctx, membership_id, ROLE_KINDS)
    previous = before["details"].get("role") if before is not None else None
    if previous != role:
        details = {"role": role, "previous_role": previous}
        await _append(
            event, ctx, "membership.role_changed", membership_id, details=details, **fields
        )


@plugin.on("session.revoked")
async def session_revoked(event: Event, ctx: Context[AuditLogSettings]) -> None:
    """Record a session ended by the application or the Backend API."""
    session_id, user_id = event.data.get("id"), event.data.get("user_id")
    if not _audited(event, ctx) or not isinstance(session_id, str):
        return
    details = {"client_id": event.data.get("client_id"), "status": event.data.get("status")}
    await _append(
        event,
        ctx,
        "session.revoked",
        session_id,
        user_id=user_id if isinstance(user_id, str) else None,
        details=details,
    )
