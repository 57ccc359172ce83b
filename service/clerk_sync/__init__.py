"""clerk-sync: Clerk webhooks, verified, recorded in MongoDB, and handed to plugins."""

from clerk_sync.errors import ClerkSyncError, ConfigError, PluginError
from clerk_sync.events import EVENT_TYPES, Event
from clerk_sync.plugins import Context, Plugin
from clerk_sync.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from clerk_sync.app import create_app

__version__ = "0.1.0"
__all__ = [
    "EVENT_TYPES",
    "ClerkSyncError",
    "ConfigError",
    "Context",
    "Event",
    "Plugin",
    "PluginError",
    "Settings",
    "__version__",
    "create_app",
]


def __getattr__(name: str) -> object:
    """Import the HTTP layer (Quart) only when `create_app` is asked for."""
    if name == "create_app":
        from clerk_sync.app import create_app

        return create_app
    raise AttributeError(name)
