"""Clerk event types, the envelope, and the `Event` handed to plugin handlers."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

_GROUPS: dict[str, tuple[str, ...]] = {
    "user": ("created", "updated", "deleted"),
    "session": ("created", "ended", "removed", "revoked", "pending"),
    "email": ("created",),
    "sms": ("created",),
    "organization": ("created", "updated", "deleted"),
    "organizationDomain": ("created", "updated", "deleted"),
    "organizationMembership": ("created", "updated", "deleted"),
    "organizationInvitation": ("created", "accepted", "revoked"),
    "role": ("created", "updated", "deleted"),
    "permission": ("created", "updated", "deleted"),
    "waitlistEntry": ("created", "updated"),
    "paymentAttempt": ("created", "updated"),
    "subscription": ("created", "updated", "active", "pastDue"),
    "subscriptionItem": (
        "created",
        "updated",
        "active",
        "canceled",
        "upcoming",
        "ended",
        "abandoned",
        "incomplete",
        "pastDue",
        "freeTrialEnding",
    ),
    "invitation": ("created", "accepted", "revoked"),
}

#: Every Clerk event type clerk-sync knows (../shared/clerk/FACTS.md section 1).
EVENT_TYPES: frozenset[str] = frozenset(
    f"{group}.{action}" for group, actions in _GROUPS.items() for action in actions
)
EVENT_GROUPS: frozenset[str] = frozenset(_GROUPS)


def metric_event_type(event_type: str | None) -> str:
    """The `event_type` label value: a known type, else `unknown` (keeps label sets bounded)."""
    return event_type if event_type in EVENT_TYPES else "unknown"


def check_subscription(pattern: str) -> str | None:
    """Return None when `pattern` names a known type or `group.*`, else an error message."""
    if pattern in EVENT_TYPES:
        return None
    if pattern.endswith(".*") and pattern[:-2] in EVENT_GROUPS:
        return None
    candidates = sorted(EVENT_TYPES | {f"{group}.*" for group in EVENT_GROUPS})
    close = difflib.get_close_matches(pattern, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown event type {pattern!r}{hint}"


def matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription pattern (`user.created` or `user.*`) covers `event_type`."""
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def timestamp_from_clerk(value: object) -> datetime | None:
    """Convert a Clerk epoch value to a UTC datetime; values below 1e12 are seconds, else ms."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = value if value < 1e12 else value / 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


class NotAnEnvelope(ValueError):
    """The signed body is not JSON, or not a Clerk envelope (`type` string, `data` object)."""


#: MongoDB stores documents nested at most 100 levels deep; the delivery record holds the
#: envelope one level down, so an envelope may nest 99 levels (itself counted as one).
MAX_ENVELOPE_DEPTH = 99


def nesting_depth(value: object) -> int:
    """How many objects and arrays deep `value` nests (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def parse_envelope(body: bytes) -> dict[str, Any]:
    """Parse the raw body as a Clerk envelope, or raise NotAnEnvelope saying what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise NotAnEnvelope(f"body is not JSON: {error.msg}") from error
    # a body with fewer brackets than the limit cannot nest deeper; skip the walk (the common case)
    if body.count(b"{") + body.count(b"[") > MAX_ENVELOPE_DEPTH and (
        nesting_depth(payload) > MAX_ENVELOPE_DEPTH
    ):
        raise NotAnEnvelope(
            f"JSON nests deeper than {MAX_ENVELOPE_DEPTH} levels, more than MongoDB can store"
        )
    if not isinstance(payload, dict):
        raise NotAnEnvelope("body is not a JSON object")
    if not isinstance(payload.get("type"), str):
        raise NotAnEnvelope("envelope has no string 'type'")
    if not isinstance(payload.get("data"), dict):
        raise NotAnEnvelope("envelope has no object 'data'")
    return payload


@dataclass(frozen=True, slots=True)
class Event:
    """One Clerk event as a handler sees it. Attributes are public API and only ever grow."""

    type: str
    data: dict[str, Any]
    timestamp: datetime | None
    instance_id: str | None
    svix_id: str
    object: str = "event"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any], svix_id: str) -> Event:
        instance_id = envelope.get("instance_id")
        return cls(
            type=envelope["type"],
            data=envelope["data"],
            timestamp=timestamp_from_clerk(envelope.get("timestamp")),
            instance_id=instance_id if isinstance(instance_id, str) else None,
            svix_id=svix_id,
            raw=envelope,
        )
