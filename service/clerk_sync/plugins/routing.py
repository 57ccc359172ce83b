"""The routing table from event type to the loaded plugins' handlers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

    from clerk_sync.plugins.api import Subscription
    from clerk_sync.plugins.loader import PluginRecord


class Router:
    """The routing table from event type to subscribed handlers, built once per app."""

    def __init__(self, records: Iterable[PluginRecord]) -> None:
        self._subscriptions = [
            sub for r in records if r.plugin is not None for sub in r.plugin.subscriptions
        ]
        self._settings = {r.name: r.settings for r in records if r.plugin is not None}
        self._cache: dict[str, tuple[Subscription, ...]] = {}

    def handlers_for(self, event_type: str) -> tuple[Subscription, ...]:
        found = self._cache.get(event_type)
        if found is None:
            found = tuple(s for s in self._subscriptions if s.wants(event_type))
            if len(self._cache) < 1024:
                self._cache[event_type] = found
        return found

    def plugin_settings(self, plugin: str) -> BaseModel | None:
        return self._settings.get(plugin)
