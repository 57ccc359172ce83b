"""The application's invitations and waitlist in the Backend API: one page of each listing, and
the re-check made for a stored document the listing did not contain.

Beside `client` (whose retry policy every call goes through): `GET /v1/invitations` (a bare JSON
array without a total) and `GET /v1/waitlist_entries`, oldest first. Neither has a single-object
endpoint, so the re-check filters the listing by id (`query=`). Without a status filter Clerk
leaves revoked invitations out of its listing, so the re-check of an invitation asks for
`status=revoked` too: that is how a revocation whose webhook was lost is found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clerk_backend_api.models import ListInvitationsQueryParamStatus

from clerk_sync.reconcile.catalog import ClerkClient, Page, as_json

if TYPE_CHECKING:
    from clerk_backend_api.models import Invitation

RESOURCES = ("invitations", "waitlist_entries")
#: a re-check by id matches one object; a few more in case `query` also matches e-mail addresses
_MATCHES = 10
_ORDER = "+created_at"  # new objects append at the end, so offsets stay valid


async def page(client: ClerkClient, resource: str, *, offset: int, limit: int) -> Page:
    """One page of `resource` and its `total_count` (None for invitations)."""
    sdk = client.sdk
    if resource == "invitations":
        invitations = await client.listing(
            "GET /v1/invitations",
            lambda: sdk.invitations.list_async(limit=limit, offset=offset, order_by=_ORDER),
        )
        return [as_json(item) for item in invitations], None
    if resource == "waitlist_entries":
        entries = await client.listing(
            "GET /v1/waitlist_entries",
            lambda: sdk.waitlist_entries.list_async(limit=limit, offset=offset, order_by=_ORDER),
        )
        return [as_json(item) for item in entries.data], entries.total_count
    raise ValueError(f"unknown resource {resource!r}")


async def current(
    client: ClerkClient, resource: str, doc: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The Clerk object a stored document projects, None when Clerk lists no such object."""
    clerk_id: str = doc["clerk_id"]
    if resource == "invitations":
        for status in (None, ListInvitationsQueryParamStatus.REVOKED):
            found = await _invitations(client, clerk_id, status)
            if found is not None:
                return found
        return None
    entries = await client.call(
        f"GET /v1/waitlist_entries?query={clerk_id}",
        lambda: client.sdk.waitlist_entries.list_async(query=clerk_id, limit=_MATCHES),
    )
    listed = [] if entries is None else [as_json(e) for e in entries.data]
    return next((e for e in listed if e.get("id") == clerk_id), None)


async def _invitations(
    client: ClerkClient, clerk_id: str, status: ListInvitationsQueryParamStatus | None
) -> dict[str, Any] | None:
    suffix = f"&status={status.value}" if status is not None else ""
    found: list[Invitation] | None = await client.call(
        f"GET /v1/invitations?query={clerk_id}{suffix}",
        lambda: client.sdk.invitations.list_async(query=clerk_id, status=status, limit=_MATCHES),
    )
    listed = [] if found is None else [as_json(i) for i in found]
    return next((i for i in listed if i.get("id") == clerk_id), None)
