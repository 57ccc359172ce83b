"""The operator commands: check, send-test and events list/show/replay, with their exit codes."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pymongo import MongoClient

from clerk_sync import Plugin, Settings
from clerk_sync.cli import main
from clerk_sync.cli.support import parse_since
from clerk_sync.testing import TEST_SECRET, envelope, sample
from tests.conftest import Runner
from tests.processes import ServerProcess, free_port
from tests.test_plugin_loading import install_fake_distribution

type Invoke = Callable[..., Result]

FLAKY = """
    from pathlib import Path

    from clerk_sync import Plugin

    plugin = Plugin("flaky")
    BROKEN = Path(__file__).with_name("flaky.broken")

    @plugin.on("user.created", "user.updated")
    async def count(event, ctx):
        if BROKEN.exists():
            raise RuntimeError("flaky is broken")
        runs = ctx.engine.database.flaky_runs
        await runs.update_one({"_id": event.svix_id}, {"$inc": {"runs": 1}}, upsert=True)
"""


@pytest.fixture
def environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mongodb_url: str, mongodb_db: str
) -> dict[str, str]:
    """A clean environment for the command (no stray settings, no .env) on the test's database."""
    for name in list(os.environ):
        if name.startswith(("CLERK_", "MONGODB_", "LOG_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return {
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "LOG_FORMAT": "json",
    }


@pytest.fixture
def cli(environ: dict[str, str]) -> Invoke:
    """`cli("events", "list", MONGODB_URL=...)` runs `clerk-sync` in-process."""

    def invoke(*args: str, **env: str | None) -> Result:
        return CliRunner().invoke(main, list(args), env={**environ, **env})

    return invoke


@pytest.fixture
def db(mongodb_url: str, mongodb_db: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, tz_aware=True)
    yield client[mongodb_db]
    client.close()


def problems(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("problem:")]


# -- check --------------------------------------------------------------------------------


def test_check_passes_when_settings_mongodb_and_plugins_are_fine(cli: Invoke) -> None:
    """Exit 0 and an `ok` line when there is nothing to report."""
    result = cli("check", CLERK_SYNC_REQUIRED_PLUGINS="users")
    assert result.exit_code == 0, result.output
    assert problems(result) == []
    assert result.stdout.startswith("ok: settings, mongodb (up), plugins (")


def test_check_reports_missing_signing_secret_in_one_line(cli: Invoke) -> None:
    """Without CLERK_WEBHOOK_SIGNING_SECRET the check fails and says why."""
    result = cli("check", CLERK_WEBHOOK_SIGNING_SECRET=None)
    assert result.exit_code == 1
    assert problems(result) == [
        "problem: settings: CLERK_WEBHOOK_SIGNING_SECRET is not set: "
        "every webhook would be refused with 503"
    ]


def test_check_reports_a_secret_that_does_not_decode(cli: Invoke) -> None:
    """A `whsec_` secret whose key is not base64 is one problem naming the variable; `serve`
    refuses it, so the check exits 2."""
    result = cli("check", CLERK_WEBHOOK_SIGNING_SECRET=f"{TEST_SECRET} whsec_not*base64")
    [line] = problems(result)
    assert result.exit_code == 2
    assert line.startswith("problem: settings: ")
    assert "CLERK_WEBHOOK_SIGNING_SECRET" in line
    assert "not valid base64" in line


def test_check_reports_unreachable_mongodb_in_one_line(cli: Invoke) -> None:
    """A MongoDB that does not answer within the timeout is one problem line."""
    result = cli("check", "--timeout", "1", MONGODB_URL="mongodb://127.0.0.1:9")
    [line] = problems(result)
    assert result.exit_code == 1
    assert line.startswith("problem: mongodb: no answer to ping within 1 s: 127.0.0.1:9")


def test_check_refuses_a_required_plugin_that_fails_to_load(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` would refuse to start, so the check exits 2 with the plugin's error."""
    install_fake_distribution(tmp_path, "explodes", "raise RuntimeError('no import for you')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    result = cli("check", CLERK_SYNC_REQUIRED_PLUGINS="explodes")
    [line] = problems(result)
    assert result.exit_code == 2
    assert line.startswith(
        "problem: plugins: CLERK_SYNC_REQUIRED_PLUGINS: required plugin failed: plugin 'explodes'"
    )
    assert "no import for you" in line


def test_check_only_warns_about_a_plugin_that_is_not_required(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service skips such a plugin, so the check passes and says so on stderr."""
    install_fake_distribution(tmp_path, "explodes", "raise RuntimeError('no import for you')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    result = cli("check")
    assert result.exit_code == 0
    assert "warning: plugins: plugin 'explodes' failed to load" in result.stderr
    assert "(not required: the service skips it)" in result.stderr


def test_check_json_lists_every_problem_for_scripts(cli: Invoke) -> None:
    """`--json` reports `ok`, each problem with its check, and the plugins."""
    result = cli(
        "check",
        "--json",
        "--timeout",
        "0.5",
        CLERK_WEBHOOK_SIGNING_SECRET="",
        MONGODB_URL="mongodb://127.0.0.1:9",
    )
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert report["ok"] is False
    assert report["refused"] is False
    assert report["mongodb"] == "down"
    assert [p["check"] for p in report["problems"]] == ["settings", "mongodb"]
    assert any(p["name"] == "users" for p in report["plugins"])


def test_check_json_says_when_serve_would_refuse_to_start(cli: Invoke) -> None:
    result = cli("check", "--json", CLERK_SYNC_REQUIRED_PLUGINS="nope")
    report = json.loads(result.stdout)
    assert result.exit_code == 2
    assert report["refused"] is True
    assert report["problems"] == [
        {
            "check": "plugins",
            "reason": "CLERK_SYNC_REQUIRED_PLUGINS: required plugin 'nope' is not installed",
        }
    ]


#: A value `serve` refuses for each setting that has one.
REFUSED = {
    "CLERK_WEBHOOK_SIGNING_SECRET": "whsec_not*base64",
    "MONGODB_URL": "http://127.0.0.1:27017",
    "CLERK_SYNC_REQUIRED_PLUGINS": "nope",
    "CLERK_SYNC_MAX_BODY_BYTES": "0",
    "CLERK_SYNC_BODY_TIMEOUT": "0",
    "CLERK_SYNC_STALE_SWEEP_SECONDS": "0",
    "CLERK_SYNC_BODY_BUFFER_BYTES": "0",
    "CLERK_SYNC_HANDLER_TIMEOUT": "soon",
    "CLERK_SYNC_EVENT_RETENTION_DAYS": "-1",
    "CLERK_SYNC_SHUTDOWN_DELAY": "-1",
    "CLERK_SYNC_PAST_DUE_GRACE": "-1",
    "CLERK_SYNC_OUTCOME_FLUSH_SECONDS": "2",
    "CLERK_SYNC_WEBHOOK_PATH": "webhooks/clerk",
    "CLERK_JWKS_CACHE_SECONDS": "0",
    "CLERK_JWT_KEY": "garbage",
    "CLERK_JWKS_URL": "ftp://x",
    "LOG_LEVEL": "loud",
    "LOG_FORMAT": "xml",
    "CLERK_SYNC_DEV": "maybe",
    "CLERK_SYNC_CONSOLE_USERS": "user_2operator",  # without CLERK_JWT_KEY or CLERK_JWKS_URL
    "CLERK_SYNC_CONSOLE_ORG": "org_2operators",
    "CLERK_SYNC_GRAFANA_URL": "grafana.example/d/clerk-sync",
}
#: Settings any value of which `serve` takes (names, paths, lists, URLs only reconcile uses);
#: MONGODB_DB's empty value is left to the empty-value rules of settings.py.
ANY_VALUE = {
    "MONGODB_DB",
    "CLERK_SYNC_DATA_DIR",
    "CLERK_SYNC_PLUGINS",
    "CLERK_SYNC_DISABLED_PLUGINS",
    "CLERK_ISSUER",
    "CLERK_AUTHORIZED_PARTIES",
    "CLERK_SECRET_KEY",
    "CLERK_API_URL",
    "CLERK_SYNC_CURSOR_SECRET",
}


def test_every_setting_is_in_the_refusal_table() -> None:
    assert set(REFUSED) | ANY_VALUE == {name.upper() for name in Settings.model_fields}


def serve_refusal(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`clerk-sync serve` with `env`; a serve that starts instead of refusing times out."""
    return subprocess.run(
        [sys.executable, "-m", "clerk_sync", "serve", "--port", str(free_port())],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("name", "value"), sorted(REFUSED.items()))
def test_check_and_serve_refuse_the_same_values_naming_them(
    cli: Invoke, environ: dict[str, str], tmp_path: Path, name: str, value: str
) -> None:
    """What `serve` refuses at start-up (exit 2, one line naming the variable), `check`
    refuses too: exit 2 with that line as its problem."""
    checked = cli("check", **{name: value})
    served = serve_refusal({**environ, name: value}, tmp_path)
    [line] = problems(checked)
    assert checked.exit_code == 2, checked.output
    assert name in line
    assert served.returncode == 2, served.stderr
    [refusal] = served.stderr.splitlines()
    assert refusal.startswith("clerk-sync: ")
    assert name in refusal
    assert line.removeprefix("problem: ").split(": ", 1)[1] == refusal.removeprefix("clerk-sync: ")


def test_check_uses_the_running_development_server(tmp_path: Path, environ: dict[str, str]) -> None:
    """Without MONGODB_URL, check pings the store of `clerk-sync serve` on this directory and
    takes its development secret as the signing secret."""
    env = {"LOG_FORMAT": "json", "CLERK_SYNC_DATA_DIR": str(tmp_path / "data")}
    with ServerProcess(env, cwd=tmp_path, dev=True):
        result = CliRunner().invoke(main, ["check", "--json"], env=env)
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert report["mongodb"] == "up"
    assert report["problems"] == []
    assert "the development server signs with" in report["warnings"][0]["reason"]


# -- send-test ----------------------------------------------------------------------------


def test_send_test_against_a_running_server_creates_the_user(
    environ: dict[str, str], cli: Invoke, db: Any, tmp_path: Path
) -> None:
    """`send-test user.created --url` answers 200 and the user is stored; bad secret exits 1."""
    user_id = json.loads(sample("user.created"))["data"]["id"]
    event_file = tmp_path / "event.json"
    event_file.write_bytes(envelope("user.updated", {"id": "user_file", "updated_at": 1}))
    with ServerProcess({**environ, "CLERK_SYNC_PLUGINS": "users"}, cwd=tmp_path) as server:
        sent = cli("send-test", "user.created", "--url", server.url)
        wrong = cli("send-test", "user.created", "--url", server.url, "--secret", "whsec_AAAA")
        from_file = cli(
            "send-test", str(event_file), "--url", server.url + "/webhooks/clerk", "--json"
        )
    assert sent.exit_code == 0, sent.output
    status_line, answer = sent.stdout.splitlines()
    assert status_line.startswith("200 OK svix-id=msg_")
    assert json.loads(answer)["status"] == "processed"
    assert db.users.find_one({"clerk_id": user_id})["email"] == "maya.okafor@northwind.example"
    assert wrong.exit_code == 1
    assert wrong.stdout.startswith("401 ")
    report = json.loads(from_file.stdout)
    assert from_file.exit_code == 0
    assert report["status"] == 200
    assert report["body"] == {"status": "processed", "svix_id": report["svix_id"]}
    assert db.users.find_one({"clerk_id": "user_file"}) is not None


def test_serve_and_send_test_follow_clerk_sync_webhook_path(
    environ: dict[str, str], cli: Invoke, tmp_path: Path
) -> None:
    """With CLERK_SYNC_WEBHOOK_PATH set, `serve` receives there (not at /webhooks/clerk) and
    `send-test --url BASE` appends that path."""
    env = {**environ, "CLERK_SYNC_PLUGINS": "users", "CLERK_SYNC_WEBHOOK_PATH": "/hooks/clerk"}
    with ServerProcess(env, cwd=tmp_path) as server:
        sent = cli("send-test", "user.created", "--url", server.url, "--json", **env)
        old = cli("send-test", "user.created", "--url", server.url + "/webhooks/clerk", **env)
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout)["body"]["status"] == "processed"
    assert old.exit_code == 1
    assert old.stdout.startswith("404 ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user.craeted", "--url", "http://127.0.0.1:9"], "neither a file nor a bundled sample"),
        (["user.created", "--url", "127.0.0.1:8000"], "expected an http:// or https:// URL"),
        (["user.created", "--url", "http://127.0.0.1:9", "--secret", "nope"], "whsec_"),
    ],
)
def test_send_test_usage_errors_exit_2(cli: Invoke, args: list[str], message: str) -> None:
    result = cli("send-test", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_send_test_without_an_answer_exits_1(cli: Invoke) -> None:
    result = cli("send-test", "user.created", "--url", "http://127.0.0.1:9", "--timeout", "2")
    assert result.exit_code == 1
    assert "no answer from http://127.0.0.1:9/webhooks/clerk" in result.stderr


# -- events -------------------------------------------------------------------------------


def post_all(running: Runner, bodies: list[bytes], **settings: Any) -> list[str]:
    """Deliver each body to a fresh app with discovered plugins; return the svix-ids."""

    async def go() -> list[str]:
        async with running(plugins=None, **settings) as r:
            return [(await r.post(body))[1]["svix_id"] for body in bodies]

    return asyncio.run(go())


def user_bodies(count: int) -> list[bytes]:
    return [
        envelope("user.updated", {"id": f"user_{n}", "object": "user", "updated_at": 1_700_000})
        for n in range(count)
    ]


@pytest.fixture
def flaky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plugin distribution `flaky` whose handler fails while the returned file exists."""
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "flaky", FLAKY)
    broken = site / "flaky.broken"
    broken.touch()
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield broken
    sys.modules.pop("fake_plugin_flaky", None)


def test_replay_failed_runs_each_failed_delivery_once_after_the_fix(
    cli: Invoke, running: Runner, flaky: Path, db: Any
) -> None:
    """Still broken: exit 1 with the handler error. Fixed: each runs once. Then nothing to do."""
    ids = post_all(running, user_bodies(3), clerk_sync_plugins="users,flaky")
    env = {"CLERK_SYNC_PLUGINS": "users,flaky"}
    users_at = {
        d["_id"]: d["handlers"]["users:upsert_user"]["at"] for d in db.webhook_events.find()
    }

    still_broken = cli("events", "replay", "--status", "failed", **env)
    flaky.unlink()
    fixed = cli("events", "replay", "--status", "failed", "--since", "1h", **env)
    again = cli("events", "replay", "--status", "failed", **env)

    assert still_broken.exit_code == 1
    assert still_broken.stdout.splitlines()[-1] == "replayed 3: 0 processed, 3 failed, 0 skipped"
    assert "flaky:count: failed: RuntimeError: flaky is broken" in still_broken.stdout
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout.splitlines() == ["replayed 3: 3 processed, 0 failed, 0 skipped"]
    assert again.exit_code == 0
    assert again.stdout.splitlines() == ["replayed 0: 0 processed, 0 failed, 0 skipped"]
    events = {d["_id"]: d for d in db.webhook_events.find()}
    assert {e["status"] for e in events.values()} == {"processed"}
    assert {e["attempts"] for e in events.values()} == {3}
    assert {r["_id"]: r["runs"] for r in db.flaky_runs.find()} == dict.fromkeys(ids, 1)
    assert {i: e["handlers"]["users:upsert_user"]["at"] for i, e in events.items()} == users_at


def test_replay_one_delivery_by_svix_id(cli: Invoke, running: Runner, flaky: Path, db: Any) -> None:
    """SVIX_ID replays that delivery only; a processed one is skipped; an unknown one fails."""
    first, second = post_all(running, user_bodies(2), clerk_sync_plugins="users,flaky")
    flaky.unlink()
    env = {"CLERK_SYNC_PLUGINS": "users,flaky"}
    one = cli("events", "replay", first, **env)
    done = cli("events", "replay", "--json", first, **env)
    unknown = cli("events", "replay", "msg_unknown", **env)
    assert one.exit_code == 0
    assert one.stdout.splitlines()[0] == f"{first}: processed (200): processed"
    assert db.webhook_events.find_one({"_id": second})["status"] == "failed"
    assert json.loads(done.stdout)["skipped"] == 1
    assert unknown.exit_code == 1
    assert unknown.stdout.startswith("msg_unknown: failed (404): no such delivery")


def test_replay_stale_finishes_deliveries_whose_outcome_a_crash_lost(
    cli: Invoke, running: Runner, flaky: Path, db: Any
) -> None:
    """Outcomes still queued for group commit when the process dies leave their deliveries
    `processing`; once a lease has expired `--stale` runs those handlers again through the
    pipeline and they end `processed`. A delivery whose lease still runs is left alone."""
    flaky.unlink()

    async def deliver_then_crash() -> list[str]:
        async with running(plugins=None, clerk_sync_plugins="users,flaky") as r:
            await r.hold_outcomes()
            ids = [(await r.post(body, settle=False))[1]["svix_id"] for body in user_bodies(3)]
            r.app.extensions["clerk_sync"].writer.queued.clear()  # what a SIGKILL loses
            return ids

    expired, also_expired, leased = asyncio.run(deliver_then_crash())
    assert {d["status"] for d in db.webhook_events.find()} == {"processing"}
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.webhook_events.update_many(
        {"_id": {"$in": [expired, also_expired]}}, {"$set": {"lease_until": past}}
    )
    env = {"CLERK_SYNC_PLUGINS": "users,flaky"}

    stale = cli("events", "replay", "--stale", **env)
    again = cli("events", "replay", "--stale", "--json", **env)

    assert stale.exit_code == 0, stale.output
    assert stale.stdout.splitlines() == ["replayed 2: 2 processed, 0 failed, 0 skipped"]
    assert json.loads(again.stdout)["deliveries"] == []
    events = {d["_id"]: d for d in db.webhook_events.find()}
    assert {i: (e["status"], e["attempts"]) for i, e in events.items()} == {
        expired: ("processed", 2),
        also_expired: ("processed", 2),
        leased: ("processing", 1),
    }
    assert events[expired]["lease_until"] is None
    runs = {r["_id"]: r["runs"] for r in db.flaky_runs.find()}
    assert runs == {expired: 2, also_expired: 2, leased: 1}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["msg_x", "--status", "failed"],
        ["msg_x", "--since", "1h"],
        ["--status", "processed"],
        ["--stale", "--status", "failed"],
        ["msg_x", "--stale"],
    ],
)
def test_replay_needs_one_id_or_a_status(cli: Invoke, args: list[str]) -> None:
    assert cli("events", "replay", *args).exit_code == 2


def failing_plugin() -> Plugin:
    plugin = Plugin("broken")

    @plugin.on("user.updated")
    async def explode(event: Any, ctx: Any) -> None:
        raise ValueError("cannot handle " + event.data["id"])

    return plugin


def test_events_list_filters_and_shows_handler_errors(
    cli: Invoke, running: Runner, make_settings: Callable[..., Settings]
) -> None:
    """`--status failed` lists only failed deliveries, each with its failing handler's error."""

    async def deliver() -> list[str]:
        async with running(plugins=[failing_plugin()]) as r:
            bodies = [*user_bodies(2), sample("organization.created")]
            return [(await r.post(body))[1]["svix_id"] for body in bodies]

    first, second, ignored = asyncio.run(deliver())
    failed = cli("events", "list", "--status", "failed")
    everything = cli("events", "list", "--json", "--since", "10m")
    limited = cli("events", "list", "--limit", "1", "--type", "organization.created")
    lines = failed.stdout.splitlines()
    assert failed.exit_code == 0
    assert lines[0].split() == ["RECEIVED", "(UTC)", "STATUS", "TRIES", "TYPE", "SVIX-ID"]
    assert {lines[1].split()[-1], lines[3].split()[-1]} == {first, second}
    assert "broken:explode: failed: ValueError: cannot handle user_" in lines[2]
    assert lines[-1] == "2 deliveries"
    listed = {e["svix_id"]: e for e in json.loads(everything.stdout)}
    assert listed[ignored]["status"] == "ignored"
    assert "payload" not in listed[first]
    assert limited.stdout.splitlines()[1].split()[-1] == ignored
    assert limited.stdout.splitlines()[-1] == "1 delivery (limit 1)"


def test_events_show_prints_handlers_and_payload(
    cli: Invoke, running: Runner, make_settings: Callable[..., Settings]
) -> None:
    """`show` gives every field of one delivery; `--json` for scripts; unknown ids exit 1."""

    async def deliver() -> str:
        async with running(plugins=[failing_plugin()]) as r:
            return str((await r.post(user_bodies(1)[0]))[1]["svix_id"])

    svix_id = asyncio.run(deliver())
    human = cli("events", "show", svix_id)
    shown = json.loads(cli("events", "show", svix_id, "--json").stdout)
    missing = cli("events", "show", "msg_nope")
    assert human.exit_code == 0
    assert f"svix_id:          {svix_id}" in human.stdout
    assert "broken:explode" in human.stdout
    assert '"id": "user_0"' in human.stdout
    assert shown["status"] == "failed"
    assert shown["payload"]["data"]["id"] == "user_0"
    assert shown["handlers"]["broken:explode"]["error"] == "ValueError: cannot handle user_0"
    assert "lease_token" not in shown
    assert missing.exit_code == 1
    assert "no delivery with svix-id 'msg_nope'" in missing.stderr


def test_events_commands_need_mongodb_url(cli: Invoke) -> None:
    """Without MONGODB_URL and a running `clerk-sync serve`, one line names both ways out."""
    result = cli("events", "list", MONGODB_URL=None)
    assert result.exit_code == 2
    assert result.stderr == (
        "clerk-sync: MONGODB_URL is not set and no clerk-sync serve is running on .clerk-sync: "
        "set MONGODB_URL or start clerk-sync serve\n"
    )


def test_events_commands_report_unreachable_mongodb(cli: Invoke) -> None:
    """show, list and replay exit 1 with one line when MongoDB does not answer."""
    down = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500"
    show = cli("events", "show", "msg_x", MONGODB_URL=down)
    replay = cli("events", "replay", "--status", "failed", MONGODB_URL=down)
    assert show.exit_code == 1
    assert show.stderr.startswith("clerk-sync: MongoDB: 127.0.0.1:9")
    assert replay.exit_code == 1
    assert replay.stderr.splitlines()[-1].startswith("clerk-sync: MongoDB: no answer")


def test_since_accepts_durations_and_iso_dates() -> None:
    now = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2026-03-01T08:00:00+02:00", now) == datetime(2026, 3, 1, 6, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither an ISO date"):
        parse_since("yesterday", now)


def test_bad_since_is_a_usage_error(cli: Invoke) -> None:
    result = cli("events", "list", "--since", "yesterday")
    assert result.exit_code == 2
    assert "duration like 24h or 7d" in result.stderr


# -- db find ------------------------------------------------------------------------------


def test_db_find_prints_the_stored_user(cli: Invoke, running: Runner) -> None:
    """`db find users FILTER` prints what the users plugin stored; bad FILTER is exit 2."""
    post_all(running, [sample("user.created"), *user_bodies(2)])
    user_id = json.loads(sample("user.created"))["data"]["id"]
    found = cli("db", "find", "users", json.dumps({"clerk_id": user_id}), "--json")
    human = cli("db", "find", "users", "--limit", "2")
    bad = cli("db", "find", "users", "[1]")
    [user] = json.loads(found.stdout)
    assert found.exit_code == 0
    assert user["email"] == "maya.okafor@northwind.example"
    assert human.exit_code == 0
    assert human.stdout.splitlines()[-1] == "2 documents in users"
    assert bad.exit_code == 2
    assert "a JSON object" in bad.stderr
