"""`clerk-sync reconcile`: bring MongoDB in line with Clerk's Backend API (docs/reconcile.md)."""

from __future__ import annotations

import asyncio
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
    mongodb_url_or_exit,
    one_line,
    settings_or_exit,
)

if TYPE_CHECKING:
    from clerk_sync.reconcile import Options, Report


@click.command()
@click.option("--users", is_flag=True, help="Reconcile users.")
@click.option("--organizations", is_flag=True, help="Reconcile organizations.")
@click.option("--memberships", is_flag=True, help="Reconcile organization memberships.")
@click.option("--roles", is_flag=True, help="Reconcile organization roles.")
@click.option("--permissions", is_flag=True, help="Reconcile organization permissions.")
@click.option("--domains", is_flag=True, help="Reconcile organization domains.")
@click.option("--invitations", is_flag=True, help="Reconcile application invitations.")
@click.option("--waitlist-entries", is_flag=True, help="Reconcile waitlist entries.")
@click.option("--plans", is_flag=True, help="Reconcile billing plans and their features.")
@click.option("--subscription-items", is_flag=True, help="Reconcile billing subscription items.")
@click.option(
    "--subscriptions", is_flag=True, help="Reconcile the billing subscription of each payer."
)
@click.option(
    "--since",
    type=Since(),
    default=None,
    help="Only compare objects updated since then (24h, 7d, ISO date); tombstones nothing.",
)
@click.option("--dry-run", is_flag=True, help="Print the differences; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--page-size",
    default=100,
    show_default=True,
    type=click.IntRange(1, 500),
    help="Objects per Backend API request (limit=).",
)
@click.option("--restart", is_flag=True, help="Ignore an unfinished checkpoint; list from 0.")
@click.option(
    "--max-tombstone-fraction",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Refuse to tombstone more than this share of live documents.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the run's metrics here (node-exporter textfile format).",
)
@click.option("--pushgateway", default=None, help="Push the run's metrics to this Pushgateway.")
def reconcile(
    users: bool,
    organizations: bool,
    memberships: bool,
    roles: bool,
    permissions: bool,
    domains: bool,
    invitations: bool,
    waitlist_entries: bool,
    plans: bool,
    subscription_items: bool,
    subscriptions: bool,
    since: datetime | None,
    dry_run: bool,
    as_json: bool,
    page_size: int,
    restart: bool,
    max_tombstone_fraction: float,
    metrics_file: str | None,
    pushgateway: str | None,
) -> None:
    """Page through Clerk's Backend API and apply every object as a webhook would.

    Without a resource flag all of them are reconciled. Objects gone from Clerk are tombstoned
    after a complete listing only. Exits 1 when a listing stayed incomplete or objects failed.
    """
    from clerk_sync.reconcile import RESOURCES, Options, iter_lines

    flags: tuple[bool, ...] = (users, organizations, memberships, roles, permissions, domains)
    flags += (invitations, waitlist_entries, plans, subscription_items, subscriptions)
    chosen = tuple(name for name, wanted in zip(RESOURCES, flags, strict=True) if wanted)
    interactive = sys.stderr.isatty() and not as_json
    options = Options(
        resources=chosen or RESOURCES,
        since=since,
        dry_run=dry_run,
        page_size=page_size,
        restart=restart,
        max_tombstone_fraction=max_tombstone_fraction,
        progress=_progress if interactive else None,
    )
    report = _run(options)
    if as_json:
        echo_json(report.as_dict())
    else:
        for line in iter_lines(report):
            click.echo(line)
    if not dry_run and (metrics_file or pushgateway):
        _write_metrics(report, metrics_file, pushgateway)
    sys.exit(OK if report.ok else FAILED)


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _run(options: Options) -> Report:
    """Reconcile with the configured MongoDB, Backend API and loaded plugins; exit on failure."""
    from clerk_sync.reconcile import loaded_plugins, run_reconcile

    settings = settings_or_exit()
    url = mongodb_url_or_exit(settings)
    if settings.clerk_secret_key is None:
        fail("CLERK_SECRET_KEY is not set: reconcile reads Clerk's Backend API with it")
    secret = settings.clerk_secret_key.get_secret_value()
    plugins = loaded_plugins(settings)
    try:
        return asyncio.run(
            run_reconcile(
                url, settings.mongodb_db, settings.clerk_api_url, secret, options, plugins=plugins
            )
        )
    except Exception as error:  # MongoDB unreachable and the like: one line, exit 1
        fail(f"reconcile failed: {one_line(error)}", FAILED)


def _write_metrics(report: Report, metrics_file: str | None, pushgateway: str | None) -> None:
    from clerk_sync.reconcile import write_metrics

    try:
        write_metrics(report, metrics_file=metrics_file, pushgateway=pushgateway)
    except Exception as error:
        fail(f"could not write metrics: {one_line(error)}", FAILED)
