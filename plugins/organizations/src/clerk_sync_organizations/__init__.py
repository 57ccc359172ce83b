"""Built-in plugin `organizations`: organizations, memberships, invitations, roles, permissions
and organization domains in MongoDB."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clerk_sync import Context, Event, Plugin
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import tombstone, upsert_if_newer
from clerk_sync_organizations import catalog
from clerk_sync_organizations.access import (
    DOMAIN_CLEARED,
    PERMISSION_CLEARED,
    ROLE_CLEARED,
    project_domain,
    project_permission,
    project_role,
)
from clerk_sync_organizations.fields import (
    MEMBERSHIP_CLEARED,
    ORGANIZATION_CLEARED,
    membership_parents,
    project_invitation,
    project_membership,
    project_organization,
)
from clerk_sync_organizations.models import (
    Invitation,
    Membership,
    Organization,
    OrganizationDomain,
    Permission,
    Role,
)

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

__all__ = [
    "Invitation",
    "Membership",
    "Organization",
    "OrganizationDomain",
    "Permission",
    "Role",
    "plugin",
]

#: The `users` plugin's collection: read (never written) to follow a user's deletion.
USERS = "users"

plugin = Plugin(
    "organizations",
    models=[Organization, Membership, Invitation, Role, Permission, OrganizationDomain],
)
plugin.on("role.created", "role.updated")(catalog.upsert_role)
plugin.on("role.deleted")(catalog.delete_role)
plugin.on("permission.created", "permission.updated")(catalog.upsert_permission)
plugin.on("permission.deleted")(catalog.delete_permission)
plugin.on("organizationDomain.created", "organizationDomain.updated")(catalog.upsert_domain)
plugin.on("organizationDomain.deleted")(catalog.delete_domain)

type Collection = AsyncIOMotorCollection[dict[str, Any]]

# `clerk-sync reconcile` applies Backend API objects with the same projections as webhooks; a
# membership of a tombstoned organization or user is tombstoned too, as the handlers below do
plugin.reconciler("organizations", collection="organizations", cleared=ORGANIZATION_CLEARED)(
    project_organization
)
plugin.reconciler(
    "memberships",
    collection="organization_memberships",
    cleared=MEMBERSHIP_CLEARED,
    parents={"organization_id": "organizations", "user_id": USERS},
)(project_membership)
plugin.reconciler("roles", collection="roles", cleared=ROLE_CLEARED)(project_role)
plugin.reconciler("permissions", collection="permissions", cleared=PERMISSION_CLEARED)(
    project_permission
)
plugin.reconciler(
    "domains",
    collection="organization_domains",
    cleared=DOMAIN_CLEARED,
    parents={"organization_id": "organizations"},
)(project_domain)


def _required_id(event: Event) -> str:
    clerk_id = event.data.get("id")
    if not isinstance(clerk_id, str):
        raise ValueError(f"{event.type} without a string 'id'")
    return clerk_id


@plugin.on("organization.created", "organization.updated")
async def upsert_organization(event: Event, ctx: Context[None]) -> None:
    """Insert or update the organization unless a newer version or a tombstone is stored."""
    clerk_id = _required_id(event)
    updated_at = timestamp_from_clerk(event.data.get("updated_at"))
    fields = project_organization(event.data)
    result = await upsert_if_newer(
        ctx.engine.get_collection(Organization), clerk_id, fields, updated_at
    )
    if result == "stale":
        ctx.log.info("organization_stale_event_skipped", clerk_id=clerk_id)


@plugin.on("organization.deleted")
async def delete_organization(event: Event, ctx: Context[None]) -> None:
    """Leave a cleared tombstone of the organization and mark its memberships and domains
    deleted."""
    organizations = ctx.engine.get_collection(Organization)
    clerk_id = await _organization_id(organizations, event.data)
    if clerk_id is None:
        ctx.log.warning("organization_deleted_unmatched", reason="no id, no known slug")
        return
    await tombstone(
        organizations,
        {"clerk_id": clerk_id},
        deleted_at=event.timestamp,
        cleared=ORGANIZATION_CLEARED,
        upsert=True,
    )
    changed = await tombstone(
        ctx.engine.get_collection(Membership),
        {"organization_id": clerk_id},
        deleted_at=event.timestamp,
        cleared=MEMBERSHIP_CLEARED,
        many=True,
    )
    domains = await catalog.tombstone_domains_of(ctx, clerk_id, event)
    ctx.log.info(
        "organization_deleted",
        clerk_id=clerk_id,
        memberships_changed=changed,
        domains_changed=domains,
    )


async def _organization_id(organizations: Collection, data: dict[str, Any]) -> str | None:
    """The deleted organization's id; without one, the live organization with its slug."""
    clerk_id, slug = data.get("id"), data.get("slug")
    if isinstance(clerk_id, str):
        return clerk_id
    if not isinstance(slug, str):
        return None
    found = await organizations.find_one({"slug": slug, "deleted": {"$ne": True}}, {"clerk_id": 1})
    return found["clerk_id"] if found is not None else None


@plugin.on("organizationMembership.created", "organizationMembership.updated")
async def upsert_membership(event: Event, ctx: Context[None]) -> None:
    """Insert or update the membership; it is deleted at once if its org or user already is."""
    clerk_id = _required_id(event)
    updated_at = timestamp_from_clerk(event.data.get("updated_at"))
    fields = project_membership(event.data)
    memberships = ctx.engine.get_collection(Membership)
    result = await upsert_if_newer(memberships, clerk_id, fields, updated_at)
    if result == "stale":
        ctx.log.info("membership_stale_event_skipped", clerk_id=clerk_id)
    await _follow_parents(ctx, clerk_id, membership_parents(event.data))


@plugin.on("organizationMembership.deleted")
async def delete_membership(event: Event, ctx: Context[None]) -> None:
    """Leave a tombstone of the membership (the payload is the full membership, not an id)."""
    clerk_id = _required_id(event)
    parents = membership_parents(event.data)
    await tombstone(
        ctx.engine.get_collection(Membership),
        {"clerk_id": clerk_id},
        deleted_at=event.timestamp,
        cleared=MEMBERSHIP_CLEARED,
        identity=parents,
        upsert=True,
    )
    await _follow_parents(ctx, clerk_id, parents)


async def _follow_parents(ctx: Context[None], clerk_id: str, parents: dict[str, str]) -> None:
    """Mark the membership deleted, dated like its organization's or user's tombstone.

    A parent's deletion that arrived before the membership found nothing to mark, so every
    membership write looks for the parents' tombstones afterwards. The membership is written
    before the organization is read, and `organization.deleted` writes the organization before
    it marks memberships, so of two concurrent deliveries at least one sees the other's write.
    """
    lookups = (
        (ctx.engine.get_collection(Organization), parents.get("organization_id")),
        (ctx.engine.database[USERS], parents.get("user_id")),
    )
    for collection, parent_id in lookups:
        if parent_id is None:
            continue
        parent = await collection.find_one(
            {"clerk_id": parent_id, "deleted": True}, {"deleted_at": 1}
        )
        if parent is not None:
            await tombstone(
                ctx.engine.get_collection(Membership),
                {"clerk_id": clerk_id},
                deleted_at=parent.get("deleted_at"),
                cleared=MEMBERSHIP_CLEARED,
            )


@plugin.on("user.deleted")
async def delete_user_memberships(event: Event, ctx: Context[None]) -> None:
    """Mark the deleted user's memberships deleted; the user is found by `id` or `external_id`."""
    user_ids = await _deleted_user_ids(ctx, event.data)
    if not user_ids:
        ctx.log.warning("user_deleted_unmatched", reason="no id, no synced user with external_id")
        return
    changed = 0
    for user_id in user_ids:
        changed += await tombstone(
            ctx.engine.get_collection(Membership),
            {"user_id": user_id},
            deleted_at=event.timestamp,
            cleared=MEMBERSHIP_CLEARED,
            many=True,
        )
    ctx.log.info("user_memberships_deleted", user_ids=user_ids, changed=changed)


async def _deleted_user_ids(ctx: Context[None], data: dict[str, Any]) -> list[str]:
    """`[id]`, else the ids of the synced users with the payload's `external_id`, else `[]`."""
    clerk_id, external_id = data.get("id"), data.get("external_id")
    if isinstance(clerk_id, str):
        return [clerk_id]
    if not isinstance(external_id, str):
        return []
    users = ctx.engine.database[USERS].find({"external_id": external_id}, {"clerk_id": 1})
    return [user["clerk_id"] async for user in users if isinstance(user.get("clerk_id"), str)]


@plugin.on("organizationInvitation.*")
async def upsert_invitation(event: Event, ctx: Context[None]) -> None:
    """Insert or update the invitation unless a newer version is stored."""
    clerk_id = _required_id(event)
    updated_at = timestamp_from_clerk(event.data.get("updated_at"))
    fields = project_invitation(event.type, event.data)
    result = await upsert_if_newer(
        ctx.engine.get_collection(Invitation), clerk_id, fields, updated_at
    )
    if result == "stale":
        ctx.log.info("invitation_stale_event_skipped", clerk_id=clerk_id)
