"""The pure part of the `sessions` plugin: Clerk session payload → stored fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from clerk_sync_sessions import STATUS_OF_EVENT, Session, project_session

from clerk_sync.events import EVENT_TYPES
from clerk_sync.testing import sample


def session_data(event_type: str = "session.created", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sample(event_type))["data"]
    return data | changes


def test_session_fields_come_from_the_payload() -> None:
    assert project_session("session.created", session_data()) == {
        "user_id": "user_3AvkQGK8zGLvRC091k2sjGGUeLN",
        "client_id": "client_3AvkIlBTMtN8Ko38KRdbJswHsEJ",
        "status": "active",
        "last_active_at": datetime.fromtimestamp(1773480413.3, tz=UTC),
        "expire_at": datetime.fromtimestamp(1774085213.3, tz=UTC),
        "abandon_at": datetime.fromtimestamp(1776072413.3, tz=UTC),
        "created_at": datetime.fromtimestamp(1773480413.3, tz=UTC),
        "actor": None,
    }


def test_embedded_user_and_latest_activity_are_not_stored() -> None:
    """The user snapshot belongs to the users plugin; the IP address and city are personal."""
    text = repr(project_session("session.created", session_data()))
    assert "203.0.113.24" not in text
    assert "maya" not in text.lower()


@pytest.mark.parametrize("event_type", sorted(STATUS_OF_EVENT))
def test_missing_status_follows_from_the_event_type(event_type: str) -> None:
    fields = project_session(event_type, session_data(status=None))
    assert fields["status"] == STATUS_OF_EVENT[event_type]
    assert fields["status"] == session_data(event_type)["status"]


def test_every_session_event_has_an_implied_status() -> None:
    assert set(STATUS_OF_EVENT) == {t for t in EVENT_TYPES if t.startswith("session.")}


def test_actor_that_is_not_an_object_is_stored_as_null() -> None:
    assert project_session("session.created", session_data(actor="someone"))["actor"] is None


def test_the_stored_fields_match_the_model() -> None:
    stored = set(project_session("session.created", {})) | {"clerk_id", "updated_at", "deleted"}
    assert stored == set(Session.__odm_fields__) - {"id"}
