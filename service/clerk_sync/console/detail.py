"""One delivery as the console shows it: the record, its handlers' outcomes, whether it can be
replayed (and why not), and the documents the plugins keep for its object. No Quart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from clerk_sync.console.shown import outcomes, pretty, stamp, without_private
from clerk_sync.webhooks.replaying import replayable

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase
    from odmantic import Model

    type Database = AsyncIOMotorDatabase[dict[str, Any]]

#: why a redacted delivery has no Replay button
REDACTED_REASON = (
    "This delivery is stored redacted (it carried a one-time code), so its payload is not "
    "here to run the handlers with: only Svix can resend it (Svix dashboard, Resend)."
)


@dataclass(frozen=True, slots=True)
class Touched:
    """A document a plugin keeps for the delivery's object (`private_metadata` left out)."""

    collection: str
    clerk_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Delivery:
    svix_id: str
    status: str
    type: str | None
    redacted: bool
    received_at: str
    last_attempt_at: str
    attempts: int
    lease_until: str
    error: str | None
    object_id: str | None
    payload: str
    handlers: list[dict[str, Any]]
    can_replay: bool
    why_not: str | None
    touched: list[Touched] = field(default_factory=list)


def object_id(document: dict[str, Any]) -> str | None:
    """`data.id` of a stored envelope, None for a payload that is not one."""
    payload = document.get("payload")
    data = payload.get("data") if isinstance(payload, dict) else None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def _why_not(document: dict[str, Any], now: datetime) -> str | None:
    if document.get("redacted") is True:
        return REDACTED_REASON
    if replayable(document, now):
        return None
    if document.get("status") == "processing":
        return "An attempt holds this delivery now (its lease has not expired)."
    status = document.get("status")
    return f"Only a failed or stale processing delivery is replayed; this one is {status}."


def shaped(document: dict[str, Any], now: datetime) -> Delivery:
    """The record as the page shows it."""
    why_not = _why_not(document, now)
    return Delivery(
        svix_id=str(document["_id"]),
        status=str(document.get("status") or "-"),
        type=document.get("type"),
        redacted=document.get("redacted") is True,
        received_at=stamp(document.get("received_at")),
        last_attempt_at=stamp(document.get("last_attempt_at")),
        attempts=int(document.get("attempts") or 0),
        lease_until=stamp(document.get("lease_until")),
        error=document.get("error"),
        object_id=object_id(document),
        payload=pretty(document.get("payload")),
        handlers=outcomes(document),
        can_replay=why_not is None,
        why_not=why_not,
    )


async def touched(db: Database, models: Iterable[type[Model]], clerk_id: str) -> list[Touched]:
    """The documents with `clerk_id` in the collections of the plugins' models that have one."""
    found: list[Touched] = []
    names = sorted(
        {m.__collection__ for m in models if "clerk_id" in getattr(m, "__odm_fields__", {})}
    )
    for name in names:
        document = await db[name].find_one({"clerk_id": clerk_id}, projection={"_id": 0})
        if document is not None:
            found.append(Touched(name, clerk_id, pretty(without_private(document))))
    return found
