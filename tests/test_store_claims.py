"""The delivery log's refusals leave the record as it was; plugin indexes follow their models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from odmantic import Field, Model

from clerk_sync.storage.store import DeliveryLog, Store

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


@pytest.fixture
async def store(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Store]:
    opened = Store(mongodb_url, mongodb_db)
    try:
        yield opened
    finally:
        opened.close()


async def claim(
    log: DeliveryLog, token: str, now: datetime, target: str = "processing"
) -> dict[str, Any] | None:
    return await log.claim(
        "msg_1",
        target=target,
        token=token,
        now=now,
        lease_until=now + LEASE if target == "processing" else None,
        on_insert={"type": "user.created", "payload": {"n": 1}},
    )


async def test_a_claim_refused_by_a_held_lease_changes_nothing(store: Store) -> None:
    """A retry that meets a held lease (answered 409) leaves lease, token, times and attempts
    as the holder wrote them, so a third attempt is refused too."""
    await claim(store.events, "a", T0)
    held = await store.events.get("msg_1")
    await claim(store.events, "b", T0 + timedelta(seconds=1))
    assert await store.events.get("msg_1") == held
    third = await claim(store.events, "c", T0 + timedelta(seconds=2))
    assert third is not None
    assert third["lease_token"] == "a"
    assert await store.events.get("msg_1") == held


@pytest.mark.parametrize("status", ["processed", "ignored", "rejected"])
async def test_a_claim_of_a_finished_delivery_changes_nothing(store: Store, status: str) -> None:
    await claim(store.events, "a", T0, target=status)
    finished = await store.events.get("msg_1")
    await claim(store.events, "b", T0 + timedelta(hours=1))
    assert await store.events.get("msg_1") == finished


class Gadget(Model):
    serial: str = Field(unique=True)

    model_config = {"collection": "gadgets"}  # noqa: RUF012 - ODMantic reads a plain dict


async def test_a_plugin_index_is_rebuilt_when_its_model_changes(store: Store) -> None:
    """A model whose index changed between releases gets the new index at start-up."""
    collection = store.db["gadgets"]
    await collection.create_index("serial", name="serial_1")  # an older, non-unique release
    await store.ensure_indexes([Gadget], retention_days=30)
    indexes = await collection.index_information()
    assert indexes["serial_1"].get("unique") is True


async def test_the_client_names_itself_to_mongodb(store: Store) -> None:
    """MongoDB's logs and `currentOp` show which application a connection belongs to."""
    assert store.client.options.pool_options.metadata["application"] == {"name": "clerk-sync"}
