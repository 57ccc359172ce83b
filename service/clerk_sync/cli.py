"""The `clerk-sync` command line. Exit codes: 0 ok, 1 a check or operation failed, 2 bad usage
or configuration."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from clerk_sync.errors import ClerkSyncError
from clerk_sync.settings import Settings, load_settings


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"clerk-sync: {message}", err=True)
    sys.exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ClerkSyncError as error:
        fail(str(error))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clerk-sync")
def main() -> None:
    """Receive Clerk webhooks, record them in MongoDB and hand them to plugins."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Serve the webhook receiver, probes, metrics and read API."""
    from clerk_sync.server import run

    settings = settings_or_exit()
    try:
        code = run(settings, host=host, port=port, workers=workers)
    except ClerkSyncError as error:
        fail(str(error))
    sys.exit(code)


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins_command(as_json: bool) -> None:
    """List discovered plugins with version, distribution, subscriptions, status and error.

    Exits 1 when a plugin failed to load."""
    import orjson

    from clerk_sync.plugins import discover, load_plugins

    records = load_plugins(discover(), settings_or_exit())
    if as_json:
        click.echo(orjson.dumps([r.as_dict() for r in records]).decode())
    else:
        for r in records:
            subs = ", ".join(r.subscriptions) or "-"
            click.echo(f"{r.name:<16} {r.status:<9} {r.version or '-':<10} {subs}")
            if r.error:
                click.echo(f"  error: {r.error}")
    sys.exit(1 if any(r.status == "failed" for r in records) else 0)
