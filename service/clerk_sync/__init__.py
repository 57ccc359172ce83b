"""clerk-sync: Clerk webhooks, verified, recorded in MongoDB, and handed to plugins."""

from clerk_sync.errors import ClerkSyncError, ConfigError, PluginError
from clerk_sync.events import EVENT_TYPES, Event
from clerk_sync.plugins import Context, Plugin
from clerk_sync.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from clerk_sync.app import create_app
    from clerk_sync.auth.tokens import Session
    from clerk_sync.extension import ClerkSync, lifespan

__version__ = "0.1.0"
__all__ = [
    "EVENT_TYPES",
    "ClerkSync",
    "ClerkSyncError",
    "ConfigError",
    "Context",
    "Event",
    "Plugin",
    "PluginError",
    "Session",
    "Settings",
    "__version__",
    "create_app",
    "lifespan",
]


def __getattr__(name: str) -> object:
    """Import the HTTP layer (Quart) only when `create_app`, `ClerkSync` or `lifespan` is
    asked for."""
    if name == "create_app":
        from clerk_sync.app import create_app

        return create_app
    if name in ("ClerkSync", "lifespan"):
        from clerk_sync import extension

        return getattr(extension, name)
    if name == "Session":
        from clerk_sync.auth.tokens import Session

        return Session
    raise AttributeError(name)
