"""Writing outcomes against a real MongoDB server: the group commit's batch keeps each attempt's
lease guard and the results of earlier attempts, in the plain form and in the pipeline form
that handler keys unfit for a dotted path take."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clerk_sync.storage.finishing import finish_update
from clerk_sync.storage.store import DeliveryLog, Finished
from tests.listeners import Commands, listened_log

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)
OK = {"status": "ok", "at": T0, "error": None}
FAILED = {"status": "failed", "at": T0, "error": "boom"}


@dataclass
class Log:
    events: DeliveryLog
    updates: Commands


@pytest.fixture
async def log(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Log]:
    async with listened_log(mongodb_url, mongodb_db) as (events, updates):
        yield Log(events, updates)


async def claim(log: Log, svix_id: str, token: str, now: datetime) -> None:
    await log.events.claim(
        svix_id,
        target="processing",
        token=token,
        now=now,
        lease_until=now + LEASE,
        on_insert={"type": "user.created", "payload": {"n": 1}},
    )


async def stored(log: Log, svix_id: str) -> dict[str, Any]:
    document = await log.events.get(svix_id)
    assert document is not None
    return document


@pytest.mark.parametrize("key", ["users:upsert_user", "p:functools.partial(f)", "p:$x"])
async def test_a_batch_writes_only_the_outcomes_whose_attempt_holds_the_lease(
    log: Log, key: str
) -> None:
    """Three deliveries in one batch: one still held by its attempt, one taken over by a later
    attempt, one held but with a handler result from an earlier attempt."""
    await claim(log, "held", "a", T0)
    await claim(log, "taken", "a", T0)
    await claim(log, "taken", "b", T0 + LEASE + timedelta(seconds=1))  # the lease ran out
    await claim(log, "retried", "a", T0)
    await log.events.finish("retried", token="a", status="failed", outcomes={"p:earlier": OK})
    await claim(log, "retried", "c", T0 + timedelta(seconds=1))
    await log.events.finish_many(
        [
            Finished("held", "a", "processed", {key: OK}),
            Finished("taken", "a", "processed", {key: OK}),
            Finished("retried", "c", "processed", {key: OK}),
        ]
    )
    held, taken, retried = [await stored(log, i) for i in ("held", "taken", "retried")]
    assert (held["status"], held["lease_until"], held["handlers"]) == ("processed", None, {key: OK})
    assert (taken["status"], taken["lease_token"], taken["handlers"]) == ("processing", "b", {})
    assert taken["lease_until"] == T0 + 2 * LEASE + timedelta(seconds=1)
    assert retried["status"] == "processed"
    assert retried["handlers"] == {"p:earlier": OK, key: OK}


async def test_a_lone_finish_with_a_key_unfit_for_a_path_is_stored_under_that_key(
    log: Log,
) -> None:
    """A `.` in a handler key would nest the result under a dotted path: the pipeline form
    stores it under the key as it is, and still tells an attempt that lost its lease."""
    key = "p:functools.partial(f)"
    await claim(log, "msg_1", "a", T0)
    await claim(log, "msg_1", "b", T0 + LEASE + timedelta(seconds=1))
    late = await log.events.finish("msg_1", token="a", status="failed", outcomes={key: FAILED})
    owner = await log.events.finish("msg_1", token="b", status="processed", outcomes={key: OK})
    assert (late, owner) == (False, True)
    document = await stored(log, "msg_1")
    assert (document["status"], document["handlers"]) == ("processed", {key: OK})


async def test_usual_keys_are_written_by_a_plain_set_and_others_by_a_pipeline(log: Log) -> None:
    """The plain `$set` costs the server less than the pipeline (docs/performance.md): every
    key of the shipped plugins takes it."""
    for svix_id in ("plain", "pipeline"):
        await claim(log, svix_id, "a", T0)
    log.updates.clear()
    await log.events.finish_many(
        [
            Finished("plain", "a", "processed", {"users:upsert_user": OK, "audit:record": OK}),
            Finished("pipeline", "a", "processed", {"users:upsert_user": OK, "p:a.b": OK}),
        ]
    )
    plain, pipeline = log.updates.documents()
    assert plain == {
        "$set": {
            "status": "processed",
            "lease_until": None,
            "handlers.users:upsert_user": OK,
            "handlers.audit:record": OK,
        }
    }
    assert isinstance(pipeline, list)
    assert (await stored(log, "pipeline"))["handlers"] == {"users:upsert_user": OK, "p:a.b": OK}


def test_the_plain_form_names_the_lease_token_in_its_filter() -> None:
    query, _ = finish_update("msg_1", "tok", "processed", {"p:h": OK})
    assert query == {"_id": "msg_1", "lease_token": "tok"}
    query, _ = finish_update("msg_1", "tok", "processed", {"p:a.b": OK})
    assert query == {"_id": "msg_1"}
