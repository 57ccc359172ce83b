"""Metrics of the last run: a node-exporter textfile and/or a Pushgateway."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clerk_sync.reconcile.report import Report

LAST_SUCCESS = "clerk_sync_reconcile_last_success_timestamp_seconds"


def metrics_registry(report: Report, last_success: float | None) -> Any:
    """A registry with the run's metrics; `last_success` is left out when None."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    objects = Gauge(
        "clerk_sync_reconcile_objects",
        "Objects by outcome in the last reconcile run",
        ["resource", "outcome"],
        registry=registry,
    )
    for resource in report.resources:
        for outcome, count in resource.counts.items():
            objects.labels(resource.resource, outcome).set(count)
    Gauge(
        "clerk_sync_reconcile_duration_seconds",
        "Wall time of the last reconcile run",
        registry=registry,
    ).set(report.duration_seconds)
    Gauge(
        "clerk_sync_reconcile_last_run_success",
        "1 when the last reconcile run completed without failures, else 0",
        registry=registry,
    ).set(1 if report.ok else 0)
    if last_success is not None:
        Gauge(LAST_SUCCESS, "Unix time of the last successful reconcile", registry=registry).set(
            last_success
        )
    return registry


def previous_last_success(path: str) -> float | None:
    """The last-success timestamp a previous run wrote into the textfile, if any."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:
        return None
    return None


def write_metrics(
    report: Report,
    *,
    metrics_file: str | None = None,
    pushgateway: str | None = None,
    job: str = "clerk-sync-reconcile",
    grouping_key: Mapping[str, str] | None = None,
    finished_at: float | None = None,
) -> None:
    """Write the textfile (atomically) and/or push; a failed run keeps the last success time."""
    from prometheus_client import push_to_gateway, pushadd_to_gateway, write_to_textfile

    finished = time.time() if finished_at is None else finished_at
    if metrics_file is not None:
        last = finished if report.ok else previous_last_success(metrics_file)
        write_to_textfile(metrics_file, metrics_registry(report, last))
    if pushgateway is not None:
        key = dict(grouping_key or {})
        if report.ok:
            push_to_gateway(
                pushgateway, job=job, registry=metrics_registry(report, finished), grouping_key=key
            )
        else:  # POST replaces only the metrics sent, so the last success time stays
            pushadd_to_gateway(
                pushgateway, job=job, registry=metrics_registry(report, None), grouping_key=key
            )
