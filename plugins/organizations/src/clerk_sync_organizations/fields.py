"""Pure functions from Clerk payloads to stored fields, and what a tombstone leaves."""

from __future__ import annotations

from typing import Any

from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import dict_or_empty, int_or_none, str_or_none

#: What a deletion leaves of an organization: its id only. Everything else is emptied, so the
#: tombstone is the same whichever of the organization's events arrived before the deletion.
ORGANIZATION_CLEARED: dict[str, Any] = {
    "name": None,
    "slug": None,
    "image_url": None,
    "members_count": None,
    "max_allowed_memberships": None,
    "public_metadata": {},
    "private_metadata": {},
    "created_by": None,
    "created_at": None,
    "updated_at": None,
}

#: What a deletion leaves of a membership: its id, `organization_id` and `user_id`.
MEMBERSHIP_CLEARED: dict[str, Any] = {
    "role": None,
    "permissions": [],
    "public_metadata": {},
    "created_at": None,
    "updated_at": None,
}

#: The status an invitation event implies when the payload carries none.
STATUS_OF_EVENT = {
    "organizationInvitation.created": "pending",
    "organizationInvitation.accepted": "accepted",
    "organizationInvitation.revoked": "revoked",
}


def project_organization(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of an organization from a Clerk `organization` object."""
    return {
        "name": str_or_none(data.get("name")),
        "slug": str_or_none(data.get("slug")),
        "image_url": str_or_none(data.get("image_url")),
        "members_count": int_or_none(data.get("members_count")),
        "max_allowed_memberships": int_or_none(data.get("max_allowed_memberships")),
        "public_metadata": dict_or_empty(data.get("public_metadata")),
        "private_metadata": dict_or_empty(data.get("private_metadata")),
        "created_by": str_or_none(data.get("created_by")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


def membership_parents(data: dict[str, Any]) -> dict[str, str]:
    """`organization_id` and `user_id` of a membership, where the payload names them."""
    parents = {
        "organization_id": str_or_none(dict_or_empty(data.get("organization")).get("id")),
        "user_id": str_or_none(dict_or_empty(data.get("public_user_data")).get("user_id")),
    }
    return {name: value for name, value in parents.items() if value is not None}


def project_membership(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a membership from a Clerk `organization_membership` object."""
    permissions = data.get("permissions")
    return {
        "organization_id": None,
        "user_id": None,
        **membership_parents(data),
        "role": str_or_none(data.get("role")),
        "permissions": [p for p in permissions if isinstance(p, str)]
        if isinstance(permissions, list)
        else [],
        "public_metadata": dict_or_empty(data.get("public_metadata")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


def project_invitation(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of an invitation; `user_id` is set once it has been accepted."""
    organization_id = str_or_none(data.get("organization_id")) or str_or_none(
        dict_or_empty(data.get("public_organization_data")).get("id")
    )
    return {
        "organization_id": organization_id,
        "email_address": str_or_none(data.get("email_address")),
        "role": str_or_none(data.get("role")),
        "status": str_or_none(data.get("status")) or STATUS_OF_EVENT.get(event_type),
        "user_id": str_or_none(data.get("user_id")),
        "expires_at": timestamp_from_clerk(data.get("expires_at")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }
