"""The handlers of roles, permissions and organization domains (registered in `__init__`).

Each follows the projection rules: `upsert_if_newer` on `updated_at`, a tombstone for a
deletion (created when the deletion arrives first, so a late create changes nothing), and a
domain of a deleted organization is tombstoned whichever of the two arrives first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from odmantic import Model

from clerk_sync import Context, Event
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import Applied, str_or_none, tombstone, upsert_if_newer
from clerk_sync_organizations.access import (
    DOMAIN_CLEARED,
    PERMISSION_CLEARED,
    ROLE_CLEARED,
    domain_organization,
    project_domain,
    project_permission,
    project_role,
)
from clerk_sync_organizations.models import Organization, OrganizationDomain, Permission, Role


def required_id(event: Event) -> str:
    clerk_id = event.data.get("id")
    if not isinstance(clerk_id, str):
        raise ValueError(f"{event.type} without a string 'id'")
    return clerk_id


async def upsert(
    event: Event,
    ctx: Context[None],
    model: type[Model],
    project: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[str, Applied]:
    """Write the object unless a newer version or a tombstone is stored; its id and whether
    the write applied."""
    clerk_id = required_id(event)
    updated_at = timestamp_from_clerk(event.data.get("updated_at"))
    collection = ctx.engine.get_collection(model)
    result = await upsert_if_newer(collection, clerk_id, project(event.data), updated_at)
    if result == "stale":
        ctx.log.info("stale_event_skipped", event_type=event.type, clerk_id=clerk_id)
    return clerk_id, result


async def delete(
    event: Event,
    ctx: Context[None],
    model: type[Model],
    cleared: Mapping[str, Any],
    identity: Mapping[str, Any] | None = None,
) -> None:
    """Leave a tombstone dated by the envelope, whether or not the object was seen before."""
    clerk_id = required_id(event)
    await tombstone(
        ctx.engine.get_collection(model),
        {"clerk_id": clerk_id},
        deleted_at=event.timestamp,
        cleared=cleared,
        identity=identity,
        upsert=True,
    )
    ctx.log.info("tombstoned", event_type=event.type, clerk_id=clerk_id)


async def upsert_role(event: Event, ctx: Context[None]) -> None:
    """`role.created`, `role.updated`: the role with the keys of its permissions."""
    await upsert(event, ctx, Role, project_role)


async def delete_role(event: Event, ctx: Context[None]) -> None:
    await delete(event, ctx, Role, ROLE_CLEARED)


async def upsert_permission(event: Event, ctx: Context[None]) -> None:
    await upsert(event, ctx, Permission, project_permission)


async def delete_permission(event: Event, ctx: Context[None]) -> None:
    await delete(event, ctx, Permission, PERMISSION_CLEARED)


async def upsert_domain(event: Event, ctx: Context[None]) -> None:
    """The domain; tombstoned at once when its organization already is.

    `organizationDomain.deleted` sends only the id, so a deletion that arrived first left a
    tombstone without `organization_id`: the late create fills it in (nothing else), and the
    tombstone is the same as when the events came in order."""
    clerk_id, result = await upsert(event, ctx, OrganizationDomain, project_domain)
    organization_id = domain_organization(event.data)
    if result == "stale" and organization_id is not None:
        await ctx.engine.get_collection(OrganizationDomain).update_one(
            {"clerk_id": clerk_id, "deleted": True, "organization_id": None},
            {"$set": {"organization_id": organization_id}},
        )
    await follow_organization(ctx, clerk_id, organization_id)


async def delete_domain(event: Event, ctx: Context[None]) -> None:
    """`organizationDomain.deleted` sends only the id; the organization is kept if known."""
    organization_id = str_or_none(event.data.get("organization_id"))
    identity = {"organization_id": organization_id} if organization_id else None
    await delete(event, ctx, OrganizationDomain, DOMAIN_CLEARED, identity)


async def follow_organization(
    ctx: Context[None], clerk_id: str, organization_id: str | None
) -> None:
    """Tombstone the domain, dated like its organization's tombstone, when there is one.

    The domain is written before the organization is read, and `organization.deleted` writes
    the organization before it marks domains, so of two concurrent deliveries at least one sees
    the other's write (as for memberships)."""
    if organization_id is None:
        return
    parent = await ctx.engine.get_collection(Organization).find_one(
        {"clerk_id": organization_id, "deleted": True}, {"deleted_at": 1}
    )
    if parent is not None:
        await tombstone(
            ctx.engine.get_collection(OrganizationDomain),
            {"clerk_id": clerk_id},
            deleted_at=parent.get("deleted_at"),
            cleared=DOMAIN_CLEARED,
        )


async def tombstone_domains_of(ctx: Context[None], organization_id: str, event: Event) -> int:
    """Mark every domain of a deleted organization deleted; how many changed."""
    return await tombstone(
        ctx.engine.get_collection(OrganizationDomain),
        {"organization_id": organization_id},
        deleted_at=event.timestamp,
        cleared=DOMAIN_CLEARED,
        many=True,
    )
