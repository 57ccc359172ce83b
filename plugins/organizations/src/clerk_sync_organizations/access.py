"""Roles, permissions and organization domains: Clerk payloads → stored fields, and what a
tombstone leaves of each (pure functions, like `fields`)."""

from __future__ import annotations

from typing import Any

from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import dict_or_empty, int_or_none, str_or_none

#: What a deletion leaves of a role or a permission: its id only.
ROLE_CLEARED: dict[str, Any] = {
    "key": None,
    "name": None,
    "description": None,
    "is_creator_eligible": None,
    "permissions": [],
    "created_at": None,
    "updated_at": None,
}
PERMISSION_CLEARED: dict[str, Any] = {
    "key": None,
    "name": None,
    "description": None,
    "type": None,
    "created_at": None,
    "updated_at": None,
}
#: What a deletion leaves of a domain: its id and `organization_id`.
DOMAIN_CLEARED: dict[str, Any] = {
    "name": None,
    "enrollment_mode": None,
    "verification": None,
    "affiliation_email_address": None,
    "total_pending_invitations": None,
    "total_pending_suggestions": None,
    "created_at": None,
    "updated_at": None,
}


def bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def permission_keys(value: object) -> list[str]:
    """The keys of a role's permissions: Permission objects (webhooks) or plain keys."""
    if not isinstance(value, list):
        return []
    keys = [p.get("key") if isinstance(p, dict) else p for p in value]
    return [key for key in keys if isinstance(key, str)]


def project_role(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a role from a Clerk `role` object."""
    return {
        "key": str_or_none(data.get("key")),
        "name": str_or_none(data.get("name")),
        "description": str_or_none(data.get("description")),
        "is_creator_eligible": bool_or_none(data.get("is_creator_eligible")),
        "permissions": permission_keys(data.get("permissions")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


def project_permission(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of a permission from a Clerk `permission` object."""
    return {
        "key": str_or_none(data.get("key")),
        "name": str_or_none(data.get("name")),
        "description": str_or_none(data.get("description")),
        "type": str_or_none(data.get("type")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }


def verification(value: object) -> dict[str, Any] | None:
    """`status`, `strategy`, `attempts` and `expire_at` (a UTC datetime) of a verification."""
    if not isinstance(value, dict):
        return None
    return {
        "status": str_or_none(value.get("status")),
        "strategy": str_or_none(value.get("strategy")),
        "attempts": int_or_none(value.get("attempts")),
        "expire_at": timestamp_from_clerk(value.get("expire_at")),
    }


def domain_organization(data: dict[str, Any]) -> str | None:
    """The domain's organization: `organization_id`, else `public_organization_data.id`."""
    return str_or_none(data.get("organization_id")) or str_or_none(
        dict_or_empty(data.get("public_organization_data")).get("id")
    )


def project_domain(data: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of an organization domain. `verification` is Clerk's (deprecated)
    alias of the affiliation verification, which newer payloads send on its own."""
    checked = data.get("verification")
    if checked is None:
        checked = data.get("affiliation_verification")
    return {
        "organization_id": domain_organization(data),
        "name": str_or_none(data.get("name")),
        "enrollment_mode": str_or_none(data.get("enrollment_mode")),
        "verification": verification(checked),
        "affiliation_email_address": str_or_none(data.get("affiliation_email_address")),
        "total_pending_invitations": int_or_none(data.get("total_pending_invitations")),
        "total_pending_suggestions": int_or_none(data.get("total_pending_suggestions")),
        "created_at": timestamp_from_clerk(data.get("created_at")),
    }
