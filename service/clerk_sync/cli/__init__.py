"""The `clerk-sync` command line. Exit codes: 0 ok, 1 a check or operation failed, 2 bad usage
or configuration.

One module per command group (`check`, `db`, `events` with `replay`, `plugins` with `catchup`,
`reconcile`, `send_test`), `scaffold` for `plugin new`, `server` for `serve` (with `preflight`,
what serve refuses, and `devmode`, the development mode's files), `support` for what they share.
The top layer: it may import any layer of the core; nothing in the core imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clerk_sync.cli.check import check
from clerk_sync.cli.db import db
from clerk_sync.cli.events import events
from clerk_sync.cli.plugins import plugins
from clerk_sync.cli.reconcile import reconcile
from clerk_sync.cli.send_test import send_test
from clerk_sync.cli.support import FAILED, fail, settings_or_exit
from clerk_sync.errors import ClerkSyncError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clerk-sync")
def main() -> None:
    """Receive Clerk webhooks, record them in MongoDB and hand them to plugins.

    Exit status of every command: 0 ok, 1 a check or operation failed, 2 bad usage or
    configuration.
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--server",
    "server_name",
    default="granian",
    show_default=True,
    type=click.Choice(["granian", "hypercorn"]),
    help="HTTP server to run the app under.",
)
@click.option(
    "--dev",
    is_flag=True,
    help="Development mode when MONGODB_URL is unset (as CLERK_SYNC_DEV=1 does).",
)
def serve(host: str, port: int, workers: int, server_name: str, dev: bool) -> None:
    """Serve the webhook receiver, probes, metrics and read API.

    MONGODB_URL is required, unless development mode is chosen (--dev, CLERK_SYNC_DEV=1, or
    `make run`): then, with MONGODB_URL unset, an embedded store in CLERK_SYNC_DATA_DIR, a
    development signing secret made there once when CLERK_WEBHOOK_SIGNING_SECRET is unset, and
    a banner on stderr saying what to type next. With MONGODB_URL set, --dev changes nothing.

    Exit status: 0 after a clean stop, 2 for bad configuration (MONGODB_URL unset or blank
    without development mode) or a port in use.
    """
    from clerk_sync.cli.server import SERVERS, run

    settings = settings_or_exit()
    server = next(name for name in SERVERS if name == server_name)
    if dev:
        settings = settings.model_copy(update={"clerk_sync_dev": True})
    try:
        code = run(settings, host=host, port=port, workers=workers, server=server)
    except ClerkSyncError as error:
        fail(str(error))
    sys.exit(code)


@main.group()
def plugin() -> None:
    """Write plugins: `clerk-sync plugin new NAME` starts one."""


def _plugin_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from clerk_sync.cli.scaffold import NAME

    if not NAME.match(value):
        raise click.BadParameter(
            "lower-case letters, digits, '-' and '_', starting with a letter (at most 41)"
        )
    return value


@plugin.command("new")
@click.argument("name", callback=_plugin_name)
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the NAME folder.",
)
def plugin_new(name: str, directory: Path) -> None:
    """Create an installable plugin distribution `clerk-sync-NAME` in DIR/NAME.

    It has a pyproject with the `clerk_sync.plugins` entry point NAME, the package
    `clerk_sync_NAME` (dashes become underscores) with a settings model, an ODMantic model and
    a handler, a README, and tests that deliver a signed event to a real app and check MongoDB.

    Exit status: 0 created, 1 DIR/NAME exists and is not empty, 2 bad NAME.
    """
    from clerk_sync.cli.scaffold import Names, create, files

    try:
        target = create(name, directory)
    except FileExistsError as error:
        fail(str(error), FAILED)
    names = Names(name)
    click.echo(f"created {target}: distribution {names.distribution}, package {names.package}")
    for relative in files(name):
        click.echo(f"  {relative}")
    click.echo(f"next: cd {target} && pip install -e '.[test]' && pytest")


main.add_command(check)
main.add_command(send_test)
main.add_command(events)
main.add_command(plugins)
main.add_command(reconcile)
main.add_command(db)
