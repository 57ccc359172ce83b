"""The instance's roles, permissions and organization domains in the Backend API: one page of
each listing, and the single-object re-check made before a document is tombstoned.

Beside `client` (whose retry policy every call goes through): `GET /v1/organization_roles`,
`/v1/organization_permissions` and `/v1/organization_domains`, oldest first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from clerk_backend_api import Clerk
    from clerk_backend_api.models import OrganizationDomains, Permissions, Roles
    from pydantic import BaseModel

type Page = tuple[list[dict[str, Any]], int | None]


class ClerkClient(Protocol):
    """What these calls need of `clerk_sync.reconcile.client.ClerkClient` (which imports this
    module, so it is not imported back)."""

    @property
    def sdk(self) -> Clerk: ...

    async def call[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T | None: ...

    async def listing[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T: ...


RESOURCES = ("roles", "permissions", "domains")
#: the most domains one organization's re-check reads
MAX_DOMAINS = 500
_ORDER = "+created_at"  # new objects append at the end, so offsets stay valid


def as_json(model: BaseModel) -> dict[str, Any]:
    """An SDK model as the JSON object Clerk sent (`client.json_of`, which cannot be imported
    here)."""
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return dumped


async def page(client: ClerkClient, resource: str, *, offset: int, limit: int) -> Page:
    """One page of `resource` and its `total_count`."""
    sdk = client.sdk
    listed: Roles | Permissions | OrganizationDomains
    if resource == "roles":
        listed = await client.listing(
            "GET /v1/organization_roles",
            lambda: sdk.organization_roles.list_async(limit=limit, offset=offset, order_by=_ORDER),
        )
    elif resource == "permissions":
        listed = await client.listing(
            "GET /v1/organization_permissions",
            lambda: sdk.organization_permissions.list_async(
                limit=limit, offset=offset, order_by=_ORDER
            ),
        )
    elif resource == "domains":
        listed = await client.listing(
            "GET /v1/organization_domains",
            lambda: sdk.organization_domains.list_all_async(
                limit=limit, offset=offset, order_by=_ORDER
            ),
        )
    else:
        raise ValueError(f"unknown resource {resource!r}")
    return [as_json(item) for item in listed.data], listed.total_count


async def current(
    client: ClerkClient, resource: str, doc: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The Clerk object a stored document projects, None when Clerk says it is gone."""
    clerk_id: str = doc["clerk_id"]
    sdk = client.sdk
    if resource == "roles":
        role = await client.call(
            f"GET /v1/organization_roles/{clerk_id}",
            lambda: sdk.organization_roles.get_async(organization_role_id=clerk_id),
        )
        return None if role is None else as_json(role)
    if resource == "permissions":
        permission = await client.call(
            f"GET /v1/organization_permissions/{clerk_id}",
            lambda: sdk.organization_permissions.get_async(permission_id=clerk_id),
        )
        return None if permission is None else as_json(permission)
    return await _domain(client, doc)


async def _domain(client: ClerkClient, doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """Domains have no single-object endpoint: list the organization's and look for it."""
    organization_id = doc.get("organization_id")
    if not isinstance(organization_id, str):
        return None
    found = await client.call(
        f"GET /v1/organization_domains?organization_id={organization_id}",
        lambda: client.sdk.organization_domains.list_all_async(
            organization_id=organization_id, limit=MAX_DOMAINS
        ),
    )
    domains = [] if found is None else [as_json(d) for d in found.data]
    return next((d for d in domains if d.get("id") == doc["clerk_id"]), None)
