"""The plugin API: `Plugin`, the `Context` a handler gets, subscriptions and reconcilers.

Plain Python (pydantic for plugin settings); imports `clerk_sync.events` and `clerk_sync.errors`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from clerk_sync.errors import PluginError
from clerk_sync.events import Event, check_subscription, matches

if TYPE_CHECKING:
    from odmantic import AIOEngine, Model
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.settings import Settings

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

#: The Backend API resources `clerk-sync reconcile` lists, in the order it reconciles them.
RECONCILABLE: tuple[str, ...] = (
    "users",
    "organizations",
    "memberships",
    "roles",
    "permissions",
    "domains",
    "invitations",
    "waitlist_entries",
    "plans",
    "subscription_items",
    "subscriptions",
)


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


type Projection = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Reconciler:
    """How one plugin applies Backend API objects of one resource during `clerk-sync reconcile`.

    `project` turns a Backend API object (the JSON shape webhooks deliver) into the stored fields
    of its document in `collection`; reconcile writes them order-safely (`upsert_if_newer`).
    `cleared` is what a tombstone leaves of a document Clerk no longer has. `parents` maps a
    document field to a collection: a document whose parent there is tombstoned is tombstoned
    too, after every write and when reconcile tombstones the parent. `fill`, when given,
    projects fields written only where the stored document has none (null or absent), whatever
    the order of the writes: what one source knows of an object and another does not (the
    subscription of a billing item), so no write empties it again.
    """

    plugin: str
    resource: str
    collection: str
    project: Projection
    cleared: Mapping[str, Any]
    parents: Mapping[str, str] = field(default_factory=dict)
    fill: Projection | None = None


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
        self.reconcilers: list[Reconciler] = []

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

    def reconciler(
        self,
        resource: str,
        *,
        collection: str,
        cleared: Mapping[str, Any],
        parents: Mapping[str, str] | None = None,
        fill: Projection | None = None,
    ) -> Callable[[Projection], Projection]:
        """Register how this plugin projects Backend API objects of `resource` into `collection`.

        >>> @plugin.reconciler("users", collection="crm_contacts", cleared={"email": None})
        ... def contact(user: dict) -> dict: ...
        """
        if resource not in RECONCILABLE:
            raise PluginError(
                f"plugin {self.name!r}: reconciler for {resource!r}: "
                f"reconcile lists {', '.join(RECONCILABLE)}"
            )
        if any(r.resource == resource for r in self.reconcilers):
            raise PluginError(f"plugin {self.name!r}: two reconcilers for {resource!r}")

        def register(func: Projection) -> Projection:
            if any(inspect.iscoroutinefunction(f) or not callable(f) for f in (func, fill or func)):
                raise PluginError(
                    f"plugin {self.name!r}: reconciler for {resource!r} must be a plain function"
                )
            self.reconcilers.append(
                Reconciler(
                    self.name,
                    resource,
                    collection,
                    func,
                    dict(cleared),
                    dict(parents or {}),
                    fill,
                )
            )
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
