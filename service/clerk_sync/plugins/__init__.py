"""The plugin API (`Plugin`, `Context`) and the loader for the `clerk_sync.plugins` entry points."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from clerk_sync.errors import PluginError
from clerk_sync.events import Event, check_subscription, matches

if TYPE_CHECKING:
    from odmantic import AIOEngine, Model
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.settings import Settings

ENTRY_POINT_GROUP = "clerk_sync.plugins"
PluginStatus = Literal["loaded", "failed", "disabled"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Context[S: BaseModel | None]:
    """What a handler gets besides the event. Attributes are public API and only ever grow."""

    engine: AIOEngine
    log: FilteringBoundLogger
    settings: S
    app_settings: Settings
    plugin: str


type Handler = Callable[[Event, Context[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription:
    """One handler of one plugin and the patterns it listens to."""

    plugin: str
    name: str
    patterns: tuple[str, ...]
    func: Handler

    @property
    def key(self) -> str:
        """Stable identity used in the delivery record: `plugin:handler`."""
        return f"{self.plugin}:{self.name}"

    def wants(self, event_type: str) -> bool:
        return any(matches(p, event_type) for p in self.patterns)


class Plugin:
    """A named set of event handlers, optional ODMantic models and an optional settings model.

    >>> plugin = Plugin("audit")
    >>> @plugin.on("user.created", "organization.*")
    ... async def record(event, ctx): ...
    """

    def __init__(
        self,
        name: str,
        *,
        models: Sequence[type[Model]] = (),
        settings: type[BaseModel] | None = None,
    ) -> None:
        if not _NAME.match(name):
            raise PluginError(f"plugin {name!r}: name must match {_NAME.pattern}")
        self.name = name
        self.models = tuple(models)
        self.settings_model = settings
        self.subscriptions: list[Subscription] = []

    def on(self, *patterns: str) -> Callable[[Handler], Handler]:
        """Register an async handler for event types (`user.created`) or groups (`user.*`)."""
        if not patterns:
            raise PluginError(f"plugin {self.name!r}: on() needs at least one event type")
        for pattern in patterns:
            problem = check_subscription(pattern)
            if problem:
                raise PluginError(f"plugin {self.name!r}: {problem}")

        def register(func: Handler) -> Handler:
            handler_name = getattr(func, "__name__", repr(func))
            if not inspect.iscoroutinefunction(func):
                raise PluginError(
                    f"plugin {self.name!r}: handler {handler_name!r} must be 'async def'"
                )
            if any(s.name == handler_name for s in self.subscriptions):
                raise PluginError(f"plugin {self.name!r}: two handlers are named {handler_name!r}")
            self.subscriptions.append(Subscription(self.name, handler_name, patterns, func))
            return func

        return register

    @property
    def subscribed_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for s in self.subscriptions for p in s.patterns))

    def load_settings(self) -> BaseModel | None:
        """Validate the plugin's settings from `CLERK_SYNC_PLUGIN_<NAME>_<FIELD>`."""
        if self.settings_model is None:
            return None
        prefix = f"CLERK_SYNC_PLUGIN_{self.name.upper().replace('-', '_')}_"
        model = self.settings_model
        if issubclass(model, BaseSettings):
            reader: type[BaseModel] = type(
                model.__name__,
                (model,),
                {"model_config": SettingsConfigDict(env_prefix=prefix, extra="ignore")},
            )
        else:
            reader = type(
                model.__name__,
                (BaseSettings, model),
                {"model_config": SettingsConfigDict(env_prefix=prefix, extra="ignore")},
            )
        try:
            return reader()
        except ValidationError as error:
            first = error.errors()[0]
            var = prefix + str(first["loc"][0]).upper() if first["loc"] else prefix
            raise PluginError(f"plugin {self.name!r}: {var}: {first['msg']}") from error


@dataclass(slots=True)
class PluginRecord:
    """What the loader knows about one plugin; shown by `/plugins` and `clerk-sync plugins`."""

    name: str
    status: PluginStatus
    version: str | None = None
    distribution: str | None = None
    subscriptions: tuple[str, ...] = ()
    error: str | None = None
    plugin: Plugin | None = field(default=None, repr=False)
    settings: BaseModel | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "subscriptions": list(self.subscriptions),
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
