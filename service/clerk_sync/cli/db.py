"""`clerk-sync db find`: read a collection of the service's database (users, sessions, ...)."""

from __future__ import annotations

import sys
from typing import Any

import click

from clerk_sync.cli.support import (
    FAILED,
    OK,
    echo_json,
    fail,
    mongodb_url_or_exit,
    one_line,
    settings_or_exit,
)


@click.group()
def db() -> None:
    """Read the service's database: MONGODB_URL and MONGODB_DB like the service, or without
    MONGODB_URL the store of the `clerk-sync serve` running on CLERK_SYNC_DATA_DIR."""


def _filter(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, Any]:
    import orjson

    try:
        found = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}") from error
    if not isinstance(found, dict):
        raise click.BadParameter('a JSON object, like \'{"clerk_id": "user_..."}\'')
    return found


@db.command("find")
@click.argument("collection")
@click.argument("query", metavar="[FILTER]", default="{}", callback=_filter)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
def find(collection: str, query: dict[str, Any], limit: int, as_json: bool) -> None:
    """Print the documents of COLLECTION (`users`, `sessions`, `organizations`, ...) that match
    FILTER, a MongoDB query as JSON, newest first.

    Exit status: 0 printed (maybe nothing), 1 MongoDB unreachable, 2 bad arguments or settings.
    """
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    settings = settings_or_exit()
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongodb_url_or_exit(settings), tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        cursor = client[settings.mongodb_db][collection].find(query).sort("_id", -1)
        found = list(cursor.limit(limit))
    except PyMongoError as error:
        fail(f"MongoDB: {one_line(error)}", FAILED)
    finally:
        client.close()
    if as_json:
        echo_json(found)
    else:
        _print(found, collection)
    sys.exit(OK)


def _print(found: list[dict[str, Any]], collection: str) -> None:
    import orjson

    for document in found:
        text = orjson.dumps(document, default=str, option=orjson.OPT_INDENT_2).decode()
        click.echo(text)
    plural = "document" if len(found) == 1 else "documents"
    click.echo(f"{len(found)} {plural} in {collection}")
