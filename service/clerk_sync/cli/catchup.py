"""`clerk-sync plugins catch-up NAME`: one plugin over the deliveries still recorded, then
optionally its reconcilers (DESIGN.md "Catching up"; the work is `webhooks.catchup`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from clerk_sync.cli.support import fail
from clerk_sync.errors import PluginError, StoreUnavailable
from clerk_sync.webhooks.catchup import CatchUp, CatchUpReport, Sleep

if TYPE_CHECKING:
    from clerk_sync.plugins import Plugin
    from clerk_sync.reconcile import Report
    from clerk_sync.settings import Settings


def installed_plugin(name: str, settings: Settings) -> Plugin:
    """The loaded plugin `name`, else exit 2 with one line: not installed, disabled, failed."""
    from clerk_sync.plugins import discover, load_plugins

    records = load_plugins(discover(), settings)
    record = next((r for r in records if r.name == name), None)
    if record is None:
        installed = ", ".join(sorted(r.name for r in records)) or "none"
        fail(f"no installed plugin is named {name!r} (installed: {installed})")
    if record.status == "disabled":
        fail(
            f"plugin {name!r} is disabled by CLERK_SYNC_PLUGINS or CLERK_SYNC_DISABLED_PLUGINS: "
            "enable it, then catch it up"
        )
    if record.plugin is None:
        fail(record.error or f"plugin {name!r} failed to load")
    return record.plugin


async def run_catch_up(
    settings: Settings,
    plugin: Plugin,
    *,
    since: datetime | None = None,
    progress: bool = False,
    sleep: Sleep = asyncio.sleep,
) -> CatchUpReport:
    """Catch `plugin` up on the configured store, alone (whatever the plugin lists say: the
    caller chose it); a progress bar on stderr when `progress`."""
    from clerk_sync.runtime import Runtime

    alone = settings.model_copy(
        update={
            "clerk_sync_plugins": None,
            "clerk_sync_disabled_plugins": (),
            "clerk_sync_required_plugins": (),
        }
    )
    runtime = Runtime.build(alone, [plugin], log_stream=sys.stderr)  # stdout is the output
    [record] = runtime.records
    if record.plugin is None:
        raise PluginError(record.error or f"plugin {plugin.name!r} failed to load")
    await runtime.start(monitor=False, group_commit=False)
    try:
        if not runtime.indexes_ready or runtime.store is None:
            raise StoreUnavailable("MongoDB: no answer (see the log line above)")
        lease = timedelta(seconds=settings.lease_seconds)
        catch_up = CatchUp(
            runtime.store.events,
            runtime.receiver.dispatcher,
            plugin,
            lease=lease,
            log=runtime.log,
            sleep=sleep,
        )
        listed = await catch_up.candidates(since)
        bar = click.progressbar(
            length=len(listed),
            label=f"catching up {plugin.name}",
            file=sys.stderr,
            hidden=not progress,
        )
        with bar:
            return await catch_up.run(listed, lambda: bar.update(1))
    finally:
        await runtime.stop()


def run_reconcilers(settings: Settings, plugin: Plugin, *, interactive: bool) -> Report:
    """`reconcile_plugin`: the resources `plugin` declares reconcilers for, that plugin only."""
    return asyncio.run(_reconcile_plugin(settings, plugin, interactive=interactive))


async def _reconcile_plugin(settings: Settings, plugin: Plugin, *, interactive: bool) -> Report:
    from motor.motor_asyncio import AsyncIOMotorClient

    from clerk_sync.reconcile import ClerkClient, Options, plugin_resources, reconcile_plugin

    assert settings.mongodb_url is not None
    assert settings.clerk_secret_key is not None
    options = Options(
        resources=plugin_resources(plugin),
        progress=(lambda line: click.echo(line, err=True)) if interactive else None,
    )
    mongo: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        settings.mongodb_url.get_secret_value(), tz_aware=True, appname="clerk-sync-catch-up"
    )
    client = ClerkClient(settings.clerk_api_url, settings.clerk_secret_key.get_secret_value())
    try:
        return await reconcile_plugin(mongo[settings.mongodb_db], client, plugin, options)
    finally:
        await client.aclose()
        mongo.close()


def summary(report: CatchUpReport) -> str:
    """`catch-up NAME: N deliveries: A applied, D already done, F failed, S skipped (…)`."""
    counts, looked_at = report.counts, len(report.deliveries)
    line = (
        f"catch-up {report.plugin}: {looked_at} {'delivery' if looked_at == 1 else 'deliveries'}: "
        f"{counts['applied']} applied, {counts['already_done']} already done, "
        f"{counts['failed']} failed, {counts['skipped']} skipped"
    )
    reasons = {d["reason"] for d in report.deliveries if d.get("reason")}
    if reasons:
        line += " (" + ", ".join(f"{report.skipped(r)} {r}" for r in sorted(reasons)) + ")"
    return line


def lines(report: CatchUpReport) -> Iterator[str]:
    """One line per delivery that failed or was left to another attempt, then the summary."""
    for d in report.deliveries:
        if d["result"] == "failed":
            yield f"{d['svix_id']}: failed: {'; '.join(d.get('errors', []))}"
        elif d.get("reason") == "busy":
            yield f"{d['svix_id']}: skipped: another attempt held it throughout; run again"
        elif d.get("reason") == "stale":
            yield (
                f"{d['svix_id']}: skipped: left processing by an interrupted attempt; "
                "`clerk-sync events replay --stale` finishes it, then run again"
            )
    yield summary(report)


def as_json(report: CatchUpReport, reconciled: Report | None) -> dict[str, Any]:
    return report.as_dict() | {"reconcile": reconciled.as_dict() if reconciled else None}
