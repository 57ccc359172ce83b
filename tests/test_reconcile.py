"""`clerk-sync reconcile` against a local imitation of Clerk's Backend API and a real MongoDB."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from clerk_sync_users import project_user
from click.testing import CliRunner
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from prometheus_client.parser import text_string_to_metric_families

import clerk_sync.reconcile as reconcile_module
import clerk_sync.reconcile.apply as reconcile_apply
from clerk_sync.cli.reconcile import reconcile as reconcile_command
from clerk_sync.events import timestamp_from_clerk
from clerk_sync.projection import tombstone, upsert_if_newer
from clerk_sync.reconcile import (
    MARKER,
    ClerkClient,
    Options,
    Report,
    RetryPolicy,
    ensure_indexes,
    reconcile,
    resources,
    retry_after_seconds,
    write_metrics,
)
from clerk_sync.testing import envelope, sample
from tests.conftest import Runner
from tests.processes import free_port
from tests.test_plugin_loading import install_fake_distribution

SECRET = "sk_test_reconcile"
FIXED_NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
COLLECTIONS = {
    "users": "users",
    "organizations": "organizations",
    "memberships": "organization_memberships",
    "roles": "roles",
    "permissions": "permissions",
    "domains": "organization_domains",
}
LIST_PATHS = {
    "users": "/v1/users",
    "organizations": "/v1/organizations",
    "memberships": "/v1/organization_memberships",
    "roles": "/v1/organization_roles",
    "permissions": "/v1/organization_permissions",
    "domains": "/v1/organization_domains",  # also the re-check, by organization_id
}
#: the single-object path of each resource that has one, as `/v1/<segment>/<id>`
SINGLE = {
    "users": "users",
    "organizations": "organizations",
    "organization_roles": "roles",
    "organization_permissions": "permissions",
}

type Db = AsyncIOMotorDatabase[dict[str, Any]]


# --------------------------------------------------------------------------- the fake Backend API


class FakeClerk:
    """Clerk's Backend API endpoints reconcile uses, with injectable 429s, 5xx and outages."""

    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {name: [] for name in LIST_PATHS}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.rate_limited: dict[tuple[str, int], int] = {}  # (path, offset) -> 429s left
        self.flaky: dict[tuple[str, int], int] = {}  # (path, offset) -> 500s left
        self.fail_after: dict[str, int] = {}  # list path -> pages served before failing for good
        self.pages_served: dict[str, int] = {}
        self.retry_after = "0.1"
        self.lock = threading.Lock()
        self.url = ""

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append((path, query))
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 10))
            key = (path, offset)
            if self.rate_limited.get(key, 0) > 0:
                self.rate_limited[key] -= 1
                return 429, {"Retry-After": self.retry_after}, {"errors": []}
            if self.flaky.get(key, 0) > 0:
                self.flaky[key] -= 1
                return 502, {}, {"errors": []}
            return self.route(path, query, offset, limit)

    def failing(self, path: str) -> bool:
        """Count a page of `path`; True once `fail_after` says the server fails for good."""
        served = self.pages_served.get(path, 0)
        if path in self.fail_after and served >= self.fail_after[path]:
            return True
        self.pages_served[path] = served + 1
        return False

    def route(
        self, path: str, query: dict[str, str], offset: int, limit: int
    ) -> tuple[int, dict[str, str], Any]:
        """The answer of one endpoint (called under the lock, after the injected failures)."""
        for name, list_path in LIST_PATHS.items():
            if path == list_path:
                if self.failing(path):
                    return 500, {}, {"errors": []}
                items = sorted(self.objects[name], key=lambda o: o["created_at"])
                page = items[offset : offset + limit]
                if name == "users":
                    return 200, {}, page
                return 200, {}, {"data": page, "total_count": len(items)}
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[1] in SINGLE:
            found = [o for o in self.objects[SINGLE[parts[1]]] if o["id"] == parts[2]]
            return (200, {}, found[0]) if found else (404, {}, {"errors": []})
        if len(parts) == 4 and parts[1] == "organizations" and parts[3] == "memberships":
            data = [
                m
                for m in self.objects["memberships"]
                if m["organization"]["id"] == parts[2]
                and m["public_user_data"]["user_id"] == query.get("user_id")
            ]
            return 200, {}, {"data": data, "total_count": len(data)}
        return 404, {}, {"errors": []}

    def list_requests(self, path: str) -> list[int]:
        return [int(q.get("offset", 0)) for p, q in self.requests if p == path]


@pytest.fixture
def clerk() -> Iterator[FakeClerk]:
    """A FakeClerk served over HTTP on 127.0.0.1 from a thread."""
    with served(FakeClerk()) as fake:
        yield fake


@contextmanager
def served[F: FakeClerk](fake: F) -> Iterator[F]:
    """Serve `fake` (a FakeClerk or a subclass) over HTTP on 127.0.0.1 from a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            headers: dict[str, str] = {}
            if self.headers.get("Authorization") != f"Bearer {SECRET}":
                status, body = 401, {"errors": [{"code": "unauthorized"}]}
            else:
                status, headers, body = fake.answer(parts.path, query)
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- objects and seeding


def ms(second: int) -> int:
    return 1_700_000_000_000 + second * 1000


def sample_object(event_type: str) -> dict[str, Any]:
    """A complete Backend API object (the SDK validates every field), from the bundled sample."""
    data: dict[str, Any] = json.loads(sample(event_type))["data"]
    return data


def user(clerk_id: str, updated: int, name: str, created: int = 0) -> dict[str, Any]:
    obj = sample_object("user.created")
    email = {**obj["email_addresses"][0], "id": f"idn_{clerk_id}"}
    email["email_address"] = f"{clerk_id}@ex.test"
    obj.update(
        id=clerk_id,
        external_id=None,
        first_name=name,
        last_name="Doe",
        email_addresses=[email],
        primary_email_address_id=email["id"],
        public_metadata={"v": updated},
        created_at=ms(created),
        updated_at=ms(updated),
    )
    return obj


def organization(clerk_id: str, updated: int, name: str, created: int = 0) -> dict[str, Any]:
    obj = sample_object("organization.created")
    obj.update(
        id=clerk_id,
        name=name,
        slug=clerk_id.replace("_", "-"),
        members_count=1,
        max_allowed_memberships=5,
        public_metadata={},
        private_metadata={"v": updated},
        created_by="user_a",
        created_at=ms(created),
        updated_at=ms(updated),
    )
    return obj


def membership(clerk_id: str, updated: int, role: str, created: int = 0) -> dict[str, Any]:
    obj = sample_object("organizationMembership.created")
    obj.update(
        id=clerk_id,
        role=role,
        permissions=["org:sys_memberships:read"],
        public_metadata={},
        organization=organization("org_a", 1, "A"),
        public_user_data={**obj["public_user_data"], "user_id": f"user_for_{clerk_id}"},
        created_at=ms(created),
        updated_at=ms(updated),
    )
    return obj


def permission(clerk_id: str, updated: int, name: str, created: int = 0) -> dict[str, Any]:
    obj = sample_object("permission.created")
    obj.update(
        id=clerk_id,
        name=name,
        key=f"org:{clerk_id}:manage",
        created_at=ms(created),
        updated_at=ms(updated),
    )
    return obj


def role(clerk_id: str, updated: int, name: str, created: int = 0) -> dict[str, Any]:
    obj = sample_object("role.created")
    obj.update(
        id=clerk_id,
        name=name,
        key=f"org:{clerk_id}",
        permissions=[permission(f"perm_of_{clerk_id}", updated, name, created)],
        created_at=ms(created),
        updated_at=ms(updated),
    )
    return obj


def domain(clerk_id: str, updated: int, name: str, created: int = 0) -> dict[str, Any]:
    obj = sample_object("organizationDomain.created")
    obj.update(
        id=clerk_id,
        organization_id="org_a",
        name=f"{clerk_id}-{name}.example",
        total_pending_invitations=updated,
        created_at=ms(created),
        updated_at=ms(updated),
    )
    return obj


MAKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "users": user,
    "organizations": organization,
    "memberships": membership,
    "roles": role,
    "permissions": permission,
    "domains": domain,
}
PREFIX = {
    "users": "user",
    "organizations": "org",
    "memberships": "orgmem",
    "roles": "role",
    "permissions": "perm",
    "domains": "orgdmn",
}


def scenario(resource: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(Clerk's objects, MongoDB's objects, ids MongoDB has tombstoned) differing in every way.

    missing: only in Clerk; older: Clerk newer; newer: MongoDB newer (must survive);
    same: equal; gone: only in MongoDB (to be tombstoned); dead: tombstoned in MongoDB.
    """
    make, p = MAKERS[resource], PREFIX[resource]
    server = [
        make(f"{p}_missing", 20, "new", created=1),
        make(f"{p}_older", 20, "clerk", created=2),
        make(f"{p}_newer", 20, "clerk", created=3),
        make(f"{p}_same", 10, "same", created=4),
        make(f"{p}_dead", 30, "alive?", created=5),
    ]
    stored = [
        make(f"{p}_older", 10, "mongo", created=2),
        make(f"{p}_newer", 40, "mongo", created=3),
        make(f"{p}_same", 10, "same", created=4),
        make(f"{p}_gone", 10, "gone", created=6),
        make(f"{p}_dead", 10, "dead", created=5),
    ]
    return server, stored, [f"{p}_dead"]


async def seed(db: Db, clerk: FakeClerk) -> None:
    """Fill MongoDB (through the webhook write path) and the fake server with the scenario."""
    await ensure_indexes(db)
    specs = resources()
    for name in COLLECTIONS:
        spec = specs[name]
        server, stored, dead = scenario(name)
        clerk.objects[name] = server
        for obj in stored:
            updated = timestamp_from_clerk(obj["updated_at"])
            await upsert_if_newer(db[spec.collection], obj["id"], spec.project(obj), updated)
        for clerk_id in dead:
            await tombstone(
                db[spec.collection],
                {"clerk_id": clerk_id},
                deleted_at=FIXED_NOW,
                cleared=spec.cleared,
            )


async def snapshot(db: Db, *, keep_marker: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every document of the projection collections and the checkpoints, without `_id`s."""
    result: dict[str, list[dict[str, Any]]] = {}
    for name in [*COLLECTIONS.values(), "reconcile_state"]:
        docs = []
        async for doc in db[name].find({}, {"_id": 0}).sort("clerk_id", 1):
            if not keep_marker:
                doc.pop(MARKER, None)
            docs.append(doc)
        result[name] = docs
    return result


def assert_matches_clerk(state: dict[str, list[dict[str, Any]]]) -> None:
    """The reconciled state: Clerk's objects applied, newer kept, gone tombstoned, dead dead."""
    specs = resources()
    for name, collection in COLLECTIONS.items():
        docs = {d["clerk_id"]: d for d in state[collection]}
        server, stored, _ = scenario(name)
        p = PREFIX[name]
        for obj in server:
            doc = docs[obj["id"]]
            if obj["id"] in (f"{p}_newer", f"{p}_dead"):
                continue
            assert not doc["deleted"], obj["id"]
            assert doc["updated_at"] == timestamp_from_clerk(obj["updated_at"])
            for field, value in specs[name].project(obj).items():
                assert doc[field] == value, (obj["id"], field)
        newer = next(o for o in stored if o["id"] == f"{p}_newer")
        assert docs[f"{p}_newer"]["updated_at"] == timestamp_from_clerk(newer["updated_at"])
        assert docs[f"{p}_newer"]["deleted"] is False
        assert docs[f"{p}_gone"]["deleted"] is True
        assert docs[f"{p}_dead"]["deleted"] is True


@pytest.fixture
async def db(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Db]:
    """The test's own database over a tz-aware motor client."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url, tz_aware=True)
    try:
        yield client[mongodb_db]
    finally:
        client.close()


@pytest.fixture
async def other_db(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Db]:
    """A second database (for comparing two runs), dropped afterwards."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url, tz_aware=True)
    name = f"{mongodb_db}_b"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        client.close()


class Sleeps:
    """A recording stand-in for asyncio.sleep."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(clerk: FakeClerk, sleep: Sleeps | None = None, attempts: int = 3) -> ClerkClient:
    return ClerkClient(
        clerk.url,
        SECRET,
        sleep=sleep or Sleeps(),
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.01),
    )


async def run(db: Db, clerk: FakeClerk, **options: Any) -> Report:
    """Reconcile with pages of 2; by default the resources of COLLECTIONS (the billing and
    sign-up resources have their own modules: test_reconcile_billing, test_reconcile_signups)."""
    client = make_client(clerk)
    options.setdefault("resources", tuple(COLLECTIONS))
    try:
        return await reconcile(db, client, Options(page_size=2, **options), now=lambda: FIXED_NOW)
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- tests


async def test_reconcile_converges_on_clerk_without_overwriting_newer(
    db: Db, clerk: FakeClerk
) -> None:
    """Missing, older, newer, same, gone and tombstoned objects of every resource end right."""
    await seed(db, clerk)
    clerk.rate_limited[("/v1/users", 2)] = 1
    clerk.flaky[("/v1/organizations", 0)] = 1
    sleeps = Sleeps()
    client = make_client(clerk, sleeps)
    try:
        options = Options(page_size=2, resources=tuple(COLLECTIONS))
        report = await reconcile(db, client, options, now=lambda: FIXED_NOW)
    finally:
        await client.aclose()
    assert report.ok, report.as_dict()
    assert_matches_clerk(await snapshot(db))
    for r in report.resources:
        assert r.counts == {
            "created": 1,
            "updated": 1,
            "unchanged": 3,
            "tombstoned": 1,
            "failed": 0,
        }, r.resource
        assert r.pages == 3
    assert 0.1 in sleeps.calls  # Retry-After honoured
    assert clerk.list_requests("/v1/users").count(2) == 2  # the 429 was retried
    assert clerk.list_requests("/v1/organizations").count(0) == 2  # the 502 was retried
    gone = await db.users.find_one({"clerk_id": "user_gone"})
    assert gone is not None
    assert gone["first_name"] is None
    assert gone["deleted_at"] == FIXED_NOW
    # a second run changes nothing
    again = await run(db, clerk)
    assert all(r.counts["unchanged"] == 5 and r.counts["tombstoned"] == 0 for r in again.resources)


async def test_webhook_racing_the_reconcile_keeps_the_newer_version(
    running: Runner, clerk: FakeClerk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer user.updated delivered between reconcile's read and its write wins."""
    from clerk_sync_users import plugin as users_plugin

    newest = user("user_older", 99, "webhook", created=2)
    real_upsert = upsert_if_newer
    delivered: list[int] = []

    async with running(plugins=[users_plugin]) as r:

        async def racing_upsert(collection: Any, clerk_id: str, *args: Any) -> Any:
            if clerk_id == "user_older" and not delivered:
                status, _ = await r.post(envelope("user.updated", newest))
                delivered.append(status)
            return await real_upsert(collection, clerk_id, *args)

        await seed(r.db, clerk)
        monkeypatch.setattr(reconcile_apply, "upsert_if_newer", racing_upsert)
        report = await run(r.db, clerk, resources=("users",))
        doc = await r.db.users.find_one({"clerk_id": "user_older"})

    assert delivered == [200]
    assert report.ok
    assert doc is not None
    assert doc["first_name"] == "webhook"
    assert doc["updated_at"] == timestamp_from_clerk(newest["updated_at"])


async def test_webhook_during_a_page_fetch_keeps_the_newer_version(
    running: Runner, clerk: FakeClerk
) -> None:
    """A webhook processed while the page holding the older version is in flight wins."""
    from clerk_sync_users import plugin as users_plugin

    newest = user("user_missing", 99, "webhook", created=1)
    reached, release = threading.Event(), threading.Event()
    original = clerk.answer

    def slow_answer(path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if path == "/v1/users" and query.get("offset") == "0":
            reached.set()
            release.wait(10)
        return original(path, query)

    clerk.answer = slow_answer  # type: ignore[method-assign]
    async with running(plugins=[users_plugin]) as r:
        await seed(r.db, clerk)
        task = asyncio.create_task(run(r.db, clerk, resources=("users",)))
        assert await asyncio.to_thread(reached.wait, 10)
        status, _ = await r.post(envelope("user.created", newest))
        release.set()
        report = await task
        doc = await r.db.users.find_one({"clerk_id": "user_missing"})
    assert status == 200
    assert report.ok
    assert doc is not None
    assert doc["first_name"] == "webhook"


async def test_interrupted_reconcile_resumes_to_the_same_state(
    db: Db, other_db: Db, clerk: FakeClerk
) -> None:
    """A run cut off after page 1 for good, resumed from its checkpoint, equals a clean run."""
    await seed(other_db, clerk)
    clean = await run(other_db, clerk)
    assert clean.ok

    clerk.requests.clear()
    await seed(db, clerk)
    for path in LIST_PATHS.values():
        clerk.fail_after[path] = clerk.pages_served.get(path, 0) + 1
    first = await run(db, clerk)
    assert not first.ok
    assert all(not r.complete and r.error for r in first.resources)
    state = await db.reconcile_state.find_one({"_id": "users"})
    assert state is not None
    assert state["offset"] == 2
    assert state["status"] == "listing"

    clerk.fail_after.clear()
    clerk.requests.clear()
    second = await run(db, clerk)
    assert second.ok, second.as_dict()
    assert all(r.resumed_from == 2 for r in second.resources)
    assert clerk.list_requests("/v1/users") == [2, 4]  # page 1 was not fetched again
    assert [r.counts for r in second.resources] == [r.counts for r in clean.resources]

    resumed, reference = await snapshot(db), await snapshot(other_db)
    for collection in COLLECTIONS.values():
        assert resumed[collection] == reference[collection]
    assert_matches_clerk(resumed)


async def test_dry_run_writes_nothing_and_lists_every_difference(db: Db, clerk: FakeClerk) -> None:
    """--dry-run leaves MongoDB untouched and names each missing/older/newer/gone object."""
    await seed(db, clerk)
    before = await snapshot(db, keep_marker=True)
    report = await run(db, clerk, dry_run=True)
    assert await snapshot(db, keep_marker=True) == before
    assert "reconcile_state" not in await db.list_collection_names()
    found = {(d.resource, d.clerk_id, d.kind) for d in report.differences}
    expected = {
        (name, f"{PREFIX[name]}_{suffix}", kind)
        for name in LIST_PATHS
        for suffix, kind in (
            ("missing", "missing"),
            ("older", "older"),
            ("newer", "newer-in-db"),
            ("gone", "gone"),
            ("dead", "deleted-in-db"),
        )
    }
    assert found == expected
    assert report.as_dict()["differences"]


async def test_partial_listing_tombstones_nothing(db: Db, clerk: FakeClerk) -> None:
    """When the server fails for good mid-listing, no document is tombstoned."""
    await seed(db, clerk)
    for path in LIST_PATHS.values():
        clerk.fail_after[path] = 1
    report = await run(db, clerk)
    assert not report.ok
    for r in report.resources:
        assert r.counts["tombstoned"] == 0
        assert r.tombstoning == "not-reached"
    for name, collection in COLLECTIONS.items():
        doc = await db[collection].find_one({"clerk_id": f"{PREFIX[name]}_gone"})
        assert doc is not None
        assert doc["deleted"] is False


async def test_object_missed_by_a_shifting_listing_is_not_tombstoned(
    db: Db, clerk: FakeClerk
) -> None:
    """A live document absent from the listing but found by id is updated, not tombstoned."""
    await seed(db, clerk)
    hidden = user("user_gone", 50, "still here", created=6)
    original = clerk.answer

    def answer(path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if path == "/v1/users/user_gone":
            return 200, {}, hidden
        return original(path, query)

    clerk.answer = answer  # type: ignore[method-assign]
    report = await run(db, clerk, resources=("users",))
    doc = await db.users.find_one({"clerk_id": "user_gone"})
    assert report.ok
    assert report.resources[0].counts["tombstoned"] == 0
    assert doc is not None
    assert doc["deleted"] is False
    assert doc["first_name"] == "still here"


async def test_refuses_to_tombstone_most_of_the_database(db: Db, clerk: FakeClerk) -> None:
    """An empty listing (a wrong instance's key, say) does not tombstone every user."""
    await ensure_indexes(db)
    spec = resources()["users"]
    for i in range(30):
        obj = user(f"user_{i:02}", 1, "x", created=i)
        await upsert_if_newer(db.users, obj["id"], spec.project(obj), FIXED_NOW)
    report = await run(db, clerk, resources=("users",))
    assert not report.ok
    assert report.resources[0].tombstoning == "refused"
    assert await db.users.count_documents({"deleted": True}) == 0


async def test_retries_give_up_and_rate_limit_waits(clerk: FakeClerk) -> None:
    """5xx are retried with backoff up to the budget; 429 waits exactly its Retry-After."""
    clerk.objects["users"] = [user("user_a", 1, "a")]
    clerk.flaky[("/v1/users", 0)] = 10
    sleeps = Sleeps()
    client = make_client(clerk, sleeps, attempts=3)
    try:
        with pytest.raises(reconcile_module.ReconcileError, match="HTTP 502 after 3 tries"):
            await client.page("users", offset=0, limit=10)
        assert len(sleeps.calls) == 2
        assert sleeps.calls[1] > 0
        clerk.flaky.clear()
        clerk.rate_limited[("/v1/users", 0)] = 2
        clerk.retry_after = "0.25"
        items, _ = await client.page("users", offset=0, limit=10)
        assert [i["id"] for i in items] == ["user_a"]
        assert sleeps.calls[-2:] == [0.25, 0.25]
    finally:
        await client.aclose()


async def test_a_wrong_key_or_an_unreadable_answer_stops_without_tombstoning(
    db: Db, clerk: FakeClerk
) -> None:
    """401 stops at once (no retries); an object the SDK cannot read (a required field missing)
    stops the resource with a reason; in both cases nothing is tombstoned."""
    stored = user("user_kept", 1, "kept")
    await upsert_if_newer(
        db["users"], "user_kept", project_user(stored), timestamp_from_clerk(stored["updated_at"])
    )
    wrong = ClerkClient(clerk.url, "sk_test_wrong", sleep=Sleeps())
    try:
        with pytest.raises(reconcile_module.ReconcileError, match="HTTP 401"):
            await wrong.page("users", offset=0, limit=10)
        assert wrong.requests == 1
    finally:
        await wrong.aclose()
    broken = user("user_broken", 2, "broken")
    del broken["email_addresses"]
    clerk.objects["users"] = [broken]
    report = await run(db, clerk, resources=("users",))
    users = report.resources[0]
    assert users.error is not None
    assert "unreadable answer" in users.error
    assert not users.complete
    kept = await db["users"].find_one({"clerk_id": "user_kept"})
    assert kept is not None
    assert kept["deleted"] is False


async def test_a_list_endpoint_answering_404_tombstones_nothing(db: Db, clerk: FakeClerk) -> None:
    """A wrong CLERK_API_URL (every path 404) is an error, not an empty and complete listing."""
    stored = user("user_kept", 1, "kept")
    await upsert_if_newer(
        db["users"], "user_kept", project_user(stored), timestamp_from_clerk(stored["updated_at"])
    )
    client = ClerkClient(clerk.url + "/not-the-api", SECRET, sleep=Sleeps())
    try:
        report = await reconcile(db, client, Options(resources=("users",)), now=lambda: FIXED_NOW)
    finally:
        await client.aclose()
    users = report.resources[0]
    assert users.error == "GET /v1/users: HTTP 404"
    assert users.counts["tombstoned"] == 0
    kept = await db["users"].find_one({"clerk_id": "user_kept"})
    assert kept is not None
    assert kept["deleted"] is False


async def test_an_unreachable_backend_api_is_retried_then_reported() -> None:
    """Connection errors back off like 5xx and give up after the attempt budget, with a reason."""
    sleeps = Sleeps()
    client = ClerkClient(
        f"http://127.0.0.1:{free_port()}",
        SECRET,
        sleep=sleeps,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01),
    )
    try:
        with pytest.raises(reconcile_module.ReconcileError, match="GET /v1/users: ConnectError"):
            await client.page("users", offset=0, limit=10)
    finally:
        await client.aclose()
    assert client.requests == 3
    assert len(sleeps.calls) == 2


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is read as delta-seconds or as an HTTP date."""
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Fri, 27 Nov 2026 10:00:10 GMT", now=1795773600.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_metrics_textfile_keeps_last_success_after_a_failed_run(tmp_path: Path) -> None:
    """A failed run rewrites counts but keeps the previous last-success timestamp."""
    path = str(tmp_path / "reconcile.prom")
    good = Report(dry_run=False, started_at=FIXED_NOW, duration_seconds=2.5)
    good.resources.append(reconcile_module.ResourceReport("users", complete=True))
    good.resources[0].counts["created"] = 4
    write_metrics(good, metrics_file=path, finished_at=1000.0)
    bad = Report(dry_run=False, started_at=FIXED_NOW, duration_seconds=1.0)
    bad.resources.append(reconcile_module.ResourceReport("users", error="boom"))
    write_metrics(bad, metrics_file=path, finished_at=2000.0)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(Path(path).read_text())
        for s in family.samples
    }
    assert values[("clerk_sync_reconcile_last_success_timestamp_seconds", ())] == 1000.0
    assert values[("clerk_sync_reconcile_duration_seconds", ())] == 1.0
    assert values[("clerk_sync_reconcile_last_run_success", ())] == 0.0
    key = (("outcome", "created"), ("resource", "users"))
    assert values[("clerk_sync_reconcile_objects", key)] == 0.0


def test_pushgateway_replaces_on_success_and_keeps_last_success_on_failure() -> None:
    """A good run PUTs the whole group; a failed run POSTs without the last-success time."""
    received: list[tuple[str, str, str]] = []

    class Gateway(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append((self.command, self.path, self.rfile.read(length).decode()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        good = Report(dry_run=False, started_at=FIXED_NOW)
        good.resources.append(reconcile_module.ResourceReport("users", complete=True))
        write_metrics(good, pushgateway=url, finished_at=1000.0)
        bad = Report(dry_run=False, started_at=FIXED_NOW)
        bad.resources.append(reconcile_module.ResourceReport("users", error="boom"))
        write_metrics(bad, pushgateway=url, finished_at=2000.0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    (put, put_path, put_body), (post, post_path, post_body) = received
    assert (put, post) == ("PUT", "POST")
    assert put_path == post_path == "/metrics/job/clerk-sync-reconcile"
    assert "clerk_sync_reconcile_last_success_timestamp_seconds 1000.0" in put_body
    assert "last_success_timestamp" not in post_body
    assert "clerk_sync_reconcile_last_run_success 0.0" in post_body


def test_cli_reconciles_prints_json_and_writes_metrics(
    clerk: FakeClerk, mongodb_url: str, mongodb_db: str, tmp_path: Path
) -> None:
    """`clerk-sync reconcile --users --json --metrics-file` creates users and reports them."""
    clerk.objects["users"] = [user(f"user_{i}", 5, "n", created=i) for i in range(3)]
    metrics = tmp_path / "reconcile.prom"
    env = {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_SECRET_KEY": SECRET,
        "CLERK_API_URL": clerk.url,
        "LOG_FORMAT": "json",
    }
    result = CliRunner().invoke(
        reconcile_command,
        ["--users", "--json", "--page-size", "2", "--metrics-file", str(metrics)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["ok"]
    assert body["resources"][0]["counts"]["created"] == 3
    text = metrics.read_text()
    assert "clerk_sync_reconcile_last_success_timestamp_seconds" in text
    assert 'clerk_sync_reconcile_objects{outcome="created",resource="users"} 3.0' in text


def test_cli_without_secret_key_is_a_usage_error(mongodb_url: str) -> None:
    """Without CLERK_SECRET_KEY the command exits 2 with one line naming it."""
    result = CliRunner().invoke(
        reconcile_command, [], env={"MONGODB_URL": mongodb_url, "CLERK_SECRET_KEY": ""}
    )
    assert result.exit_code == 2
    assert "CLERK_SECRET_KEY" in result.output


CRM_PLUGIN = """
    from clerk_sync import Plugin

    plugin = Plugin("crm")

    @plugin.reconciler("users", collection="crm_contacts", cleared={"name": None})
    def contact(user):
        return {"name": f"{user['first_name']} {user['last_name']}"}
"""


def test_cli_reconcile_calls_a_third_party_reconciler_for_users(
    clerk: FakeClerk,
    mongodb_url: str,
    mongodb_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An installed plugin declaring `@plugin.reconciler("users")` gets every listed user, next
    to the built-in users plugin, and its documents are tombstoned when Clerk drops a user."""
    install_fake_distribution(tmp_path, "crm", CRM_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    clerk.objects["users"] = [user(f"user_{i}", 5, f"n{i}", created=i) for i in range(3)]
    env = {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_SECRET_KEY": SECRET,
        "CLERK_API_URL": clerk.url,
        "LOG_FORMAT": "json",
    }
    first = CliRunner().invoke(reconcile_command, ["--users", "--json"], env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["resources"][0]["counts"]["created"] == 6  # 3 users, 2 plugins
    clerk.objects["users"] = clerk.objects["users"][1:]  # user_0 deleted in Clerk
    second = CliRunner().invoke(reconcile_command, ["--users", "--json"], env=env)
    assert second.exit_code == 0, second.output

    async def contacts() -> dict[str, dict[str, Any]]:
        client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url, tz_aware=True)
        try:
            found = client[mongodb_db].crm_contacts.find({}, {"_id": 0})
            return {doc["clerk_id"]: doc async for doc in found}
        finally:
            client.close()

    stored = asyncio.run(contacts())
    assert {k: (d["name"], d["deleted"]) for k, d in stored.items()} == {
        "user_0": (None, True),
        "user_1": ("n1 Doe", False),
        "user_2": ("n2 Doe", False),
    }


def test_a_resource_no_loaded_plugin_reconciles_is_reported_not_skipped(
    clerk: FakeClerk, mongodb_url: str, mongodb_db: str
) -> None:
    """With the users plugin disabled, `reconcile --users` exits 1 and says why."""
    env = {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_SECRET_KEY": SECRET,
        "CLERK_API_URL": clerk.url,
        "CLERK_SYNC_DISABLED_PLUGINS": "users",
    }
    result = CliRunner().invoke(reconcile_command, ["--users", "--json"], env=env)
    assert result.exit_code == 1, result.output
    body = json.loads(result.output)
    assert body["resources"][0]["error"] == "no loaded plugin reconciles users"
    assert clerk.requests == []


async def test_roles_permissions_and_domains_are_stored_alike_by_webhook_and_reconcile(
    running: Runner, clerk: FakeClerk, other_db: Db
) -> None:
    """The sample role, permission and domain: delivered as webhooks into one database, listed
    by reconcile from the stand-in into another; the documents are equal field by field."""
    from clerk_sync_organizations import plugin as organizations

    by_webhook: dict[str, dict[str, Any]] = {}
    async with running(plugins=[organizations]) as r:
        for event_type, collection in (
            ("role.created", "roles"),
            ("permission.created", "permissions"),
            ("organizationDomain.created", "organization_domains"),
        ):
            assert (await r.post(sample(event_type)))[0] == 200
            by_webhook[collection] = await r.db[collection].find_one({}, {"_id": 0})
    clerk.objects["roles"] = [sample_object("role.created")]
    clerk.objects["permissions"] = [sample_object("permission.created")]
    clerk.objects["domains"] = [sample_object("organizationDomain.created")]
    report = await run(other_db, clerk)
    assert report.ok
    for collection, expected in by_webhook.items():
        reconciled = await other_db[collection].find_one({}, {"_id": 0, MARKER: 0})
        assert reconciled == expected, collection
    assert by_webhook["roles"]["permissions"] == [
        "org:invoices:read",
        "org:invoices:manage",
        "org:sys_memberships:read",
    ]
