"""Secrets in deliveries: what of an `email.created` or `sms.created` is never stored.

Clerk's e-mail and SMS events carry one-time codes in their bodies, subjects and template data.
Handlers of the arriving delivery see the whole event; what `webhook_events` keeps is redacted
before it is written (DESIGN.md, "Secrets in deliveries"), and `redact_stored` redacts what an
earlier version stored, once, at start. Below the delivery path in the layers: plain functions
over the envelope and one update command, no knowledge of plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

#: The event types whose stored delivery is redacted.
SECRET_TYPES = frozenset({"email.created", "sms.created"})
#: The fields of `data` replaced: the message in every form and the template data (which holds
#: `otp_code`). `subject` too: Clerk's verification e-mails name the code in it.
SECRET_FIELDS = ("body", "body_plain", "message", "data", "subject")
REDACTED = "[redacted]"


def is_secret(event_type: object) -> bool:
    """Whether deliveries of `event_type` are stored redacted."""
    return event_type in SECRET_TYPES


def redact(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the envelope with the secret fields of its `data` replaced (where present);
    the envelope given is left as it is, for the handlers."""
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        return dict(envelope)
    redacted = {k: (REDACTED if k in SECRET_FIELDS else v) for k, v in data.items()}
    return {**envelope, "data": redacted}


def _redacting_pipeline() -> list[dict[str, Any]]:
    """The update of a stored delivery: each secret field that is present replaced, a payload
    kept as raw text (it did not parse as an envelope) replaced whole, `redacted: true`."""
    fields = {
        f"payload.data.{name}": {
            "$cond": [
                {"$eq": [{"$type": f"$payload.data.{name}"}, "missing"]},
                "$$REMOVE",
                {"$literal": REDACTED},
            ]
        }
        for name in SECRET_FIELDS
    }
    return [
        {
            "$set": {
                "payload": {
                    "$cond": [
                        {"$eq": [{"$type": "$payload.data"}, "object"]},
                        "$payload",
                        {"$literal": REDACTED},
                    ]
                }
            }
        },
        {"$set": fields},
        {"$set": {"redacted": True}},
    ]


async def redact_stored(collection: AsyncIOMotorCollection[dict[str, Any]]) -> int:
    """Redact every stored delivery of a secret type not yet redacted; how many changed.

    Idempotent: a redacted delivery is not matched again, and a second run changes nothing."""
    query = {"type": {"$in": sorted(SECRET_TYPES)}, "redacted": {"$ne": True}}
    result = await collection.update_many(query, _redacting_pipeline())
    return result.modified_count


def secret_body(body: bytes) -> bool:
    """Whether a signed body that is not a storable envelope still names a secret type, so that
    its raw text is not kept either."""
    import orjson

    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and is_secret(parsed.get("type"))
