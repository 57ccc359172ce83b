"""What one running clerk-sync owns, without HTTP: used by the app factory and by the CLI."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from clerk_sync.errors import ConfigError
from clerk_sync.observability.logs import make_logger
from clerk_sync.observability.metrics import Metrics
from clerk_sync.plugins import PluginRecord, Router, direct, discover, load_plugins, require
from clerk_sync.storage.redaction import redact_stored
from clerk_sync.storage.store import Store
from clerk_sync.webhooks.pipeline import Receiver
from clerk_sync.webhooks.sweeper import Sweeper

if TYPE_CHECKING:
    from odmantic import Model
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.plugins import Plugin
    from clerk_sync.settings import Settings
    from clerk_sync.webhooks.outcomes import OutcomeWriter

MONITOR_INTERVAL = 5.0


@dataclass(slots=True)
class Runtime:
    """Settings, plugins, routing table, metrics, receiver and (once started) the store."""

    settings: Settings
    records: list[PluginRecord]
    router: Router
    metrics: Metrics
    receiver: Receiver
    log: FilteringBoundLogger
    store: Store | None = None
    writer: OutcomeWriter | None = None
    flusher: asyncio.Task[None] | None = None
    indexes_ready: bool = False
    shutting_down: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        plugins: Iterable[Plugin] | None = None,
        *,
        log_stream: TextIO | None = None,
    ) -> Runtime:
        """Load plugins (from entry points unless given) and wire everything but storage.

        Logs go to stdout unless `log_stream` is given (the CLI keeps stdout for its output)."""
        log = make_logger(settings.log_level, settings.log_format, log_stream)
        records = load_plugins(direct(plugins) if plugins is not None else discover(), settings)
        for record in records:
            if record.status == "failed":
                log.error("plugin_load_failed", plugin=record.name, error=record.error)
        require(records, settings.clerk_sync_required_plugins)
        metrics = Metrics()
        metrics.set_plugins(records)
        router = Router(records)
        receiver = Receiver(settings, router, log, metrics)
        return cls(settings, records, router, metrics, receiver, log)

    @property
    def models(self) -> list[type[Model]]:
        return [m for r in self.records if r.plugin is not None for m in r.plugin.models]

    async def start(self, *, monitor: bool = True, group_commit: bool = True) -> None:
        """Connect to MongoDB and create indexes; when it is down, keep retrying in background.
        With `monitor` (the service) the MongoDB monitor and the stale-delivery sweeper run too.

        With `group_commit` the `processed` outcomes of successful deliveries are written in
        batches after their answers (CLERK_SYNC_OUTCOME_FLUSH_SECONDS); the CLI passes False to
        write each before it reports it."""
        url = self.settings.mongodb_url
        if url is None:
            raise ConfigError("MONGODB_URL: not set (`clerk-sync serve` starts an embedded store)")
        self.store = Store(url.get_secret_value(), self.settings.mongodb_db)
        self.writer = self.receiver.attach(
            self.store.events, self.store.engine, self.store.reach, group_commit=group_commit
        )
        await self.prepare()
        if self.writer is not None:
            self.flusher = asyncio.create_task(self.writer.run())
            self.tasks.append(self.flusher)
        if monitor:
            self.tasks.append(asyncio.create_task(self._monitor()))
            self.tasks.append(asyncio.create_task(self._sweeper().run()))

    def _sweeper(self) -> Sweeper:
        """The stale-delivery sweeper of this process (one replica at a time sweeps)."""
        assert self.store is not None
        interval = self.settings.clerk_sync_stale_sweep_seconds
        return Sweeper(self.store, self.receiver, self.metrics, self.log, interval)

    async def prepare(self) -> None:
        """Create indexes and redact stored deliveries that hold secrets (a one-off step that
        finds nothing once done); on failure log, mark MongoDB down and leave it to the monitor."""
        assert self.store is not None
        try:
            await self.store.ensure_indexes(
                self.models, self.settings.clerk_sync_event_retention_days
            )
            redacted = await redact_stored(self.store.events.collection)
            if redacted:
                self.log.info("stored_deliveries_redacted", count=redacted)
        except Exception as error:  # any failure here is retried by the monitor
            self.metrics.mongodb_up.set(0)
            self.log.warning("indexes_pending", error=f"{type(error).__name__}: {error}")
            return
        self.indexes_ready = True
        self.metrics.mongodb_up.set(1)

    async def _monitor(self) -> None:
        """Keep `mongodb_up` current and finish index creation once MongoDB answers."""
        assert self.store is not None
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            if not self.indexes_ready:
                await self.prepare()
                continue
            up = await self.store.ping(within=1.0)
            self.metrics.mongodb_up.set(1 if up else 0)

    def begin_shutdown(self, delay: float) -> None:
        """From now on readiness fails (`shutting down`); routes are served until the listener
        closes `delay` seconds later (DESIGN.md, "Shut-down")."""
        if not self.shutting_down:
            self.shutting_down = True
            self.log.info("shutting_down", delay_seconds=delay, pid=os.getpid())

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.writer is not None:
            await self.writer.close()  # every queued outcome, before the store closes
        if self.store is not None:
            self.store.close()

    def describe_plugins(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.records]
