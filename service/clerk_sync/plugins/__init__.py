"""Plugins: the plugin API (`Plugin`, `Context`, reconcilers), the loader, the routing table.

Every plugin, built-in ones included, comes in through this package. May import
`clerk_sync.events`, `clerk_sync.storage`, `clerk_sync.settings` and `clerk_sync.errors`; never
HTTP code, the delivery path, reconcile or the CLI, and never a plugin distribution.
"""

from clerk_sync.plugins.api import (
    RECONCILABLE,
    Context,
    Handler,
    Plugin,
    Projection,
    Reconciler,
    Subscription,
)
from clerk_sync.plugins.loader import (
    ENTRY_POINT_GROUP,
    Candidate,
    PluginRecord,
    PluginStatus,
    direct,
    discover,
    load_plugins,
    require,
)
from clerk_sync.plugins.routing import Router

__all__ = [
    "ENTRY_POINT_GROUP",
    "RECONCILABLE",
    "Candidate",
    "Context",
    "Handler",
    "Plugin",
    "PluginRecord",
    "PluginStatus",
    "Projection",
    "Reconciler",
    "Router",
    "Subscription",
    "direct",
    "discover",
    "load_plugins",
    "require",
]
