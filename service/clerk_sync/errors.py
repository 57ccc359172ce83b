"""The one error hierarchy of clerk-sync; the HTTP layer maps these to answers in one place."""

from __future__ import annotations


class ClerkSyncError(Exception):
    """Base of every error clerk-sync raises on purpose."""


class ConfigError(ClerkSyncError):
    """Bad configuration: start-up stops with one line naming the variable."""


class PluginError(ClerkSyncError):
    """A plugin could not be defined, loaded or validated; the message names the plugin."""


class DeliveryError(ClerkSyncError):
    """A webhook delivery cannot be accepted; carries the HTTP status and metric outcome."""

    status: int = 400
    outcome: str = "bad_request"
    #: seconds a sender should wait before retrying (a `Retry-After` header), None for no header
    retry_after: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The answer's extra headers: `Retry-After` for a refusal that a retry can outlive."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class BadRequest(DeliveryError):
    """Svix headers missing or malformed."""


class PayloadTooLarge(DeliveryError):
    """The body is larger than CLERK_SYNC_MAX_BODY_BYTES."""

    status = 413
    outcome = "too_large"


class InvalidSignature(DeliveryError):
    """No configured secret produced a matching signature, or the timestamp is out of tolerance."""

    status = 401
    outcome = "invalid_signature"


class NotConfigured(DeliveryError):
    """No signing secret is configured, so no delivery can be verified (`/readyz` fails too)."""

    status = 503
    outcome = "unavailable"
    retry_after = 60


class BodyTimeout(DeliveryError):
    """The whole body did not arrive within CLERK_SYNC_BODY_TIMEOUT seconds."""

    status = 408
    outcome = "bad_request"


class Busy(DeliveryError):
    """The webhook bodies being read already fill CLERK_SYNC_BODY_BUFFER_BYTES."""

    status = 503
    outcome = "unavailable"
    retry_after = 1


class StoreUnavailable(ClerkSyncError):
    """MongoDB cannot be reached; deliveries are refused with 503 and Retry-After."""


class ApiError(ClerkSyncError):
    """A read API request cannot be answered; carries the HTTP status and a reason code."""

    status: int = 400

    def __init__(self, reason: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        if status is not None:
            self.status = status


class AuthError(ApiError):
    """The session token is missing or does not verify: the caller counts as signed out."""

    status = 401
