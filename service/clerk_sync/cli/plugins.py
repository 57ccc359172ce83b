"""`clerk-sync plugins`: list the discovered plugins; `plugins catch-up NAME` runs one of them
over the deliveries still recorded (cli/catchup.py)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from clerk_sync.cli.support import (
    FAILED,
    OK,
    Since,
    echo_json,
    fail,
    one_line,
    run_or_exit,
    settings_or_exit,
    with_store_or_exit,
)

if TYPE_CHECKING:
    from clerk_sync.reconcile import Report
    from clerk_sync.webhooks.catchup import CatchUpReport


@click.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List discovered plugins with version, distribution, subscriptions, status and error.

    Exits 1 when a plugin failed to load. `clerk-sync plugins catch-up NAME` applies the
    deliveries already recorded to a plugin added or enabled later."""
    if ctx.invoked_subcommand is not None:
        return
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


@plugins.command("catch-up")
@click.argument("name")
@click.option(
    "--since",
    type=Since(),
    help="Only deliveries received at or after: ISO date/datetime, 24h, 7d.",
)
@click.option(
    "--reconcile",
    "then_reconcile",
    is_flag=True,
    help="Then run the plugin's reconcilers against the Backend API (needs CLERK_SECRET_KEY).",
)
@click.option("--json", "as_json", is_flag=True, help="Print counts and results as JSON.")
def catch_up(name: str, since: datetime | None, then_reconcile: bool, as_json: bool) -> None:
    """Run plugin NAME over the deliveries still in `webhook_events` of the types it
    subscribes to, whatever their status, oldest event first: for a plugin installed or
    enabled after they arrived.

    Only NAME's handlers run, and only those that have not yet succeeded for a delivery; each
    outcome is written into the delivery, and an `ignored` delivery whose handlers succeed
    becomes `processed`, so a later retry of that svix-id is a duplicate. Redacted deliveries
    (email.created, sms.created) are skipped: only Svix can resend them. Safe to run twice and
    while the service serves: a delivery another attempt holds is left to it and looked at
    again once that attempt is over; one an interrupted attempt left `processing` is skipped
    (`events replay --stale` finishes it). A progress bar on a terminal, then a summary.

    Exit status: 0 caught up, 1 a handler failed, a delivery stayed held by another attempt or
    was left by an interrupted one, the reconcile failed or MongoDB is unreachable, 2 bad
    arguments or configuration (NAME not installed, disabled or failing to load; --reconcile
    without CLERK_SECRET_KEY).
    """
    from clerk_sync.cli import catchup

    settings = settings_or_exit()
    plugin = catchup.installed_plugin(name, settings)
    if then_reconcile and settings.clerk_secret_key is None:
        fail("CLERK_SECRET_KEY is not set: --reconcile reads Clerk's Backend API with it")
    settings = with_store_or_exit(settings)
    interactive = sys.stderr.isatty() and not as_json
    if interactive and settings.log_level in ("debug", "info"):  # the bar, not a line each
        settings = settings.model_copy(update={"log_level": "warning"})
    report = run_or_exit(catchup.run_catch_up(settings, plugin, since=since, progress=interactive))
    reconciled = None
    if then_reconcile and plugin.reconcilers:
        try:
            reconciled = catchup.run_reconcilers(settings, plugin, interactive=interactive)
        except Exception as error:  # MongoDB unreachable and the like: one line, exit 1
            fail(f"reconcile failed: {one_line(error)}", FAILED)
    _print(report, reconciled, as_json=as_json, asked=then_reconcile)
    ok = report.ok and (reconciled is None or reconciled.ok)
    sys.exit(OK if ok else FAILED)


def _print(report: CatchUpReport, reconciled: Report | None, *, as_json: bool, asked: bool) -> None:
    from clerk_sync.cli import catchup
    from clerk_sync.reconcile import iter_lines

    if as_json:
        echo_json(catchup.as_json(report, reconciled))
        return
    for line in catchup.lines(report):
        click.echo(line)
    if reconciled is not None:
        for line in iter_lines(reconciled):
            click.echo(line)
    elif asked:
        click.echo(f"reconcile: plugin {report.plugin!r} declares no reconcilers")
