"""The console's deliveries list and one delivery: filters, the keyset cursor, the query, and
what a page shows. Plain async functions over the motor database; no Quart.

The list is newest first in (`received_at`, `_id`) order, the tail of every index of
`clerk_sync.storage.indexes`, and a page starts after the last delivery of the page before
(`after`, an opaque cursor signed as the read API's are), so a page costs the same at any depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from clerk_sync.auth.cursor import decode_cursor, encode_cursor
from clerk_sync.errors import ApiError
from clerk_sync.storage.indexes import OBJECT_IDS, ORDER

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

    type Collection = AsyncIOMotorCollection[dict[str, Any]]

PAGE = 50
STATUSES = ("processing", "processed", "failed", "ignored", "rejected")
#: what a cursor of the list is signed for (the read API signs its own for an organization)
CURSOR_SCOPE = "console:deliveries"
MAX_TEXT = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: what the list reads of a delivery: never its payload
LISTED = {
    "status": 1,
    "type": 1,
    "received_at": 1,
    "last_attempt_at": 1,
    "attempts": 1,
    "handlers": 1,
    "redacted": 1,
}


def _bad(message: str) -> ApiError:
    return ApiError("filter_invalid", message)


def _moment(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 date or time; one without a zone is UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise _bad(f"'{name}' is not an ISO 8601 date or time: {value[:40]!r}") from error
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(name: str, value: str | None) -> str | None:
    value = (value or "").strip()
    if len(value) > MAX_TEXT:
        raise _bad(f"'{name}' is longer than {MAX_TEXT} characters")
    return value or None


@dataclass(frozen=True, slots=True)
class Filters:
    """The list's query parameters, checked: `status`, `type`, `since` (inclusive), `until`
    (exclusive), `q` (a svix-id or an object id) and `after` (the position, decoded)."""

    status: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    after: tuple[datetime, str] | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str], key: bytes) -> Filters:
        status = _text("status", args.get("status"))
        if status is not None and status not in STATUSES:
            raise _bad(f"'status' must be one of {', '.join(STATUSES)}")
        return cls(
            status=status,
            type=_text("type", args.get("type")),
            since=_moment("since", args.get("since")),
            until=_moment("until", args.get("until")),
            q=_text("q", args.get("q")),
            after=_position(key, args.get("after") or None),
        )

    def query(self) -> dict[str, Any]:
        """The MongoDB filter: each part is served by an index ending in the list order."""
        parts: list[dict[str, Any]] = []
        if self.status is not None:
            parts.append({"status": self.status})
        if self.type is not None:
            parts.append({"type": self.type})
        span = {"$gte": self.since, "$lt": self.until}
        span = {k: v for k, v in span.items() if v is not None}
        if span:
            parts.append({"received_at": span})
        if self.q is not None:
            parts.append({"$or": [{"_id": self.q}, *({f: self.q} for f in OBJECT_IDS)]})
        if self.after is not None:
            at, svix_id = self.after
            older = [{"received_at": {"$lt": at}}, {"received_at": at, "_id": {"$lt": svix_id}}]
            parts.append({"$or": older})
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def as_args(self) -> dict[str, str]:
        """The filters as query parameters (no position), for links and the form."""
        values = {
            "status": self.status,
            "type": self.type,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "q": self.q,
        }
        return {k: v for k, v in values.items() if v is not None}


def _millis(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(milliseconds=1)


def cursor_after(key: bytes, document: Mapping[str, Any]) -> str:
    """The cursor of the page that starts after `document`."""
    return encode_cursor(key, CURSOR_SCOPE, f"{_millis(document['received_at'])} {document['_id']}")


def _position(key: bytes, value: str | None) -> tuple[datetime, str] | None:
    decoded = decode_cursor(key, CURSOR_SCOPE, value)
    if decoded is None:
        return None
    millis, _, svix_id = decoded.partition(" ")
    if not millis.isdigit() or not svix_id:
        raise ApiError("cursor_invalid", "'after' is not a cursor this console handed out")
    return EPOCH + timedelta(milliseconds=int(millis)), svix_id


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


async def list_page(events: Collection, filters: Filters, key: bytes, limit: int = PAGE) -> Page:
    """One page of deliveries, newest first, and the cursor of the next (None on the last)."""
    cursor = events.find(filters.query(), LISTED).sort(list(ORDER)).limit(limit + 1)
    found = await cursor.to_list(length=limit + 1)
    rows, more = found[:limit], len(found) > limit
    return Page(rows, cursor_after(key, rows[-1]) if more else None)
