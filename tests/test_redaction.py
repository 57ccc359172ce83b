"""Secrets in deliveries: `email.created` and `sms.created` are stored redacted.

Through the real webhook path against the tests' MongoDB server: the one-time codes of the
bundled samples must be nowhere in the database nor in the log, while handlers of the arriving
delivery still see the whole event; deliveries stored whole by an earlier version are redacted
once at start; `events show` says so and `events replay` refuses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from clerk_sync_organizations import plugin as organizations
from clerk_sync_sessions import plugin as sessions
from clerk_sync_users import plugin as users
from click.testing import CliRunner, Result
from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import MongoClient

from clerk_sync import Context, Event, Plugin, Settings
from clerk_sync.cli import main
from clerk_sync.storage.redaction import REDACTED, redact
from clerk_sync.testing import TEST_SECRET, envelope, sample
from tests.conftest import Runner

BUILT_IN = (users, sessions, organizations)
EMAIL_CODE, SMS_CODE = "428913", "731066"
#: what must never be stored: the codes and recognisable pieces of each message
SECRETS = (EMAIL_CODE, SMS_CODE, "Enter this code", "Don't share it", "expires in 10 minutes")


def spy() -> tuple[Plugin, list[dict[str, Any]]]:
    """A plugin recording the `data` its handler was given (in memory, not in MongoDB)."""
    seen: list[dict[str, Any]] = []
    plugin = Plugin("spy")

    @plugin.on("email.created", "sms.created")
    async def look(event: Event, ctx: Context[None]) -> None:
        seen.append(event.data)

    return plugin, seen


async def everything(db: AsyncIOMotorDatabase[dict[str, Any]]) -> str:
    """Every document of every collection of the database, as one text."""
    texts = []
    for name in await db.list_collection_names():
        async for doc in db[name].find():
            texts.append(json.dumps(doc, default=str))
    return "\n".join(texts)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} was found"


@pytest.mark.parametrize("event_type", ["email.created", "sms.created"])
async def test_no_one_time_code_reaches_mongodb_or_the_log(
    running: Runner, capsys: pytest.CaptureFixture[str], event_type: str
) -> None:
    """Ignored by the built-in plugins, recorded `redacted: true`; the code nowhere."""
    async with running(plugins=BUILT_IN) as r:
        capsys.readouterr()
        status, answer = await r.post(sample(event_type))
        stored = await r.event(answer["svix_id"])
        assert (status, answer["status"]) == (200, "ignored")
        assert_no_secret(await everything(r.db))
    assert_no_secret(capsys.readouterr().out)
    assert stored is not None
    assert (stored["status"], stored["redacted"]) == ("ignored", True)
    data = stored["payload"]["data"]
    original = json.loads(sample(event_type))["data"]
    secret_fields = {"body", "body_plain", "message", "data", "subject"} & set(original)
    assert {k: data[k] for k in secret_fields} == dict.fromkeys(secret_fields, REDACTED)
    # what is not secret stays, so the delivery can still be told apart
    kept = set(original) - secret_fields
    assert {k: data[k] for k in kept} == {k: original[k] for k in kept}
    assert stored["payload"]["type"] == event_type


async def test_handlers_see_the_whole_event_while_the_store_keeps_it_redacted(
    running: Runner,
) -> None:
    plugin, seen = spy()
    async with running(plugins=[plugin]) as r:
        status, answer = await r.post(sample("email.created"))
        stored = await r.event(answer["svix_id"])
        assert_no_secret(await everything(r.db))
    assert (status, answer["status"]) == (200, "processed")
    assert seen[0]["data"]["otp_code"] == EMAIL_CODE
    assert EMAIL_CODE in seen[0]["body"]
    assert stored is not None
    assert (stored["status"], stored["redacted"]) == ("processed", True)


async def test_a_secret_type_that_is_not_an_envelope_keeps_no_raw_text(running: Runner) -> None:
    """Rejected deliveries keep their raw body; not when it names email.created."""
    body = json.dumps({"type": "email.created", "data": f"code {EMAIL_CODE}"}).encode()
    async with running(plugins=BUILT_IN) as r:
        status, answer = await r.post(body)
        stored = await r.event(answer["svix_id"])
        assert_no_secret(await everything(r.db))
    assert (status, answer["status"]) == (202, "rejected")
    assert stored is not None
    assert (stored["payload"], stored["redacted"]) == (REDACTED, True)


async def test_other_deliveries_are_stored_whole(running: Runner) -> None:
    async with running(plugins=BUILT_IN) as r:
        _, answer = await r.post(sample("user.created"))
        stored = await r.event(answer["svix_id"])
    assert stored is not None
    assert "redacted" not in stored
    assert stored["payload"] == json.loads(sample("user.created"))


def unredacted(svix_id: str, event_type: str) -> dict[str, Any]:
    """A delivery as a version before redaction stored it."""
    now = datetime.now(UTC)
    return {
        "_id": svix_id,
        "type": event_type,
        "status": "ignored",
        "attempts": 1,
        "received_at": now,
        "last_attempt_at": now,
        "payload": json.loads(sample(event_type)),
    }


async def test_deliveries_stored_whole_before_are_redacted_once_at_start(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one-off step redacts old deliveries, says how many, and changes nothing the second
    time (nor a delivery of another type)."""
    async with running(plugins=BUILT_IN) as r:
        await r.db.webhook_events.insert_many(
            [
                unredacted("msg_old_email", "email.created"),
                unredacted("msg_old_sms", "sms.created"),
                unredacted("msg_old_user", "user.created"),
                {"_id": "msg_old_raw", "type": "sms.created", "payload": f"raw {SMS_CODE}"},
            ]
        )
    capsys.readouterr()
    async with running(plugins=BUILT_IN) as r:
        first = await everything(r.db)
        after_first = {d["_id"]: d async for d in r.db.webhook_events.find()}
    first_log = capsys.readouterr().out
    async with running(plugins=BUILT_IN) as r:
        after_second = {d["_id"]: d async for d in r.db.webhook_events.find()}
    second_log = capsys.readouterr().out

    assert_no_secret(first)
    for svix_id in ("msg_old_email", "msg_old_sms"):
        doc = after_first[svix_id]
        assert doc["redacted"] is True
        assert doc["payload"] == redact(json.loads(sample(doc["type"])))
    assert "sms_" in after_first["msg_old_sms"]["payload"]["data"]["id"]
    assert (after_first["msg_old_raw"]["payload"], after_first["msg_old_raw"]["redacted"]) == (
        REDACTED,
        True,
    )
    assert after_first["msg_old_user"]["payload"] == json.loads(sample("user.created"))
    assert "redacted" not in after_first["msg_old_user"]
    assert after_second == after_first
    counts = [json.loads(line) for line in first_log.splitlines() if "redacted" in line]
    assert [(c["event"], c["count"]) for c in counts] == [("stored_deliveries_redacted", 3)]
    assert "stored_deliveries_redacted" not in second_log


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, mongodb_url: str, mongodb_db: str
) -> Callable[..., Result]:
    for name in ("CLERK_SYNC_PLUGINS", "CLERK_SYNC_DISABLED_PLUGINS", "MONGODB_URL", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "LOG_FORMAT": "json",
        "CLERK_SYNC_PLUGINS": "users",
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env)

    return invoke


def test_events_show_marks_and_replay_refuses_a_redacted_delivery(
    running: Runner, make_settings: Callable[..., Settings], cli: Callable[..., Result]
) -> None:
    """`show` says the delivery was redacted; `replay` refuses it with one line and exit 1,
    alone or among failed deliveries."""

    async def deliver() -> tuple[str, str]:
        plugin, _ = spy()
        async with running(plugins=[plugin]) as r:
            _, email = await r.post(sample("email.created"))
            _, user = await r.post(envelope("user.created", {"id": "user_1"}))
            return email["svix_id"], user["svix_id"]

    email_id, user_id = asyncio.run(deliver())
    settings = make_settings()
    assert settings.mongodb_url is not None
    client: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_url.get_secret_value())
    try:
        client[settings.mongodb_db].webhook_events.update_many({}, {"$set": {"status": "failed"}})
        shown = cli("events", "show", email_id)
        one = cli("events", "replay", email_id)
        many = cli("events", "replay", "--status", "failed")
        as_json = cli("events", "replay", "--json", email_id)
        stored = client[settings.mongodb_db].webhook_events.find_one({"_id": email_id})
    finally:
        client.close()

    assert shown.exit_code == 0
    assert "redacted:         yes: its message, subject and template data were removed" in (
        shown.stdout
    )
    assert EMAIL_CODE not in shown.stdout
    assert one.exit_code == 1
    assert one.stdout == ""
    assert one.stderr.splitlines() == [
        f"{email_id}: refused: delivery was stored redacted (secrets removed): "
        "only Svix can resend it"
    ]
    assert many.exit_code == 1
    assert many.stdout.splitlines()[-1] == (
        "replayed 2: 1 processed, 0 failed, 0 skipped, 1 refused (stored redacted)"
    )
    assert json.loads(as_json.stdout)["refused"] == 1
    assert stored is not None
    assert stored["status"] == "failed"  # nothing ran: the refusal changed nothing
    assert user_id != email_id
