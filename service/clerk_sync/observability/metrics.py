"""Prometheus metrics of one app; multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from clerk_sync.plugins import PluginRecord

OUTCOMES = (
    "processed",
    "duplicate",
    "ignored",
    "rejected",
    "failed",
    "in_progress",
    "invalid_signature",
    "bad_request",
    "too_large",
    "unavailable",
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LAG_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 48 * 3600)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False


class WorkersCollector(MultiProcessCollector):
    """The merged metrics of every worker's files, leaving out a file that another worker has
    created and not yet sized: it holds nothing, and prometheus-client 0.26.0 fails the whole
    merge on it (prometheus/client_python#1199), which made a worker starting beside another
    fail its start-up, and would fail a scrape."""

    def collect(self) -> Any:
        pattern = os.path.join(self._path, "*.db")
        return self.merge([f for f in glob.glob(pattern) if _sized(f)], accumulate=True)  # type: ignore[no-untyped-call]


class Metrics:
    """Every metric of DESIGN.md, registered on a registry owned by the app (never the global)."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        own = None if self.multiprocess else self.registry
        self._delivery_metrics(own)
        self._handler_metrics(own)
        self._state_metrics(own)
        self._delivery_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._handler_children: dict[tuple[str, str], tuple[Histogram, Counter]] = {}
        if self.multiprocess:
            WorkersCollector(self.registry)  # type: ignore[no-untyped-call]

    def _delivery_metrics(self, own: CollectorRegistry | None) -> None:
        """Per delivery: its answer, how long it took, how late it arrived."""
        self.webhooks = Counter(
            "clerk_sync_webhooks",
            "Webhook deliveries by event type and outcome.",
            ["event_type", "outcome"],
            registry=own,
        )
        self.webhook_duration = Histogram(
            "clerk_sync_webhook_duration_seconds",
            "Time to answer a webhook delivery.",
            ["event_type"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        )
        self.delivery_lag = Histogram(
            "clerk_sync_delivery_lag_seconds",
            "Arrival time minus the envelope timestamp.",
            buckets=_LAG_BUCKETS,
            registry=own,
        )

    def _handler_metrics(self, own: CollectorRegistry | None) -> None:
        """Per handler run, and the group commit of their successful outcomes."""
        self.handler_duration = Histogram(
            "clerk_sync_handler_duration_seconds",
            "Time one plugin handler took for one event.",
            ["plugin", "event_type"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        )
        self.handler_failures = Counter(
            "clerk_sync_handler_failures",
            "Handler runs that raised or timed out.",
            ["plugin", "event_type"],
            registry=own,
        )
        self.outcome_batch_size = Histogram(
            "clerk_sync_outcome_batch_size",
            "Successful outcomes written together by one group commit.",
            buckets=_BATCH_BUCKETS,
            registry=own,
        )
        self.outcome_flush_failures = Counter(
            "clerk_sync_outcome_flush_failures",
            "Group commits of successful outcomes that failed (retried at the next interval).",
            registry=own,
        )

    def _state_metrics(self, own: CollectorRegistry | None) -> None:
        """What the process knows of MongoDB and of its plugins."""
        self.mongodb_up = Gauge(
            "clerk_sync_mongodb_up",
            "1 when the last MongoDB check succeeded.",
            registry=own,
            multiprocess_mode="livemin",
        )
        self.stale_deliveries = Gauge(
            "clerk_sync_stale_deliveries",
            "Deliveries left processing with an expired lease, after the last stale sweep.",
            registry=own,
            multiprocess_mode="livemax",
        )
        self.plugin_info = Gauge(
            "clerk_sync_plugin_info",
            "Discovered plugins with their version and load status.",
            ["plugin", "version", "status"],
            registry=own,
            multiprocess_mode="livemax",
        )

    def delivery(self, event_type: str, outcome: str) -> tuple[Counter, Histogram]:
        """The children of `webhooks` and `webhook_duration` for one delivery's labels, looked
        up once per label set (the label sets are bounded: known types by outcomes)."""
        key = (event_type, outcome)
        found = self._delivery_children.get(key)
        if found is None:
            found = (
                self.webhooks.labels(event_type, outcome),
                self.webhook_duration.labels(event_type),
            )
            self._delivery_children[key] = found
        return found

    def handler(self, plugin: str, event_type: str) -> tuple[Histogram, Counter]:
        """The children of `handler_duration` and `handler_failures` for one handler run."""
        key = (plugin, event_type)
        found = self._handler_children.get(key)
        if found is None:
            found = (
                self.handler_duration.labels(plugin, event_type),
                self.handler_failures.labels(plugin, event_type),
            )
            self._handler_children[key] = found
        return found

    def set_plugins(self, records: Iterable[PluginRecord]) -> None:
        for record in records:
            self.plugin_info.labels(record.name, record.version or "", record.status).set(1)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
