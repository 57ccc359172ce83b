"""Finding plugins (`clerk_sync.plugins` entry points, or passed in), loading and filtering them.

A plugin that fails to import or validate is recorded as failed, never raised; `require` turns
a required plugin's failure into one `PluginError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal

from clerk_sync.errors import PluginError
from clerk_sync.plugins.api import Plugin

if TYPE_CHECKING:
    from pydantic import BaseModel

    from clerk_sync.settings import Settings

ENTRY_POINT_GROUP = "clerk_sync.plugins"
PluginStatus = Literal["loaded", "failed", "disabled"]


@dataclass(slots=True)
class PluginRecord:
    """What the loader knows about one plugin; shown by `/plugins` and `clerk-sync plugins`."""

    name: str
    status: PluginStatus
    version: str | None = None
    distribution: str | None = None
    subscriptions: tuple[str, ...] = ()
    error: str | None = None
    #: the resources `clerk-sync reconcile` asks this plugin to apply
    reconciles: tuple[str, ...] = ()
    plugin: Plugin | None = field(default=None, repr=False)
    settings: BaseModel | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "subscriptions": list(self.subscriptions),
            "reconciles": list(self.reconciles),
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    """A plugin to consider: found through an entry point, or passed in directly."""

    name: str
    load: Callable[[], object]
    version: str | None = None
    distribution: str | None = None


def discover() -> list[Candidate]:
    """Every entry point of the `clerk_sync.plugins` group, without importing any of them."""
    return [_candidate(ep) for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _candidate(ep: EntryPoint) -> Candidate:
    dist = ep.dist
    return Candidate(
        name=ep.name,
        load=ep.load,
        version=dist.version if dist else None,
        distribution=dist.name if dist else None,
    )


def direct(plugins: Iterable[Plugin]) -> list[Candidate]:
    """Candidates for plugins passed to `create_app(plugins=...)` (tests, embedding)."""
    return [Candidate(p.name, (lambda p=p: p), None, None) for p in plugins]  # type: ignore[misc]


def load_plugins(candidates: Iterable[Candidate], settings: Settings) -> list[PluginRecord]:
    """Import, validate and filter plugins. Failures are recorded, never raised (see `require`)."""
    allowed = settings.clerk_sync_plugins
    denied = set(settings.clerk_sync_disabled_plugins)
    records: list[PluginRecord] = []
    seen: set[str] = set()
    for candidate in candidates:
        record = PluginRecord(candidate.name, "disabled", candidate.version, candidate.distribution)
        records.append(record)
        if (allowed is not None and candidate.name not in allowed) or candidate.name in denied:
            continue
        if candidate.name in seen:
            record.status, record.error = (
                "failed",
                (f"plugin {candidate.name!r}: two plugins have this name"),
            )
            continue
        seen.add(candidate.name)
        _load_one(candidate, record)
    return records


def _load_one(candidate: Candidate, record: PluginRecord) -> None:
    try:
        plugin = candidate.load()
        if not isinstance(plugin, Plugin):
            raise PluginError(
                f"plugin {candidate.name!r}: entry point is {type(plugin).__name__}, "
                "not a clerk_sync.Plugin"
            )
        if plugin.name != candidate.name:
            raise PluginError(
                f"plugin {candidate.name!r}: entry point name differs from Plugin name "
                f"{plugin.name!r}"
            )
        record.settings = plugin.load_settings()
    except PluginError as error:
        record.status, record.error = "failed", str(error)
        return
    except Exception as error:  # a plugin's import may raise anything; it must not stop us
        record.status = "failed"
        record.error = f"plugin {candidate.name!r} failed to load: {type(error).__name__}: {error}"
        return
    record.status, record.plugin = "loaded", plugin
    record.subscriptions = plugin.subscribed_types
    record.reconciles = tuple(r.resource for r in plugin.reconcilers)


def require(records: Iterable[PluginRecord], required: Iterable[str]) -> None:
    """Raise PluginError (one line) when a required plugin is not loaded."""
    by_name = {r.name: r for r in records}
    for name in required:
        record = by_name.get(name)
        if record is None:
            raise PluginError(f"required plugin {name!r} is not installed")
        if record.status == "disabled":
            raise PluginError(f"required plugin {name!r} is disabled by configuration")
        if record.status == "failed":
            raise PluginError(f"required plugin failed: {record.error}")
