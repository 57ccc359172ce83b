"""`clerk-sync events`: list, show and replay the deliveries recorded in `webhook_events`."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from pymongo.errors import PyMongoError

from clerk_sync.cli.replay import replay_events
from clerk_sync.cli.support import (
    FAILED,
    Since,
    echo_json,
    fail,
    mongodb_url_or_exit,
    one_line,
    settings_or_exit,
)
from clerk_sync.webhooks.replaying import handler_errors

if TYPE_CHECKING:
    from pymongo import MongoClient

    from clerk_sync.settings import Settings

STATUSES = ("processing", "processed", "failed", "ignored", "rejected")
_SUMMARY_FIELDS = ("type", "status", "attempts", "received_at", "last_attempt_at", "handlers")
_HIDDEN = ("lease_token",)
REDACTED_NOTE = (
    "yes: its message, subject and template data were removed before it was stored "
    "(one-time codes); only Svix can resend it"
)


@click.group()
def events() -> None:
    """Inspect and replay the deliveries recorded in `webhook_events`.

    These commands use MONGODB_URL and MONGODB_DB like the service; without MONGODB_URL, the
    store of the `clerk-sync serve` running on CLERK_SYNC_DATA_DIR. Exit status: 0 ok,
    1 the operation failed (MongoDB unreachable, no such delivery, a replay failed),
    2 bad arguments or configuration.
    """


# -- list and show -------------------------------------------------------------------------


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[Any]:
    """The service's database through a short-lived synchronous client; errors exit 1."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(
        mongodb_url_or_exit(settings), tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        yield client[settings.mongodb_db]
    except PyMongoError as error:
        fail(f"MongoDB: {one_line(error)}", FAILED)
    finally:
        client.close()


def plain(document: dict[str, Any]) -> dict[str, Any]:
    """A delivery as shown to people and scripts: `svix_id` first, bytes as base64."""
    shown: dict[str, Any] = {"svix_id": document.get("_id")}
    for key, value in document.items():
        if key == "_id" or key in _HIDDEN:
            continue
        shown[key] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return shown


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else "-"


@events.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only deliveries in this status.")
@click.option("--type", "event_type", metavar="TYPE", help="Only this event type.")
@click.option("--since", type=Since(), help="Received at or after: ISO date/datetime, 24h, 7d.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
def list_events(
    status: str | None,
    event_type: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """List recorded deliveries, newest first, with the errors of handlers that did not succeed.

    Exit status: 0 listed (maybe nothing), 1 MongoDB unreachable, 2 bad arguments or settings.
    """
    query: dict[str, Any] = {}
    if status:
        query["status"] = status
    if event_type:
        query["type"] = event_type
    if since:
        query["received_at"] = {"$gte": since}
    projection = dict.fromkeys(_SUMMARY_FIELDS, 1)
    with _database(settings_or_exit()) as db:
        found = list(db.webhook_events.find(query, projection).sort("received_at", -1).limit(limit))
    if as_json:
        echo_json([plain(d) for d in found])
        return
    click.echo(f"{'RECEIVED (UTC)':<20} {'STATUS':<10} {'TRIES':>5}  {'TYPE':<32} SVIX-ID")
    for d in found:
        line = f"{_when(d.get('received_at')):<20} {d.get('status', '-'):<10} "
        click.echo(line + f"{d.get('attempts', 0):>5}  {d.get('type') or '-':<32} {d['_id']}")
        for error in handler_errors(d):
            click.echo(f"    {error}")
    count = f"{len(found)} {'delivery' if len(found) == 1 else 'deliveries'}"
    click.echo(count + (f" (limit {limit})" if len(found) == limit else ""))


@events.command("show")
@click.argument("svix_id")
@click.option("--json", "as_json", is_flag=True, help="Print the delivery as JSON.")
def show_event(svix_id: str, as_json: bool) -> None:
    """Show one delivery: status, attempts, each handler's outcome and the payload.

    Exit status: 0 shown, 1 no such delivery or MongoDB unreachable, 2 bad arguments or settings.
    """
    with _database(settings_or_exit()) as db:
        document = db.webhook_events.find_one({"_id": svix_id})
    if document is None:
        fail(f"no delivery with svix-id {svix_id!r}", FAILED)
    shown = plain(document)
    if as_json:
        echo_json(shown)
        return
    payload = shown.pop("payload", None)
    handlers = shown.pop("handlers", None) or {}
    redacted = shown.pop("redacted", None) is True
    for key, value in shown.items():
        click.echo(f"{key + ':':<17} {_when(value) if isinstance(value, datetime) else value}")
    click.echo("handlers:" + ("" if handlers else " -"))
    for key, outcome in handlers.items():
        click.echo(
            f"  {key:<32} {outcome.get('status', '-'):<8} {_when(outcome.get('at'))}  "
            f"{outcome.get('error') or ''}".rstrip()
        )
    if redacted:
        click.echo(f"{'redacted:':<17} {REDACTED_NOTE}")
    click.echo("payload:")
    click.echo(_pretty(payload))


def _pretty(payload: object) -> str:
    import orjson

    if isinstance(payload, dict | list):
        return orjson.dumps(payload, default=str, option=orjson.OPT_INDENT_2).decode()
    return str(payload)


events.add_command(replay_events)
