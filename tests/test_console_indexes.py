"""The console's list query uses an index for every filter it offers (docs/console.md), checked
with MongoDB's `explain` on the test server.

On a MongoDB server, `explain` names the winning plan: every filter must be answered by index
scans (no COLLSCAN) and, for one filter, without a blocking SORT (the index gives the order). The
embedded mongoeco wire server, which the suite uses where no Docker or TEST_MONGODB_URL is at
hand, answers `explain` without a query planner (its engines scan, see `strategy`); there the
test checks the same rule against the indexes the server holds: each equality the query makes
(each branch of `q`'s `$or`) leads an index that continues with the list order (`received_at`,
`_id`), and a query without one has the order index itself. Either way, dropping one of
`clerk_sync.storage.indexes` fails it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clerk_sync.console.deliveries import LISTED, PAGE, Filters, cursor_after
from clerk_sync.storage.indexes import ORDER, query_indexes
from clerk_sync.storage.store import EVENTS, Store

KEY = b"k" * 32
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TAIL = [("received_at", 1), ("_id", 1)]


@pytest.fixture
async def store(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Store]:
    opened = Store(mongodb_url, mongodb_db)
    await opened.ensure_indexes([], retention_days=30)
    await opened.events.collection.insert_many(
        [
            {
                "_id": f"msg_{n:04d}",
                "status": "failed" if n % 5 == 0 else "processed",
                "type": "user.created" if n % 2 else "organizationMembership.created",
                "received_at": NOW - timedelta(seconds=n),
                "payload": {
                    "data": {"id": f"obj_{n}", "user_id": "user_1", "organization_id": "o"}
                },
            }
            for n in range(60)
        ]
    )
    try:
        yield opened
    finally:
        opened.close()


Q_INDEXES = {
    "_id_",
    "payload_data_id_received_at",
    "payload_data_user_id_received_at",
    "payload_data_organization_id_received_at",
}
#: each case: its query parameters and the indexes MongoDB's plan may scan
CASES: dict[str, tuple[dict[str, str], set[str]]] = {
    "none": ({}, {"received_at_id"}),
    "status": ({"status": "failed"}, {"status_received_at_id"}),
    "type": ({"type": "user.created"}, {"type_received_at_id"}),
    "since": ({"since": "2026-12-07T11:59:00"}, {"received_at_id"}),
    "until": ({"until": "2026-12-07T11:59:30Z"}, {"received_at_id"}),
    "q": ({"q": "user_1"}, Q_INDEXES),
    "status+since": (
        {"status": "failed", "since": "2026-12-07T11:59:00"},
        {"status_received_at_id"},
    ),
}


def equalities(query: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The fields a query matches by equality, and those of each branch of an `$or` of
    equalities (`q`); the keyset `$or` on the order keys is a range, not an equality."""
    parts = query.get("$and", [query]) if query else []
    fields: list[str] = []
    branches: list[list[str]] = []
    for part in parts:
        for name, value in part.items():
            if name == "$or" and not all("received_at" in c for c in value):
                branches.append([next(iter(clause)) for clause in value])
            elif name not in ("$or", "received_at") and not isinstance(value, dict):
                fields.append(name)
    return fields, branches


def served(field: str | None, indexes: dict[str, Any]) -> str | None:
    """The index whose keys are `field` then the list order (the order alone for None);
    `_id` is the unique `_id` index (one document at most: no order to keep)."""
    if field == "_id":
        return "_id_"
    wanted = ([(field, 1)] if field else []) + TAIL
    return next((name for name, info in indexes.items() if list(info["key"]) == wanted), None)


def stages(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in ("inputStage", "outerStage", "innerStage"):
        if child in plan:
            yield from stages(plan[child])
    for many in ("inputStages",):
        for each in plan.get(many, []):
            yield from stages(each)


def check_with_planner(explained: dict[str, Any], name: str) -> None:
    """MongoDB's winning plan: index scans of the case's indexes only, and no blocking sort
    but for `q` (its branches are merged)."""
    plan = explained["queryPlanner"]["winningPlan"]
    plan = plan.get("queryPlan", plan)  # the slot-based engine nests it
    found = list(stages(plan))
    kinds = [s.get("stage") for s in found]
    scanned = {s["indexName"] for s in found if "indexName" in s}
    assert "COLLSCAN" not in kinds, (name, kinds)
    assert scanned, (name, kinds)
    assert scanned <= CASES[name][1], (name, scanned)
    if name != "q":
        assert "SORT" not in kinds, (name, kinds)


def check_against_indexes(query: dict[str, Any], indexes: dict[str, Any], name: str) -> None:
    fields, branches = equalities(query)
    if branches:
        for branch in branches:
            assert all(served(f, indexes) for f in branch), (name, branch, sorted(indexes))
    elif fields:
        assert any(served(f, indexes) for f in fields), (name, fields, sorted(indexes))
    else:
        assert served(None, indexes) == "received_at_id", (name, sorted(indexes))


async def check(events: Any, query: dict[str, Any], explained: dict[str, Any], name: str) -> None:
    if "queryPlanner" in explained:
        check_with_planner(explained, name)
    else:  # mongoeco: no planner to ask, so the planner's rule against the server's indexes
        assert explained.get("strategy") is not None, sorted(explained)
        check_against_indexes(query, await events.index_information(), name)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("paged", [False, True], ids=["first-page", "after"])
async def test_every_filter_of_the_list_is_served_by_an_index(
    store: Store, name: str, paged: bool
) -> None:
    events = store.events.collection
    args = CASES[name][0]
    if paged:
        last = await events.find_one({"_id": "msg_0010"})
        assert last is not None
        args = {**args, "after": cursor_after(KEY, last)}
    query = Filters.parse(args, KEY).query()
    explained = await events.find(query, LISTED).sort(list(ORDER)).limit(PAGE + 1).explain()
    assert explained.get("ok", 1) == 1
    await check(events, query, explained, name)


async def test_without_its_index_a_filter_is_found_out(store: Store) -> None:
    """The check above is not vacuous: with the status index dropped, the status filter fails
    it (on mongoeco by the index rule; on MongoDB its plan scans another index or the whole)."""
    events = store.events.collection
    await events.drop_index("status_received_at_id")
    query = Filters.parse({"status": "failed"}, KEY).query()
    explained = await events.find(query, LISTED).sort(list(ORDER)).limit(PAGE + 1).explain()
    with pytest.raises(AssertionError):
        await check(events, query, explained, "status")


def test_each_index_of_the_service_ends_in_the_list_order() -> None:
    for index in query_indexes():
        keys = list(index.document["key"].items())
        assert keys[-2:] == TAIL, index.document["name"]
    assert EVENTS == "webhook_events"
