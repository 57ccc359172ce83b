"""`clerk-sync reconcile` of the application's invitations and waitlist entries against the
Backend API stand-in of tests/clerk_api.py and a real MongoDB; and the whole command, whose
default run now lists every resource."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from clerk_sync_users.invites import WaitlistEntry
from click.testing import CliRunner
from odmantic import AIOEngine

from clerk_sync.cli.reconcile import reconcile as reconcile_command
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import upsert_if_newer
from clerk_sync.reconcile import (
    MARKER,
    RESOURCES,
    Options,
    Report,
    ensure_indexes,
    reconcile,
    resources,
)
from clerk_sync.testing import sample
from tests.clerk_api import (
    INVITATIONS,
    WAITLIST,
    SpecClerk,
    data_of,
    database,
    subscription_active_state,
)
from tests.conftest import Runner
from tests.test_reconcile import FIXED_NOW, SECRET, Sleeps, make_client, served

SIGNUPS = ("invitations", "waitlist_entries")

type Db = Any


@pytest.fixture
def clerk() -> Iterator[SpecClerk]:
    with served(SpecClerk()) as fake:
        yield fake


@pytest.fixture
async def other_db(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Db]:
    """A database beside the app's (`running` writes `mongodb_db`), dropped afterwards."""
    async for found in database(mongodb_url, f"{mongodb_db}_b"):
        yield found


async def run(db: Db, clerk: SpecClerk, sleeps: Sleeps | None = None, **options: Any) -> Report:
    client = make_client(clerk, sleeps)
    options.setdefault("resources", SIGNUPS)
    try:
        return await reconcile(db, client, Options(page_size=2, **options), now=lambda: FIXED_NOW)
    finally:
        await client.aclose()


async def stored(db: Db, collection: str) -> dict[str, dict[str, Any]]:
    found = db[collection].find({}, {"_id": 0, MARKER: 0})
    return {doc["clerk_id"]: doc async for doc in found}


def invitation(clerk_id: str, status: str, updated: int, created: int = 0) -> dict[str, Any]:
    base = data_of("invitation.created")
    return base | {
        "id": clerk_id,
        "email_address": f"{clerk_id}@ex.test",
        "status": status,
        "revoked": status == "revoked",
        "created_at": base["created_at"] + created,
        "updated_at": base["updated_at"] + updated,
    }


def entry(clerk_id: str, status: str, updated: int, created: int = 0) -> dict[str, Any]:
    base = data_of("waitlistEntry.created")
    return base | {
        "id": clerk_id,
        "email_address": f"{clerk_id}@ex.test",
        "status": status,
        "created_at": base["created_at"] + created,
        "updated_at": base["updated_at"] + updated,
    }


async def seed(db: Db, resource: str, objects: list[dict[str, Any]]) -> None:
    """Store `objects` as their webhooks would have."""
    await ensure_indexes(db)
    spec = resources()[resource]
    for obj in objects:
        at = timestamp_from_clerk(obj["updated_at"])
        await upsert_if_newer(db[spec.collection], obj["id"], spec.project(obj), at)


@pytest.mark.parametrize(
    ("event_type", "collection"),
    [("invitation.created", "invitations"), ("waitlistEntry.created", "waitlist_entries")],
)
async def test_invitations_and_waitlist_entries_are_equal_by_webhook_and_by_reconcile(
    running: Runner, clerk: SpecClerk, other_db: Db, event_type: str, collection: str
) -> None:
    """The sample invitation and waitlist entry: delivered signed through the app into one
    database, listed by reconcile from the stand-in into another; equal field by field, and
    the invitation's sign-up ticket (`url`) is in neither."""
    from clerk_sync_users import plugin as users

    async with running(plugins=[users]) as r:
        assert (await r.post(sample(event_type)))[0] == 200
        by_webhook = await stored(r.db, collection)
    clerk.objects[collection] = [data_of(event_type)]
    report = await run(other_db, clerk)
    assert report.ok, report.as_dict()
    by_reconcile = await stored(other_db, collection)
    assert by_reconcile == by_webhook
    assert len(by_reconcile) == 1
    assert "__clerk_ticket" not in json.dumps(by_reconcile, default=str)


@pytest.fixture
async def db(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Db]:
    async for found in database(mongodb_url, mongodb_db):
        yield found


async def test_revocations_are_found_by_the_recheck_and_invitations_never_tombstoned(
    clerk: SpecClerk, db: Db
) -> None:
    """Clerk's listing leaves revoked invitations out: a stored pending invitation Clerk has
    since revoked is re-checked (`status=revoked`) and stored revoked; one Clerk does not know
    at all is kept, not tombstoned; a revoked one is not re-checked on the next run."""
    await seed(
        db,
        "invitations",
        [invitation("inv_revoked", "pending", 0, 1), invitation("inv_unknown", "pending", 0, 2)],
    )
    clerk.objects["invitations"] = [
        invitation("inv_listed", "accepted", 5, 0),
        invitation("inv_revoked", "revoked", 9, 1),
    ]
    report = await run(db, clerk, resources=("invitations",))
    assert report.ok, report.as_dict()
    docs = await stored(db, "invitations")
    assert {k: (d["status"], d["deleted"]) for k, d in docs.items()} == {
        "inv_listed": ("accepted", False),
        "inv_revoked": ("revoked", False),
        "inv_unknown": ("pending", False),
    }
    assert report.resources[0].tombstoning == "kept"
    assert report.resources[0].counts["created"] == 1
    assert report.resources[0].counts["updated"] == 1
    rechecks = [q for p, q in clerk.requests if p == INVITATIONS and "query" in q]
    assert {(q["query"], q.get("status")) for q in rechecks} == {
        ("inv_revoked", None),
        ("inv_revoked", "revoked"),
        ("inv_unknown", None),
        ("inv_unknown", "revoked"),
    }
    clerk.requests.clear()
    assert (await run(db, clerk, resources=("invitations",))).ok
    again = {q["query"] for p, q in clerk.requests if p == INVITATIONS and "query" in q}
    assert again == {"inv_unknown"}  # the revoked invitation is settled


async def test_waitlist_entries_converge_and_a_deleted_entry_is_tombstoned(
    clerk: SpecClerk, db: Db
) -> None:
    """Missing, older, newer and gone entries: created, updated, kept, and (after a re-check
    by id finds nothing) tombstoned with its e-mail address cleared."""
    await seed(
        db,
        "waitlist_entries",
        [
            entry("wle_older", "pending", 0, 2),
            entry("wle_newer", "completed", 50, 3),
            entry("wle_gone", "pending", 0, 4),
        ],
    )
    clerk.objects["waitlist_entries"] = [
        entry("wle_missing", "pending", 0, 1),
        entry("wle_older", "invited", 10, 2),
        entry("wle_newer", "invited", 10, 3),
    ]
    report = await run(db, clerk, resources=("waitlist_entries",))
    assert report.ok, report.as_dict()
    docs = await stored(db, "waitlist_entries")
    assert {k: (d["status"], d["deleted"]) for k, d in docs.items()} == {
        "wle_missing": ("pending", False),
        "wle_older": ("invited", False),
        "wle_newer": ("completed", False),
        "wle_gone": ("pending", True),
    }
    assert docs["wle_gone"]["email_address"] is None
    assert docs["wle_gone"]["deleted_at"] == FIXED_NOW
    engine = AIOEngine(client=db.client, database=db.name)  # the tombstone loads as the model
    assert len(await engine.find(WaitlistEntry, WaitlistEntry.deleted == True)) == 1  # noqa: E712
    assert report.resources[0].counts == {
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "tombstoned": 1,
        "failed": 0,
    }
    assert [q["query"] for p, q in clerk.requests if p == WAITLIST and "query" in q] == ["wle_gone"]


async def test_an_interrupted_waitlist_listing_resumes_at_its_checkpoint(
    clerk: SpecClerk, db: Db
) -> None:
    """A 5xx that outlasts the retries stops the listing with its checkpoint and tombstones
    nothing; the next run resumes at the saved offset and ends like an uninterrupted run."""
    await seed(db, "waitlist_entries", [entry("wle_gone", "pending", 0, 9)])
    clerk.objects["waitlist_entries"] = [entry(f"wle_{n}", "pending", 0, n) for n in range(3)]
    clerk.rate_limited[(WAITLIST, 0)] = 1
    clerk.fail_after[WAITLIST] = 1
    sleeps = Sleeps()
    first = await run(db, clerk, sleeps, resources=("waitlist_entries",))
    assert not first.ok
    assert first.resources[0].tombstoning == "not-reached"
    assert 0.1 in sleeps.calls  # Retry-After honoured
    assert (await stored(db, "waitlist_entries"))["wle_gone"]["deleted"] is False
    clerk.fail_after.clear()
    clerk.requests.clear()
    second = await run(db, clerk, resources=("waitlist_entries",))
    assert second.ok, second.as_dict()
    assert second.resources[0].resumed_from == 2
    pages = [int(q["offset"]) for p, q in clerk.requests if p == WAITLIST and "query" not in q]
    assert pages == [2]  # page 1 was not fetched again
    docs = await stored(db, "waitlist_entries")
    assert {k: d["deleted"] for k, d in docs.items()} == {
        "wle_0": False,
        "wle_1": False,
        "wle_2": False,
        "wle_gone": True,
    }


def test_cli_reconciles_every_resource_by_default(
    clerk: SpecClerk, mongodb_url: str, mongodb_db: str
) -> None:
    """`clerk-sync reconcile --json` without a resource flag lists all eleven resources, the
    new ones included, and `--plans --invitations` only those two."""
    subscription_active_state(clerk)
    clerk.objects["invitations"] = [data_of("invitation.created")]
    clerk.objects["waitlist_entries"] = [data_of("waitlistEntry.created")]
    env = {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_SECRET_KEY": SECRET,
        "CLERK_API_URL": clerk.url,
        "LOG_FORMAT": "json",
    }
    result = CliRunner().invoke(reconcile_command, ["--json"], env=env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert [r["resource"] for r in body["resources"]] == list(RESOURCES)
    created = {r["resource"]: r["counts"]["created"] for r in body["resources"]}
    assert created == {
        **dict.fromkeys(RESOURCES, 0),
        "invitations": 1,
        "waitlist_entries": 1,
        "plans": 1,
        "subscription_items": 1,
        "subscriptions": 1,
    }
    chosen = CliRunner().invoke(reconcile_command, ["--json", "--plans", "--invitations"], env=env)
    assert chosen.exit_code == 0, chosen.output
    assert [r["resource"] for r in json.loads(chosen.output)["resources"]] == [
        "invitations",
        "plans",
    ]
