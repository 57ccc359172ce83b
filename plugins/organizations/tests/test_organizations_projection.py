"""The pure part of the `organizations` plugin: Clerk payloads → stored fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from clerk_sync_organizations import Invitation, Membership, Organization
from clerk_sync_organizations.fields import (
    MEMBERSHIP_CLEARED,
    ORGANIZATION_CLEARED,
    membership_parents,
    project_invitation,
    project_membership,
    project_organization,
)

from clerk_sync.testing import sample

BOOKKEEPING = {"clerk_id", "updated_at", "deleted", "deleted_at"}


def data_of(event_type: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sample(event_type))["data"]
    return data | changes


def model_fields(model: Any) -> set[str]:
    return set(model.__odm_fields__) - {"id"}


def test_organization_fields_come_from_the_payload() -> None:
    fields = project_organization(data_of("organization.updated"))
    assert fields["name"] == "Northwind Labs GmbH"
    assert (fields["members_count"], fields["max_allowed_memberships"]) == (3, 25)
    assert fields["private_metadata"] == {"billing_account": "ba_7Kd92", "seats_purchased": 25}
    assert fields["created_by"] == "user_3AvkQGK8zGLvRC091k2sjGGUeLN"
    assert fields["created_at"] == datetime.fromtimestamp(1773826013, tz=UTC)
    assert set(fields) | BOOKKEEPING == model_fields(Organization)


def test_organization_without_optional_fields_is_projected() -> None:
    """`members_count`, `private_metadata`, `created_by` and `image_url` are optional."""
    data = {"id": "org_1", "name": "N", "slug": "n", "public_metadata": None}
    fields = project_organization(data)
    assert (fields["members_count"], fields["created_by"], fields["image_url"]) == (None,) * 3
    assert fields["public_metadata"] == fields["private_metadata"] == {}


def test_membership_user_comes_from_public_user_data() -> None:
    fields = project_membership(data_of("organizationMembership.updated"))
    assert fields["user_id"] == "user_393wMQhhD2LzcIe6ik8CDpx788R"
    assert fields["organization_id"] == "org_3B72uttDvPCKIgNoDUyqs4uTIyC"
    assert fields["role"] == "org:admin"
    assert "org:sys_memberships:manage" in fields["permissions"]
    assert set(fields) | BOOKKEEPING == model_fields(Membership)


def test_membership_stores_no_personal_data_of_the_member() -> None:
    """Names, identifier and image of `public_user_data` belong to the users projection."""
    text = repr(project_membership(data_of("organizationMembership.updated")))
    for value in ("Leo", "Brandt", "leo@brandt-design.example", "img.clerk.com"):
        assert value not in text


def test_membership_without_parents_names_none() -> None:
    data = data_of("organizationMembership.created", organization=None, public_user_data={})
    assert membership_parents(data) == {}
    fields = project_membership(data)
    assert (fields["organization_id"], fields["user_id"]) == (None, None)


def test_accepted_invitation_carries_the_user() -> None:
    fields = project_invitation(
        "organizationInvitation.accepted", data_of("organizationInvitation.accepted")
    )
    assert (fields["status"], fields["user_id"]) == ("accepted", "user_3BF300Cn7ynMylGKego29dQJyNF")
    assert fields["expires_at"] == datetime.fromtimestamp(1776590813, tz=UTC)
    assert set(fields) | {"clerk_id", "updated_at", "deleted"} == model_fields(Invitation)


def test_invitation_without_status_or_organization_id_falls_back() -> None:
    data = data_of("organizationInvitation.revoked", status=None, organization_id=None)
    fields = project_invitation("organizationInvitation.revoked", data)
    assert fields["status"] == "revoked"
    assert fields["organization_id"] == "org_3B72uttDvPCKIgNoDUyqs4uTIyC"


def test_tombstones_empty_every_field_but_the_identifiers() -> None:
    """So a tombstone is the same whichever events came before the deletion."""
    organization = set(project_organization({})) | {"updated_at"}
    assert set(ORGANIZATION_CLEARED) == organization
    membership = set(project_membership({})) | {"updated_at"}
    assert set(MEMBERSHIP_CLEARED) == membership - {"organization_id", "user_id"}
    assert project_organization({}) == {
        k: v for k, v in ORGANIZATION_CLEARED.items() if k != "updated_at"
    }
