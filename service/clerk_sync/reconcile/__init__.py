"""Reconcile MongoDB with Clerk's Backend API: the safety net for lost or failed webhooks.

Every object listed by the Backend API goes through the projection a plugin declared for its
resource (`Plugin.reconciler`) and the same order-safe write (`upsert_if_newer`) as a webhook, so
a reconcile racing a webhook can never leave the older version behind, and tombstones stay final.
Objects live in MongoDB but absent from a *complete* listing are checked once more by id and
tombstoned only when Clerk answers that they are gone. Progress is checkpointed per resource in
`reconcile_state`, so an interrupted run resumes where it stopped; documents seen by a run carry
its id in `last_reconciled_run`.

Modules: `client` (the Backend API, with `catalog`, `signups` and `billing` for the listings
beyond users, organizations and memberships), `listing` (what a resource's run lists and which
resources are never tombstoned), `runner` (a whole run, or one plugin's reconcilers),
`resource` (one resource's run),
`apply` (one object), `checkpoint`, `report` (options, outcome counts), `metrics` (textfile and
Pushgateway). May import `clerk_sync.plugins`, `clerk_sync.events`, `clerk_sync.storage`,
`clerk_sync.settings` and `clerk_sync.errors`; never HTTP code, the delivery path or the CLI.
"""

from clerk_sync.reconcile.checkpoint import MARKER, STATE_COLLECTION
from clerk_sync.reconcile.client import (
    ClerkClient,
    ReconcileError,
    RetryPolicy,
    retry_after_seconds,
)
from clerk_sync.reconcile.metrics import metrics_registry, previous_last_success, write_metrics
from clerk_sync.reconcile.report import (
    OUTCOMES,
    RESOURCES,
    Difference,
    Options,
    Report,
    ResourceReport,
    iter_lines,
)
from clerk_sync.reconcile.runner import (
    ensure_indexes,
    loaded_plugins,
    plugin_resources,
    reconcile,
    reconcile_plugin,
    reconcilers,
    resources,
    run_reconcile,
)

__all__ = [
    "MARKER",
    "OUTCOMES",
    "RESOURCES",
    "STATE_COLLECTION",
    "ClerkClient",
    "Difference",
    "Options",
    "ReconcileError",
    "Report",
    "ResourceReport",
    "RetryPolicy",
    "ensure_indexes",
    "iter_lines",
    "loaded_plugins",
    "metrics_registry",
    "plugin_resources",
    "previous_last_success",
    "reconcile",
    "reconcile_plugin",
    "reconcilers",
    "resources",
    "retry_after_seconds",
    "run_reconcile",
    "write_metrics",
]
