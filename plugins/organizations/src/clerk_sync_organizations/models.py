"""The ODMantic models of the `organizations` plugin; their indexes are created at start."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from odmantic import Field, Model


class Organization(Model):
    """One Clerk organization, or its tombstone."""

    model_config = {"collection": "organizations"}  # noqa: RUF012 - ODMantic reads a plain dict

    clerk_id: str = Field(unique=True)
    name: str | None = None
    slug: str | None = None
    image_url: str | None = None
    members_count: int | None = None
    max_allowed_memberships: int | None = None
    public_metadata: dict[str, Any] = Field(default_factory=dict)
    private_metadata: dict[str, Any] = Field(default_factory=dict)
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None


class Membership(Model):
    """One user's membership of one organization, or its tombstone."""

    model_config = {"collection": "organization_memberships"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    organization_id: str | None = Field(default=None, index=True)
    user_id: str | None = Field(default=None, index=True)
    role: str | None = None
    permissions: list[str] = Field(default_factory=list)
    public_metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None


class Invitation(Model):
    """One invitation to an organization. Invitations are revoked, never deleted."""

    model_config = {"collection": "organization_invitations"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    organization_id: str | None = Field(default=None, index=True)
    email_address: str | None = None
    role: str | None = None
    status: str | None = None
    user_id: str | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False


class Role(Model):
    """One organization role (`org:admin`, custom ones) with the keys of its permissions."""

    model_config = {"collection": "roles"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    key: str | None = Field(default=None, index=True)
    name: str | None = None
    description: str | None = None
    is_creator_eligible: bool | None = None
    permissions: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None


class Permission(Model):
    """One permission (`system` or `custom`) that roles carry."""

    model_config = {"collection": "permissions"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    key: str | None = Field(default=None, index=True)
    name: str | None = None
    description: str | None = None
    type: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None


class OrganizationDomain(Model):
    """A domain an organization claims, or its tombstone."""

    model_config = {"collection": "organization_domains"}  # noqa: RUF012 - see above

    clerk_id: str = Field(unique=True)
    organization_id: str | None = Field(default=None, index=True)
    name: str | None = Field(default=None, index=True)
    enrollment_mode: str | None = None
    verification: dict[str, Any] | None = None
    affiliation_email_address: str | None = None
    total_pending_invitations: int | None = None
    total_pending_suggestions: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None
