"""The Quart application factory: the one place where settings, storage and plugins are wired."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from quart import Quart, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from clerk_sync.errors import ConfigError, PayloadTooLarge
from clerk_sync.logs import make_logger
from clerk_sync.metrics import Metrics
from clerk_sync.pipeline import Answer, Receiver
from clerk_sync.plugins import (
    Plugin,
    PluginRecord,
    Router,
    direct,
    discover,
    load_plugins,
    require,
)
from clerk_sync.settings import Settings, load_settings
from clerk_sync.store import Store

EXTENSION = "clerk_sync"
MONITOR_INTERVAL = 5.0


@dataclass(slots=True)
class State:
    """Everything one app owns, kept on `app.extensions["clerk_sync"]`."""

    settings: Settings
    records: list[PluginRecord]
    router: Router
    metrics: Metrics
    receiver: Receiver
    log: Any
    store: Store | None = None
    indexes_ready: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def models(self) -> list[Any]:
        return [m for r in self.records if r.plugin is not None for m in r.plugin.models]


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def state_of(app: Quart) -> State:
    state: State = app.extensions[EXTENSION]
    return state


def create_app(
    settings: Settings | None = None, *, plugins: Iterable[Plugin] | None = None
) -> Quart:
    """Build the app. Plugins are discovered from entry points unless passed in directly."""
    settings = settings if settings is not None else load_settings()
    log = make_logger(settings.log_level, settings.log_format)
    candidates = direct(plugins) if plugins is not None else discover()
    records = load_plugins(candidates, settings)
    for record in records:
        if record.status == "failed":
            log.error("plugin_load_failed", plugin=record.name, error=record.error)
    require(records, settings.clerk_sync_required_plugins)
    metrics = Metrics()
    metrics.set_plugins(records)
    router = Router(records)
    state = State(
        settings=settings,
        records=records,
        router=router,
        metrics=metrics,
        receiver=Receiver(settings, router, log, metrics),
        log=log,
    )
    app = Quart("clerk_sync")
    app.config["MAX_CONTENT_LENGTH"] = settings.clerk_sync_max_body_bytes
    app.extensions[EXTENSION] = state
    _register_lifecycle(app, state)
    _register_routes(app, state)
    if not settings.clerk_webhook_signing_secret:
        log.warning(
            "webhooks_refused", reason="CLERK_WEBHOOK_SIGNING_SECRET is not set; answering 503"
        )
    return app


def _register_lifecycle(app: Quart, state: State) -> None:
    @app.before_serving
    async def start_storage() -> None:
        url = state.settings.mongodb_url
        if url is None:
            raise ConfigError(
                "MONGODB_URL: not set (run `clerk-sync serve` to use the embedded store)"
            )
        state.store = Store(url.get_secret_value(), state.settings.mongodb_db)
        state.receiver.attach(state.store.events, state.store.engine)
        await _prepare(state)
        state.tasks.append(asyncio.create_task(_monitor(state)))

    @app.after_serving
    async def stop_storage() -> None:
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        if state.store is not None:
            state.store.close()


async def _prepare(state: State) -> None:
    """Create indexes; when MongoDB is down, keep going (readyz says why) and retry later."""
    assert state.store is not None
    try:
        await state.store.ensure_indexes(
            state.models, state.settings.clerk_sync_event_retention_days
        )
    except Exception as error:  # any failure here is retried by the monitor
        state.metrics.mongodb_up.set(0)
        state.log.warning("indexes_pending", error=f"{type(error).__name__}: {error}")
        return
    state.indexes_ready = True
    state.metrics.mongodb_up.set(1)


async def _monitor(state: State) -> None:
    """Keep `mongodb_up` current and finish index creation once MongoDB answers."""
    assert state.store is not None
    while True:
        await asyncio.sleep(MONITOR_INTERVAL)
        if not state.indexes_ready:
            await _prepare(state)
            continue
        up = await state.store.ping(within=1.0)
        state.metrics.mongodb_up.set(1 if up else 0)


def _answer(answer: Answer) -> Response:
    return json_response(answer.body, answer.status, answer.headers)


def _register_routes(app: Quart, state: State) -> None:
    limit = state.settings.clerk_sync_max_body_bytes

    @app.post("/webhooks/clerk")
    async def webhook() -> Response:
        if request.content_length is not None and request.content_length > limit:
            return _answer(state.receiver.reject_early(PayloadTooLarge("body too large")))
        try:
            body: bytes = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        except RequestEntityTooLarge:
            return _answer(state.receiver.reject_early(PayloadTooLarge("body too large")))
        return _answer(await state.receiver.receive(body, request.headers))  # type: ignore[arg-type]

    @app.get("/livez")
    async def livez() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        reasons = []
        up = state.store is not None and await state.store.ping(within=1.0)
        state.metrics.mongodb_up.set(1 if up else 0)
        if not up:
            reasons.append("mongodb: no answer to ping within 1 s")
        elif not state.indexes_ready:
            reasons.append("mongodb: indexes not created yet")
        failed = [r.name for r in state.records if r.status == "failed"]
        if not reasons:
            return json_response({"status": "ready", "plugins_failed": failed})
        return json_response({"status": "not_ready", "reasons": reasons}, 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        payload, content_type = state.metrics.render()
        return Response(payload, content_type=content_type)

    @app.get("/plugins")
    async def plugins() -> Response:
        return json_response({"plugins": [r.as_dict() for r in state.records]})
