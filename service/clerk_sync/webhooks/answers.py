"""What `POST /webhooks/clerk` answers: one pydantic model per body, and the `Answer` sent.

The models shape every answer the receiver gives and are the webhook's part of `/openapi.json`
(`RESPONSES`), so the document cannot drift from the answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class Error(_Body):
    """A delivery refused before it was recorded."""

    error: str


class DeliveryAccepted(_Body):
    """Processed, a duplicate of a processed delivery, or of a type no plugin handles."""

    status: Literal["processed", "duplicate", "ignored"]
    svix_id: str


class DeliveryRejected(_Body):
    """Signed, but not a Clerk envelope: recorded as rejected, never retried."""

    status: Literal["rejected"]
    svix_id: str
    reason: str


class DeliveryBusy(_Body):
    """Another request holds this delivery's lease."""

    error: str
    svix_id: str


class DeliveryFailed(_Body):
    """A handler failed (`status: failed`), or an internal error; Svix retries."""

    svix_id: str
    error: str
    status: Literal["failed"] | None = None


class UnknownDelivery(_Body):
    """`clerk-sync events replay` of a svix-id that was never recorded (not an HTTP answer)."""

    error: str
    svix_id: str


class RedactedDelivery(_Body):
    """`clerk-sync events replay` of a delivery stored redacted (not an HTTP answer): its secrets
    were never stored, so only Svix can resend it."""

    error: str = "delivery was stored redacted (secrets removed): only Svix can resend it"
    svix_id: str


class Unavailable(_Body):
    """MongoDB unreachable, or no signing secret configured."""

    error: str
    svix_id: str | None = None


#: Every status the webhook answers with: what it means and the model of its body.
RESPONSES: dict[int, tuple[str, type[BaseModel]]] = {
    200: ("Processed, a duplicate, or of a type no plugin handles.", DeliveryAccepted),
    202: ("Signed, but not a Clerk envelope: recorded as rejected.", DeliveryRejected),
    400: ("Svix headers missing or malformed.", Error),
    401: ("Signature or timestamp did not verify.", Error),
    408: ("The whole body did not arrive within CLERK_SYNC_BODY_TIMEOUT seconds.", Error),
    409: ("Being processed right now by another request.", DeliveryBusy),
    413: ("Body larger than CLERK_SYNC_MAX_BODY_BYTES.", Error),
    500: (
        "A handler failed or timed out (`status: failed`), or an internal error; Svix retries.",
        DeliveryFailed,
    ),
    503: (
        "MongoDB unreachable, no signing secret configured, or the bodies being read "
        "at once fill CLERK_SYNC_BODY_BUFFER_BYTES; with Retry-After.",
        Unavailable,
    ),
}


@dataclass(frozen=True, slots=True)
class Answer:
    """What the HTTP layer sends back: status, a small JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    outcome: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, status: int, body: BaseModel, outcome: str, headers: dict[str, str] | None = None
    ) -> Answer:
        """An answer whose body is one of the models above (unset optional fields left out)."""
        return cls(status, body.model_dump(exclude_none=True), outcome, headers or {})
