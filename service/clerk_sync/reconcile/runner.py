"""A whole run: ask the loaded plugins for their reconcilers, then reconcile each resource.

The core knows how to list each resource from the Backend API; what an object becomes in
MongoDB is the plugins' business, declared with `Plugin.reconciler` (docs/plugin-api.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clerk_sync.plugins import discover, load_plugins
from clerk_sync.reconcile.apply import Applier
from clerk_sync.reconcile.client import ClerkClient, RetryPolicy, Sleep
from clerk_sync.reconcile.listing import listing_for
from clerk_sync.reconcile.report import RESOURCES, Options, Report
from clerk_sync.reconcile.resource import ResourceRun
from clerk_sync.settings import load_settings

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase
    from odmantic import Model

    from clerk_sync.plugins import Plugin, Reconciler
    from clerk_sync.settings import Settings

    type Database = AsyncIOMotorDatabase[dict[str, Any]]


def loaded_plugins(settings: Settings | None = None) -> list[Plugin]:
    """The plugins the service would load (entry points, allow and deny lists applied)."""
    records = load_plugins(discover(), settings if settings is not None else load_settings())
    return [r.plugin for r in records if r.plugin is not None]


def reconcilers(plugins: Iterable[Plugin] | None = None) -> list[Reconciler]:
    """Every reconciler of the given plugins (the loaded ones when None), in plugin order."""
    chosen = loaded_plugins() if plugins is None else plugins
    return [rec for plugin in chosen for rec in plugin.reconcilers]


def resources(plugins: Iterable[Plugin] | None = None) -> dict[str, Reconciler]:
    """The first reconciler of each resource (with the built-in plugins, the only one)."""
    found: dict[str, Reconciler] = {}
    for rec in reconcilers(plugins):
        found.setdefault(rec.resource, rec)
    return found


async def ensure_indexes(db: Database, plugins: Iterable[Plugin] | None = None) -> None:
    """The reconciling plugins' indexes (unique `clerk_id` ones make `upsert_if_newer` safe)."""
    from odmantic import AIOEngine

    chosen = loaded_plugins() if plugins is None else list(plugins)
    models: list[type[Model]] = [m for p in chosen if p.reconcilers for m in p.models]
    engine = AIOEngine(client=db.client, database=db.name)
    await engine.configure_database(models, update_existing_indexes=True)


async def reconcile(
    db: Database,
    client: ClerkClient,
    options: Options,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    plugins: Iterable[Plugin] | None = None,
) -> Report:
    """Reconcile the chosen resources in `RESOURCES` order (users, organizations, …)."""
    started = time.monotonic()
    chosen = loaded_plugins() if plugins is None else list(plugins)
    declared = reconcilers(chosen)
    report = Report(dry_run=options.dry_run, started_at=now())
    applier = Applier(db, options, now, declared)
    if not options.dry_run:
        await ensure_indexes(db, chosen)
    for name in RESOURCES:
        if name in options.resources:
            own = [rec for rec in declared if rec.resource == name]
            listing = listing_for(name, client, db, declared)
            run = ResourceRun(applier, listing, name, own, _progress(options))
            report.resources.append(await run.run())
    report.duration_seconds = time.monotonic() - started
    report.requests, report.rate_limited = client.requests, client.rate_limited
    return report


def plugin_resources(plugin: Plugin) -> tuple[str, ...]:
    """The resources `plugin` reconciles, in `RESOURCES` order."""
    declared = {rec.resource for rec in plugin.reconcilers}
    return tuple(name for name in RESOURCES if name in declared)


async def reconcile_plugin(
    db: Database,
    client: ClerkClient,
    plugin: Plugin,
    options: Options | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Report:
    """Run one plugin's reconcilers only, over the resources it declares (those of `options`
    among them when given): what `plugins catch-up NAME --reconcile` needs."""
    chosen = plugin_resources(plugin)
    if options is None:
        options = Options(resources=chosen)
    else:
        wanted = tuple(name for name in chosen if name in options.resources)
        options = dataclasses.replace(options, resources=wanted)
    return await reconcile(db, client, options, now=now, plugins=[plugin])


def _progress(options: Options) -> Callable[[str], None]:
    def say(message: str) -> None:
        if options.progress is not None:
            options.progress(message)

    return say


async def run_reconcile(
    mongodb_url: str,
    database: str,
    api_url: str,
    secret_key: str,
    options: Options,
    *,
    sleep: Sleep = asyncio.sleep,
    retry: RetryPolicy | None = None,
    plugins: Iterable[Plugin] | None = None,
) -> Report:
    """Open MongoDB and the Backend API client, reconcile, close both."""
    from motor.motor_asyncio import AsyncIOMotorClient

    mongo: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        mongodb_url, tz_aware=True, appname="clerk-sync-reconcile"
    )
    client = ClerkClient(api_url, secret_key, sleep=sleep, retry=retry)
    try:
        return await reconcile(mongo[database], client, options, plugins=plugins)
    finally:
        await client.aclose()
        mongo.close()
