"""What every `clerk-sync` command shares: exit codes, settings, JSON output, time arguments."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import click

from clerk_sync.errors import ClerkSyncError, StoreUnavailable
from clerk_sync.settings import Settings, load_settings

#: Exit codes scripts can rely on.
OK, FAILED, USAGE = 0, 1, 2

_PYMONGO_NOISE = re.compile(r"\s*\(configured timeouts:[^)]*\)|, Timeout: .*$", re.DOTALL)
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def fail(message: str, code: int = USAGE) -> NoReturn:
    """Print one line to stderr and exit (2 unless told otherwise)."""
    click.echo(f"clerk-sync: {message}", err=True)
    sys.exit(code)


def settings_or_exit() -> Settings:
    """Load settings or exit 2 with the one line that names the bad variable."""
    try:
        return load_settings()
    except ClerkSyncError as error:
        fail(str(error))


def mongodb_url_or_exit(settings: Settings) -> str:
    """MONGODB_URL, else the store of the `clerk-sync serve` running on this data directory."""
    if settings.mongodb_url is not None:
        return settings.mongodb_url.get_secret_value()
    from clerk_sync.cli.devmode import running_server

    server = running_server(settings.clerk_sync_data_dir)
    if server is None:
        fail(
            "MONGODB_URL is not set and no clerk-sync serve is running on "
            f"{settings.clerk_sync_data_dir}: set MONGODB_URL or start clerk-sync serve"
        )
    return server.store_url


def with_store_or_exit(settings: Settings) -> Settings:
    """The settings with `mongodb_url` filled in as `mongodb_url_or_exit` finds it."""
    from pydantic import SecretStr

    url = SecretStr(mongodb_url_or_exit(settings))
    return settings.model_copy(update={"mongodb_url": url})


def run_or_exit[T](work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end; MongoDB unreachable exits 1 with one line, any other
    `ClerkSyncError` (configuration, a plugin) exits 2."""
    from pymongo.errors import PyMongoError

    try:
        return asyncio.run(work)
    except StoreUnavailable as error:
        fail(str(error), FAILED)
    except PyMongoError as error:
        fail(f"MongoDB: {one_line(error)}", FAILED)
    except ClerkSyncError as error:
        fail(str(error))


def echo_json(value: object) -> None:
    """Print JSON for scripts: datetimes as ISO 8601, anything else unknown as text."""
    import orjson

    click.echo(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode())


def one_line(error: BaseException) -> str:
    """An exception as one short line (pymongo's topology dumps and timeouts left out)."""
    text = _PYMONGO_NOISE.sub("", str(error)).replace("\n", " ").strip()
    return text[:300] or type(error).__name__


def parse_since(text: str, now: datetime) -> datetime:
    """`24h`, `7d`, `30m`, `2w`, `90s` before `now`, or an ISO date/datetime (naive means UTC)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as error:
        raise ValueError(
            f"{text!r} is neither an ISO date/datetime nor a duration like 24h or 7d"
        ) from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Since(click.ParamType[datetime, "str | datetime"]):
    """A click parameter for `parse_since`, relative to the time the command runs."""

    name = "when"

    def convert(
        self, value: str | datetime, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value), datetime.now(UTC))
        except ValueError as error:
            self.fail(str(error), param, ctx)
