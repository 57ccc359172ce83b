"""`clerk-sync plugins catch-up NAME`: a plugin enabled after its deliveries arrived gets them,
through real signed webhooks into the app and the tests' MongoDB server.

The billing deliveries recorded `ignored` while `billing` was disabled, caught up, leave the
billing collections as a database that had billing on from the start holds them; each delivery
records the handler's outcome, a second run changes nothing and a redelivery is a duplicate.
A catch-up and the service serving the same deliveries never run one handler of one delivery
twice at the same time (a recording handler counts overlapping calls).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clerk_sync_billing import plugin as billing
from click.testing import CliRunner, Result
from pymongo import MongoClient

from clerk_sync import Context, Event, Plugin, Settings
from clerk_sync.cli import main
from clerk_sync.cli.catchup import run_catch_up
from clerk_sync.plugins import Subscription
from clerk_sync.testing import envelope, new_svix_id, sample
from tests import test_cli, test_reconcile
from tests.conftest import Runner, Running
from tests.test_billing_projections import ATTEMPT_EVENTS, ITEM_EVENTS, SUBSCRIPTION_EVENTS
from tests.test_plugin_loading import install_fake_distribution
from tests.test_reconcile import SECRET, FakeClerk, user

BILLING_EVENTS = [*SUBSCRIPTION_EVENTS, *ITEM_EVENTS, *ATTEMPT_EVENTS]
BILLING_COLLECTIONS = (
    "billing_subscriptions",
    "billing_subscription_items",
    "billing_payment_attempts",
)
type Pairs = list[tuple[str, bytes]]
#: the fake Backend API of the reconcile tests, on 127.0.0.1
clerk = test_reconcile.clerk
#: the command's clean environment on the test's database, that database, and an installed
#: plugin `flaky` (on user.created and user.updated) failing while the fixture's file exists
environ, db, flaky = test_cli.environ, test_cli.db, test_cli.flaky


def billing_deliveries() -> Pairs:
    """Each billing sample with an svix-id of its own."""
    return [(new_svix_id(), sample(event_type)) for event_type in BILLING_EVENTS]


async def post_all(r: Running, pairs: Pairs) -> list[str]:
    """Deliver each body under its svix-id; the answers' statuses in order."""
    return [(await r.post(body, msg_id=svix_id))[1]["status"] for svix_id, body in pairs]


def snapshot(db: Any, collections: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The documents of `collections` without their ObjectIds, in a stable order."""
    return {
        name: sorted(db[name].find({}, {"_id": 0}), key=lambda d: str(d.get("clerk_id")))
        for name in collections
    }


# -- the command, as an operator runs it -----------------------------------------------------


@pytest.fixture
def cli(environ: dict[str, str]) -> Callable[..., Result]:
    def invoke(*args: str, **env: str | None) -> Result:
        return CliRunner().invoke(main, ["plugins", "catch-up", *args], env={**environ, **env})

    return invoke


@pytest.fixture
def control(mongodb_url: str, mongodb_db: str) -> Iterator[tuple[str, Any]]:
    """A second database, for the run that had billing on from the start."""
    name = f"{mongodb_db}_on"
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, tz_aware=True)
    yield name, client[name]
    client.drop_database(name)
    client.close()


def test_catch_up_leaves_billing_as_if_it_had_been_on_and_a_second_run_changes_nothing(
    cli: Callable[..., Result], running: Runner, db: Any, control: tuple[str, Any]
) -> None:
    """Disabled, billing's deliveries are `ignored`; caught up, the billing collections equal
    those of a database that had billing on, each delivery is `processed` with billing's
    outcome, a second run finds all done and writes nothing, a redelivery is a duplicate."""
    pairs = billing_deliveries()
    user = (new_svix_id(), sample("user.created"))

    async def deliver() -> tuple[list[str], list[str]]:
        async with running(plugins=None, clerk_sync_disabled_plugins=("billing",)) as off:
            without = await post_all(off, [*pairs, user])
        async with running(plugins=None, mongodb_db=control[0]) as on:
            with_billing = await post_all(on, pairs)
        return without, with_billing

    without, with_billing = asyncio.run(deliver())
    assert without == ["ignored"] * len(pairs) + ["processed"]
    assert with_billing == ["processed"] * len(pairs)
    user_record = db.webhook_events.find_one({"_id": user[0]})

    first = cli("billing")
    after_first = snapshot(db, (*BILLING_COLLECTIONS, "webhook_events"))
    second = cli("billing")

    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        f"catch-up billing: {len(pairs)} deliveries: {len(pairs)} applied, 0 already done, "
        "0 failed, 0 skipped"
    ]
    assert snapshot(db, BILLING_COLLECTIONS) == snapshot(control[1], BILLING_COLLECTIONS)
    assert sum(len(docs) for docs in snapshot(db, BILLING_COLLECTIONS).values()) == 3
    for svix_id, body in pairs:
        record = db.webhook_events.find_one({"_id": svix_id})
        wanted = [s.key for s in billing.subscriptions if s.wants(json.loads(body)["type"])]
        assert record["status"] == "processed", svix_id
        assert {k: v["status"] for k, v in record["handlers"].items()} == dict.fromkeys(
            wanted, "ok"
        )
        assert record["lease_until"] is None
    assert db.webhook_events.find_one({"_id": user[0]}) == user_record
    assert second.exit_code == 0, second.output
    assert second.stdout.splitlines() == [
        f"catch-up billing: {len(pairs)} deliveries: 0 applied, {len(pairs)} already done, "
        "0 failed, 0 skipped"
    ]
    assert snapshot(db, (*BILLING_COLLECTIONS, "webhook_events")) == after_first

    async def redeliver() -> str:
        async with running(plugins=None) as on:
            return (await post_all(on, pairs[:1]))[0]

    assert asyncio.run(redeliver()) == "duplicate"


def test_since_catches_up_only_what_was_received_since_and_json_says_what_it_did(
    cli: Callable[..., Result], running: Runner, db: Any
) -> None:
    """`--since 1d` leaves a delivery received two days ago `ignored`; `--json` prints the
    counts, one record per delivery and no reconcile."""
    (old, old_body), (new, new_body) = billing_deliveries()[:2]

    async def deliver() -> list[str]:
        async with running(plugins=None, clerk_sync_disabled_plugins=("billing",)) as off:
            return await post_all(off, [(old, old_body), (new, new_body)])

    assert asyncio.run(deliver()) == ["ignored", "ignored"]
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    db.webhook_events.update_one({"_id": old}, {"$set": {"received_at": two_days_ago}})

    result = cli("billing", "--since", "1d", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "plugin": "billing",
        "applied": 1,
        "already_done": 0,
        "failed": 0,
        "skipped": 0,
        "deliveries": [{"svix_id": new, "type": "subscription.updated", "result": "applied"}],
        "reconcile": None,
    }
    assert db.webhook_events.find_one({"_id": old})["status"] == "ignored"
    assert db.webhook_events.find_one({"_id": new})["status"] == "processed"


@pytest.mark.parametrize(
    ("name", "env", "message"),
    [
        ("nosuch", {}, "clerk-sync: no installed plugin is named 'nosuch' (installed: "),
        (
            "billing",
            {"CLERK_SYNC_DISABLED_PLUGINS": "billing"},
            "clerk-sync: plugin 'billing' is disabled by CLERK_SYNC_PLUGINS or ",
        ),
    ],
)
def test_a_plugin_not_installed_or_disabled_is_one_line_and_exit_2(
    cli: Callable[..., Result], db: Any, name: str, env: dict[str, str], message: str
) -> None:
    result = cli(name, **env)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(message)
    assert result.stdout == ""
    assert "webhook_events" not in db.list_collection_names()


CRM = """
    from clerk_sync import Plugin

    plugin = Plugin("crm")

    @plugin.on("user.created")
    async def contact_from_sign_up(event, ctx):
        name = f"{event.data['first_name']} {event.data['last_name']}"
        contacts = ctx.engine.database.crm_contacts
        await contacts.update_one(
            {"clerk_id": event.data["id"]}, {"$set": {"name": name}}, upsert=True
        )

    @plugin.reconciler("users", collection="crm_contacts", cleared={"name": None})
    def contact(user):
        return {"name": f"{user['first_name']} {user['last_name']}"}
"""


@pytest.fixture
def crm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed plugin `crm`: a handler and a users reconciler, both into `crm_contacts`."""
    site = tmp_path / "crm-site"
    site.mkdir()
    install_fake_distribution(site, "crm", CRM)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("fake_plugin_crm", None)


@pytest.mark.usefixtures("crm")
def test_reconcile_then_runs_the_plugins_reconcilers(
    cli: Callable[..., Result], running: Runner, db: Any, clerk: FakeClerk
) -> None:
    """A plugin installed after a sign-up: `catch-up crm --reconcile --json` applies the
    recorded `user.created`, then its users reconciler adds the user whose webhook never came;
    the JSON has both reports."""
    svix_id = new_svix_id()

    async def deliver() -> list[str]:
        async with running(plugins=None, clerk_sync_plugins=("users",)) as r:
            return await post_all(r, [(svix_id, sample("user.created"))])

    assert asyncio.run(deliver()) == ["processed"]
    clerk.objects["users"] = [
        test_reconcile.sample_object("user.created"),
        user("user_listed", 5, "Listed"),
    ]

    result = cli("crm", "--reconcile", "--json", CLERK_SECRET_KEY=SECRET, CLERK_API_URL=clerk.url)

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["deliveries"] == [{"svix_id": svix_id, "type": "user.created", "result": "applied"}]
    [resource] = body["reconcile"]["resources"]
    assert (resource["resource"], resource["ok"], resource["counts"]["created"]) == (
        "users",
        True,
        1,
    )
    contacts = {d["clerk_id"]: d["name"] for d in db.crm_contacts.find()}
    assert contacts == {
        "user_3AvkQGK8zGLvRC091k2sjGGUeLN": "Maya Okafor",
        "user_listed": "Listed Doe",
    }
    assert set(db.users.distinct("clerk_id")) == {"user_3AvkQGK8zGLvRC091k2sjGGUeLN"}


def test_reconcile_without_a_secret_key_is_refused_before_anything_runs(
    cli: Callable[..., Result],
) -> None:
    result = cli("users", "--reconcile")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "clerk-sync: CLERK_SECRET_KEY is not set: --reconcile reads Clerk's Backend API with it"
    ]


def test_a_failing_handler_is_recorded_failed_and_a_later_run_applies_it_once(
    cli: Callable[..., Result], running: Runner, db: Any, flaky: Path
) -> None:
    """Still broken: exit 1, the handler's error, the delivery `failed` with the users
    handler's success kept. Fixed: applied once, `processed`; users' handler never re-ran."""
    svix_id = new_svix_id()
    body = envelope("user.updated", {"id": "user_1", "object": "user", "updated_at": 1_700_000})

    async def deliver() -> list[str]:
        async with running(plugins=None, clerk_sync_plugins=("users",)) as r:
            return await post_all(r, [(svix_id, body)])

    assert asyncio.run(deliver()) == ["processed"]
    users_at = db.webhook_events.find_one({"_id": svix_id})["handlers"]["users:upsert_user"]

    broken = cli("flaky")
    record = db.webhook_events.find_one({"_id": svix_id})
    flaky.unlink()
    fixed = cli("flaky")

    assert broken.exit_code == 1
    assert broken.stdout.splitlines() == [
        f"{svix_id}: failed: flaky:count: failed: RuntimeError: flaky is broken",
        "catch-up flaky: 1 delivery: 0 applied, 0 already done, 1 failed, 0 skipped",
    ]
    assert record["status"] == "failed"
    assert record["handlers"]["flaky:count"]["status"] == "failed"
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout.splitlines()[-1].endswith(
        ": 1 applied, 0 already done, 0 failed, 0 skipped"
    )
    record = db.webhook_events.find_one({"_id": svix_id})
    assert record["status"] == "processed"
    assert record["handlers"]["users:upsert_user"] == users_at
    assert record["attempts"] == 3
    assert [d["runs"] for d in db.flaky_runs.find()] == [1]


# -- beside the service ------------------------------------------------------------------------


class Calls:
    """Wraps a plugin's handlers to count calls and overlapping calls per delivery and handler;
    `hold` makes the calls of chosen deliveries wait until `release`."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.running: Counter[tuple[str, str]] = Counter()
        self.overlapping = 0
        self.yields = 0
        self.held: set[str] = set()
        self.entered: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.any_entered = asyncio.Event()
        self.gate = asyncio.Event()

    def wrap(self, sub: Subscription) -> Callable[[Event, Context[Any]], Awaitable[None]]:
        async def handler(event: Event, ctx: Context[Any]) -> None:
            key = (event.svix_id, sub.key)
            self.calls[key] += 1
            self.running[key] += 1
            self.overlapping += self.running[key] > 1
            try:
                self.entered[event.svix_id].set()
                self.any_entered.set()
                if event.svix_id in self.held:
                    await self.gate.wait()
                for _ in range(self.yields):  # room for a second call to overlap, if it could
                    await asyncio.sleep(0)
                await sub.func(event, ctx)
            finally:
                self.running[key] -= 1

        handler.__name__ = sub.name
        return handler

    def plugin(self, original: Plugin) -> Plugin:
        """`original` with every handler wrapped, under its own name and handler names."""
        copy = Plugin(original.name, models=original.models, settings=original.settings_model)
        for sub in original.subscriptions:
            copy.on(*sub.patterns)(self.wrap(sub))
        return copy


def gatekeeper(calls: Calls, *patterns: str) -> Plugin:
    """A plugin `gatekeeper` that succeeds, under `calls` (so it can be held)."""
    plugin = Plugin("gatekeeper")

    @plugin.on(*patterns)
    async def watch(event: Event, ctx: Context[None]) -> None:
        return None

    return calls.plugin(plugin)


async def test_redacted_deliveries_are_skipped_and_counted(
    running: Runner, make_settings: Callable[..., Settings]
) -> None:
    """email.created is stored redacted: catch-up runs nothing for it and says so."""
    calls = Calls()
    mailer = Plugin("mailer")

    @mailer.on("email.created", "user.created")
    async def send(event: Event, ctx: Context[None]) -> None:
        return None

    wrapped = calls.plugin(mailer)
    email, user = new_svix_id(), new_svix_id()
    async with running(plugins=[wrapped], clerk_sync_disabled_plugins=("mailer",)) as r:
        await post_all(r, [(email, sample("email.created")), (user, sample("user.created"))])
        before = await r.db.webhook_events.find_one({"_id": email})
        report = await run_catch_up(make_settings(), wrapped)
        after = await r.db.webhook_events.find_one({"_id": email})
    assert before is not None
    assert (before["status"], before["redacted"]) == ("ignored", True)
    assert report.counts == {"applied": 1, "already_done": 0, "failed": 0, "skipped": 1}
    assert [d for d in report.deliveries if d["result"] == "skipped"] == [
        {"svix_id": email, "type": "email.created", "result": "skipped", "reason": "redacted"}
    ]
    assert after == before
    assert calls.calls == Counter({(user, "mailer:send"): 1})


async def test_a_redelivery_while_catch_up_holds_a_delivery_is_409_then_a_duplicate(
    running: Runner, make_settings: Callable[..., Settings]
) -> None:
    """Catch-up takes the delivery's lease: Svix redelivering it meanwhile gets 409 and runs
    nothing; once caught up, the redelivery is a duplicate. The handler ran once."""
    calls = Calls()
    recorded = calls.plugin(billing)
    [(svix_id, body)] = billing_deliveries()[:1]
    async with running(plugins=[recorded], clerk_sync_disabled_plugins=("billing",)) as off:
        assert await post_all(off, [(svix_id, body)]) == ["ignored"]
    calls.held.add(svix_id)
    async with running(plugins=[recorded]) as on:
        catching_up = asyncio.create_task(run_catch_up(make_settings(), recorded))
        await calls.entered[svix_id].wait()
        busy = await on.post(body, msg_id=svix_id)
        calls.gate.set()
        report = await catching_up
        again = await on.post(body, msg_id=svix_id)
    assert busy == (409, {"error": busy[1]["error"], "svix_id": svix_id})
    assert report.counts["applied"] == 1
    assert again == (200, {"status": "duplicate", "svix_id": svix_id})
    assert calls.calls == Counter({(svix_id, "billing:upsert_subscription"): 1})


async def test_a_delivery_the_service_holds_is_left_to_it_then_caught_up(
    running: Runner, make_settings: Callable[..., Settings]
) -> None:
    """The service is running another plugin's handler for a delivery (its lease runs):
    catch-up leaves it, looks again once that attempt is over, and applies billing then."""
    calls = Calls()
    recorded = calls.plugin(billing)
    [(svix_id, body)] = billing_deliveries()[:1]
    calls.held.add(svix_id)
    plugins = [recorded, gatekeeper(calls, "subscription.*")]
    async with running(plugins=plugins, clerk_sync_disabled_plugins=("billing",)) as r:
        posting = asyncio.create_task(r.post(body, msg_id=svix_id))
        await calls.entered[svix_id].wait()
        looks: list[float] = []

        async def attempt_ends(seconds: float) -> None:
            looks.append(seconds)
            calls.gate.set()
            await posting

        report = await run_catch_up(make_settings(), recorded, sleep=attempt_ends)
        stored = await r.event(svix_id)
    assert (await posting)[1]["status"] == "processed"
    assert looks == [0.5]
    assert report.counts == {"applied": 1, "already_done": 0, "failed": 0, "skipped": 0}
    assert stored is not None
    assert stored["status"] == "processed"
    assert {k: v["status"] for k, v in stored["handlers"].items()} == {
        "gatekeeper:watch": "ok",
        "billing:upsert_subscription": "ok",
    }
    assert calls.overlapping == 0
    assert set(calls.calls.values()) == {1}


async def svix_retries(r: Running, svix_id: str, body: bytes, start: asyncio.Event) -> str:
    """Once `start` is set, redeliver as Svix would until the answer is no longer 409 (in
    progress elsewhere)."""
    await start.wait()
    while True:
        status, answer = await r.post(body, msg_id=svix_id)
        if status != 409:
            return str(answer["status"])
        await asyncio.sleep(0.01)


def event_order(pairs: Pairs) -> Pairs:
    """`pairs` in the order catch-up takes them: oldest envelope timestamp first."""
    return sorted(pairs, key=lambda pair: json.loads(pair[1])["timestamp"])


async def test_catch_up_racing_the_service_runs_no_handler_twice_at_once(
    running: Runner, make_settings: Callable[..., Settings]
) -> None:
    """Item deliveries `failed` (another plugin's handler broke) while billing was off; after
    the upgrade Svix retries them, and new deliveries arrive, while catch-up runs. Billing's
    handler runs exactly once per delivery, never two calls of one delivery at once, and every
    delivery ends `processed` with each handler `ok`."""
    calls = Calls()
    calls.yields = 50
    recorded = calls.plugin(billing)
    broken = {"yes"}
    watcher = Plugin("watcher")

    @watcher.on("subscriptionItem.*")
    async def watch(event: Event, ctx: Context[None]) -> None:
        if broken:
            raise RuntimeError("watcher is broken")

    old, new = billing_deliveries(), billing_deliveries()
    async with running(plugins=[recorded, watcher], clerk_sync_disabled_plugins=("billing",)) as r:
        answers = await post_all(r, old)
    assert set(answers) == {"ignored", "failed"}
    broken.clear()
    async with running(plugins=[recorded, watcher]) as r:
        failed = {i for (i, _), a in zip(old, answers, strict=True) if a == "failed"}
        # each failed delivery's retry starts once the one before it (catch-up's order) has
        # a handler running: catch-up and the service reach most of them at about one time
        ordered = event_order(old)
        starts = [calls.any_entered, *(calls.entered[i] for i, _ in ordered[:-1])]
        report, *served = await asyncio.gather(
            run_catch_up(make_settings(), recorded),
            *(
                svix_retries(r, i, b, start)
                for (i, b), start in zip(ordered, starts, strict=True)
                if i in failed
            ),
            *(svix_retries(r, i, b, calls.any_entered) for i, b in new),
        )
        await r.settle()
        stored = [d async for d in r.db.webhook_events.find({}, {"payload": 0})]
    assert calls.overlapping == 0
    assert set(served) <= {"processed", "duplicate"}
    assert report.ok
    assert {svix_id for svix_id, _ in calls.calls} == {i for i, _ in old + new}
    assert set(calls.calls.values()) == {1}
    assert len(stored) == len(old) + len(new)
    assert {d["status"] for d in stored} == {"processed"}
    assert {h["status"] for d in stored for h in d["handlers"].values()} == {"ok"}


def test_a_delivery_an_interrupted_attempt_left_processing_is_left_to_replay_stale(
    cli: Callable[..., Result],
    environ: dict[str, str],
    running: Runner,
    db: Any,
    flaky: Path,
) -> None:
    """A crash lost the outcome of the service's users handler: the delivery stays
    `processing` with an expired lease. Catching up `flaky` does not take it (that would mark
    it done without a users outcome): skipped `stale`, exit 1, nothing changed. Once
    `events replay --stale` finished it, catch-up applies flaky to it."""
    flaky.unlink()
    svix_id = new_svix_id()
    body = envelope("user.updated", {"id": "user_1", "object": "user", "updated_at": 1_700_000})

    async def deliver_then_crash() -> None:
        async with running(plugins=None, clerk_sync_plugins=("users",)) as r:
            await r.hold_outcomes()
            await r.post(body, msg_id=svix_id, settle=False)
            r.app.extensions["clerk_sync"].writer.queued.clear()  # what a SIGKILL loses

    asyncio.run(deliver_then_crash())
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.webhook_events.update_one({"_id": svix_id}, {"$set": {"lease_until": past}})
    before = db.webhook_events.find_one({"_id": svix_id})

    stale = cli("flaky")
    untouched = db.webhook_events.find_one({"_id": svix_id})
    replay = ["events", "replay", "--stale"]
    replayed = CliRunner().invoke(main, replay, env={**environ, "CLERK_SYNC_PLUGINS": "users"})
    caught_up = cli("flaky")

    assert stale.exit_code == 1
    assert stale.stdout.splitlines() == [
        f"{svix_id}: skipped: left processing by an interrupted attempt; "
        "`clerk-sync events replay --stale` finishes it, then run again",
        "catch-up flaky: 1 delivery: 0 applied, 0 already done, 0 failed, 1 skipped (1 stale)",
    ]
    assert before["status"] == "processing"
    assert untouched == before
    assert replayed.exit_code == 0, replayed.output
    assert caught_up.exit_code == 0, caught_up.output
    assert caught_up.stdout.splitlines()[-1].endswith(
        ": 1 applied, 0 already done, 0 failed, 0 skipped"
    )
    record = db.webhook_events.find_one({"_id": svix_id})
    assert record["status"] == "processed"
    assert {k: v["status"] for k, v in record["handlers"].items()} == {
        "users:upsert_user": "ok",
        "flaky:count": "ok",
    }


def test_reconcile_of_a_plugin_without_reconcilers_says_so(
    cli: Callable[..., Result], flaky: Path
) -> None:
    result = cli("flaky", "--reconcile", CLERK_SECRET_KEY=SECRET)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "catch-up flaky: 0 deliveries: 0 applied, 0 already done, 0 failed, 0 skipped",
        "reconcile: plugin 'flaky' declares no reconcilers",
    ]


def test_mongodb_not_answering_is_one_line_and_exit_1(cli: Callable[..., Result]) -> None:
    result = cli("users", MONGODB_URL="mongodb://127.0.0.1:9")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("clerk-sync: MongoDB: no answer")
    assert result.stdout == ""


def test_plugins_without_a_subcommand_still_lists_them(environ: dict[str, str]) -> None:
    """`plugins` became the group of `catch-up`; alone, it lists as before."""
    text = CliRunner().invoke(main, ["plugins"], env=environ)
    listed = CliRunner().invoke(main, ["plugins", "--json"], env=environ)
    assert (text.exit_code, listed.exit_code) == (0, 0)
    assert any(line.split()[:2] == ["billing", "loaded"] for line in text.stdout.splitlines())
    billing_record = next(p for p in json.loads(listed.stdout) if p["name"] == "billing")
    assert billing_record["subscriptions"] == [
        "subscription.*",
        "subscriptionItem.*",
        "paymentAttempt.*",
    ]
