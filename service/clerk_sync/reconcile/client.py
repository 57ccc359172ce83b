"""Clerk's Backend API through the official SDK (`clerk-backend-api`), with retries of our own.

The SDK's own retries are switched off: 429 (`Retry-After`), 5xx and connection errors are
handled here so that a run can give up, keep its checkpoint and report why. Answers come back as
the SDK's models and are dumped to the JSON shape webhooks deliver, which is what the plugins'
projections take. A 404 on a single object answers None; on a listing it is an error.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import httpx
from clerk_backend_api import Clerk
from clerk_backend_api.models import (
    ClerkBaseError,
    NoResponseError,
    OrganizationMemberships,
    Organizations,
)
from clerk_backend_api.utils import BackoffStrategy, RetryConfig

from clerk_sync.reconcile import billing, catalog, signups

if TYPE_CHECKING:
    from pydantic import BaseModel

type Sleep = Callable[[float], Awaitable[None]]
type Page = tuple[list[dict[str, Any]], int | None]

# clerk-backend-api 7.0.0 reads every field of a request model when building the query string,
# deprecated ones included (GetUserListRequest.last_active_at_since): a DeprecationWarning on every
# users list that is the SDK's business, not the operator's
warnings.filterwarnings(
    "ignore", category=DeprecationWarning, module=r"clerk_backend_api\.utils\.queryparams"
)
# and its OrganizationDomain model builds a deprecated class (the `verification` alias) whenever
# a domain is read
warnings.filterwarnings(
    "ignore",
    message=r"warning: \*\* DEPRECATED \*\*",
    category=DeprecationWarning,
    module=r"pydantic\.main",
)
MAX_PAGE_SIZE = 500


class ReconcileError(Exception):
    """The Backend API could not be listed completely (after retries)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait: 5xx and transport errors back off exponentially,
    429 waits `Retry-After` (else the same backoff), each with its own attempt budget."""

    max_attempts: int = 5
    max_rate_limited: int = 10
    base_delay: float = 0.5
    max_delay: float = 60.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class _Attempts:
    """The attempt budgets of one call: failures (5xx, transport) and rate limits (429)."""

    def __init__(self, what: str, retry: RetryPolicy) -> None:
        self.what, self.retry = what, retry
        self.failures = self.limited = 0

    def failed(self, reason: str, error: Exception) -> int:
        """Count a failure; raise ReconcileError once the budget is spent."""
        self.failures += 1
        if self.failures >= self.retry.max_attempts:
            raise ReconcileError(f"{self.what}: {reason}") from error
        return self.failures

    def rate_limited(self, error: Exception) -> int:
        self.limited += 1
        if self.limited >= self.retry.max_rate_limited:
            raise ReconcileError(
                f"{self.what}: still rate limited after {self.limited} tries"
            ) from error
        return self.limited


class ClerkClient:
    """The Backend API calls reconcile makes, each with the retry policy."""

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._sdk = Clerk(
            bearer_auth=secret_key,
            server_url=base_url.rstrip("/") + "/v1",
            async_client=self._http,
            retry_config=RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), False),
            timeout_ms=int(timeout * 1000),
        )
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.requests = 0
        self.rate_limited = 0

    @property
    def sdk(self) -> Clerk:
        """The SDK, for the listings of `catalog`, `signups` and `billing`."""
        return self._sdk

    async def aclose(self) -> None:
        await self._http.aclose()

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography

    async def call[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T | None:
        """Run one SDK call with the retry policy; None on 404; raises ReconcileError."""
        attempts = _Attempts(what, self.retry)
        while True:
            self.requests += 1
            try:
                return await operation()
            except (httpx.TransportError, NoResponseError) as error:
                await self._sleep(self._backoff(attempts.failed(type(error).__name__, error)))
            except ClerkBaseError as error:
                if error.status_code == 404:
                    return None
                await self._sleep(self._wait_after(error, attempts))

    def _wait_after(self, error: ClerkBaseError, attempts: _Attempts) -> float:
        """How long to wait before retrying an HTTP error; raises when it is not retried."""
        status = error.status_code
        if 200 <= status < 300:  # ResponseValidationError: the SDK could not read it
            reason = str(error).splitlines()[0][:300]
            raise ReconcileError(f"{attempts.what}: unreadable answer: {reason}") from error
        if status == 429:
            self.rate_limited += 1
            limited = attempts.rate_limited(error)
            wait = retry_after_seconds(error.headers.get("Retry-After"))
            return min(self._backoff(limited) if wait is None else wait, self.retry.max_delay)
        if status >= 500:
            tries = attempts.failures + 1
            return self._backoff(attempts.failed(f"HTTP {status} after {tries} tries", error))
        raise ReconcileError(f"{attempts.what}: HTTP {status}") from error

    async def listing[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """A list call: a 404 means a wrong `CLERK_API_URL`, never an empty list (an empty
        listing taken as complete would tombstone everything)."""
        listed = await self.call(what, operation)
        if listed is None:
            raise ReconcileError(f"{what}: HTTP 404")
        return listed

    async def page(self, resource: str, *, offset: int, limit: int) -> Page:
        """One page of a resource's list, oldest first: the objects and `total_count` when the
        endpoint gives one (the users list does not)."""
        order = "+created_at"  # new objects append at the end, so offsets stay valid
        if resource in catalog.RESOURCES:
            return await catalog.page(self, resource, offset=offset, limit=limit)
        if resource in signups.RESOURCES:
            return await signups.page(self, resource, offset=offset, limit=limit)
        if resource in billing.RESOURCES:
            return await billing.page(self, resource, offset=offset, limit=limit)
        listed: Organizations | OrganizationMemberships
        if resource == "users":
            users = await self.listing(
                "GET /v1/users",
                lambda: self._sdk.users.list_async(
                    request={"limit": limit, "offset": offset, "order_by": order}
                ),
            )
            return [json_of(user) for user in users], None
        if resource == "organizations":
            listed = await self.listing(
                "GET /v1/organizations",
                lambda: self._sdk.organizations.list_async(
                    limit=limit, offset=offset, order_by=order
                ),
            )
        elif resource == "memberships":
            listed = await self.listing(
                "GET /v1/organization_memberships",
                lambda: self._sdk.users.get_instance_organization_memberships_async(
                    limit=limit, offset=offset, order_by=order
                ),
            )
        else:
            raise ValueError(f"unknown resource {resource!r}")
        return [json_of(item) for item in listed.data], listed.total_count

    async def current(self, resource: str, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """The Clerk object a stored document projects, None when Clerk says it is gone."""
        if resource == "users":
            return await self.user(doc["clerk_id"])
        if resource == "organizations":
            return await self.organization(doc["clerk_id"])
        if resource in catalog.RESOURCES:
            return await catalog.current(self, resource, doc)
        if resource in signups.RESOURCES:
            return await signups.current(self, resource, doc)
        if resource in billing.RESOURCES:
            return await billing.current(self, resource, doc)
        organization_id, user_id = doc.get("organization_id"), doc.get("user_id")
        if not isinstance(organization_id, str) or not isinstance(user_id, str):
            return None
        return await self.membership(organization_id, user_id, doc["clerk_id"])

    async def user(self, user_id: str) -> dict[str, Any] | None:
        found = await self.call(
            f"GET /v1/users/{user_id}", lambda: self._sdk.users.get_async(user_id=user_id)
        )
        return None if found is None else json_of(found)

    async def organization(self, organization_id: str) -> dict[str, Any] | None:
        found = await self.call(
            f"GET /v1/organizations/{organization_id}",
            lambda: self._sdk.organizations.get_async(organization_id=organization_id),
        )
        return None if found is None else json_of(found)

    async def membership(
        self, organization_id: str, user_id: str, membership_id: str
    ) -> dict[str, Any] | None:
        """Memberships have no single-object endpoint: list the organization's for that user."""
        found = await self.call(
            f"GET /v1/organizations/{organization_id}/memberships",
            lambda: self._sdk.organization_memberships.list_async(
                organization_id=organization_id, user_id=[user_id], limit=MAX_PAGE_SIZE
            ),
        )
        items = [] if found is None else [json_of(m) for m in found.data]
        return next((item for item in items if item.get("id") == membership_id), None)


def json_of(model: BaseModel) -> dict[str, Any]:
    """An SDK model as the JSON object Clerk sent (the shape webhooks deliver)."""
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return dumped
