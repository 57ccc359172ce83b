"""The pure part of the `users` plugin: Clerk user payload → stored fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from clerk_sync_users import SCRUBBED, User, project_user

from clerk_sync.testing import sample


def user_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sample("user.updated"))["data"]
    return data | changes


def address(id_: str, email: str) -> dict[str, Any]:
    return {"id": id_, "object": "email_address", "email_address": email, "linked_to": []}


def test_primary_email_is_found_by_id_not_position() -> None:
    data = user_data(
        primary_email_address_id="idn_second",
        email_addresses=[
            address("idn_first", "old@example.org"),
            address("idn_second", "new@example.org"),
        ],
    )
    fields = project_user(data)
    assert fields["email"] == "new@example.org"
    assert fields["email_addresses"] == ["old@example.org", "new@example.org"]


def test_primary_phone_is_found_by_id_not_position() -> None:
    phones = [
        {"id": "idn_a", "phone_number": "+15555550100"},
        {"id": "idn_b", "phone_number": "+15555550199"},
    ]
    fields = project_user(user_data(phone_numbers=phones, primary_phone_number_id="idn_b"))
    assert fields["phone"] == "+15555550199"


def test_primary_id_naming_no_listed_address_gives_no_email() -> None:
    fields = project_user(user_data(primary_email_address_id="idn_gone"))
    assert fields["email"] is None
    assert fields["email_addresses"] == ["maya.okafor@northwind.example"]


def test_empty_lists_give_no_email_and_no_phone() -> None:
    fields = project_user(user_data(email_addresses=[], phone_numbers=[], web3_wallets=[]))
    assert (fields["email"], fields["email_addresses"], fields["phone"]) == (None, [], None)


def test_null_names_and_username_stay_null() -> None:
    fields = project_user(user_data(first_name=None, last_name=None, username=None))
    assert (fields["first_name"], fields["last_name"], fields["username"]) == (None, None, None)


def test_null_private_metadata_is_stored_as_an_empty_object() -> None:
    """WH-SPEC's own user.created example sends `private_metadata: null`."""
    assert project_user(user_data(private_metadata=None))["private_metadata"] == {}


def test_unknown_fields_are_ignored() -> None:
    data = user_data(bypass_client_trust=True, scim={"directory_id": "dir_1"}, gender="")
    assert project_user(data) == project_user(user_data())


def test_timestamps_are_utc_datetimes_from_milliseconds() -> None:
    fields = project_user(user_data())
    assert fields["created_at"] == datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
    assert fields["last_sign_in_at"] == datetime.fromtimestamp(1773756833, tz=UTC)


def test_the_stored_fields_match_the_model() -> None:
    """Every projected field, plus the bookkeeping ones, is a field of `User`."""
    stored = set(project_user(user_data())) | {"clerk_id", "updated_at", "deleted", "deleted_at"}
    assert stored == set(User.__odm_fields__) - {"id"}


def test_a_tombstone_empties_every_field_but_the_identifiers() -> None:
    """Whatever arrived before the deletion, the tombstone holds no value from it."""
    assert set(SCRUBBED) == set(project_user(user_data())) - {"external_id"} | {"updated_at"}
    assert {k: v for k, v in project_user({}).items() if k != "external_id"} == {
        k: v for k, v in SCRUBBED.items() if k != "updated_at"
    }
