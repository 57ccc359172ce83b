"""The Quart application factory: the one place where the HTTP layer is wired."""

from __future__ import annotations

from collections.abc import Iterable

from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from clerk_sync.auth.http import json_response
from clerk_sync.observability import probes
from clerk_sync.plugins import Plugin
from clerk_sync.runtime import Runtime
from clerk_sync.settings import Settings, load_settings
from clerk_sync.webhooks.endpoint import WebhookEndpoint

EXTENSION = "clerk_sync"


def runtime_of(app: Quart) -> Runtime:
    runtime: Runtime = app.extensions[EXTENSION]
    return runtime


def create_app(
    settings: Settings | None = None, *, plugins: Iterable[Plugin] | None = None
) -> Quart:
    """Build the app. Plugins are discovered from entry points unless passed in directly."""
    settings = settings if settings is not None else load_settings()
    runtime = Runtime.build(settings, plugins)
    app = Quart("clerk_sync")
    app.config["MAX_CONTENT_LENGTH"] = settings.clerk_sync_max_body_bytes
    app.extensions[EXTENSION] = runtime

    @app.before_serving
    async def start() -> None:
        await runtime.start()

    @app.after_serving
    async def stop() -> None:
        await runtime.stop()

    _register_routes(app, runtime)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        """Every answer is a small JSON body, 404s and 405s included."""
        return json_response({"error": error.description or error.name}, error.code or 500)

    if not settings.clerk_webhook_signing_secret:
        runtime.log.warning(
            "webhooks_refused", reason="CLERK_WEBHOOK_SIGNING_SECRET is not set; answering 503"
        )
    if settings.read_api_enabled:
        from clerk_sync.auth.read_api import register_read_api

        register_read_api(app, runtime)
    else:
        runtime.log.info(
            "read_api_disabled", reason="neither CLERK_JWT_KEY nor CLERK_JWKS_URL is set"
        )
    _register_openapi(app, read_api=settings.read_api_enabled)
    return app


def _register_openapi(app: Quart, *, read_api: bool) -> None:
    from clerk_sync.openapi import openapi_document

    document = openapi_document(read_api)

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return json_response(document)


def _register_routes(app: Quart, runtime: Runtime) -> None:
    # the webhook is answered by a plain ASGI endpoint in front of Quart (see endpoint.py)
    app.asgi_app = WebhookEndpoint(  # type: ignore[method-assign,assignment]
        app.asgi_app, runtime.receiver, runtime.settings.clerk_sync_max_body_bytes
    )

    @app.get("/livez")
    async def livez() -> Response:
        return json_response(probes.Live(status="ok").model_dump())

    @app.get("/readyz")
    async def readyz() -> Response:
        if runtime.shutting_down:  # answered at once, without asking MongoDB
            leaving = probes.NotReady(status="not_ready", reasons=["shutting down"])
            return json_response(leaving.model_dump(), 503)
        reasons = []
        up = runtime.store is not None and await runtime.store.ping(within=1.0)
        runtime.metrics.mongodb_up.set(1 if up else 0)
        if not up:
            reasons.append("mongodb: no answer to ping within 1 s")
        elif not runtime.indexes_ready:
            reasons.append("mongodb: indexes not created yet")
        failed = [r.name for r in runtime.records if r.status == "failed"]
        if reasons:
            return json_response(
                probes.NotReady(status="not_ready", reasons=reasons).model_dump(), 503
            )
        return json_response(probes.Ready(status="ready", plugins_failed=failed).model_dump())

    @app.get("/metrics")
    async def metrics() -> Response:
        payload, content_type = runtime.metrics.render()
        return Response(payload, content_type=content_type)

    @app.get("/plugins")
    async def plugins() -> Response:
        listed = probes.Plugins.model_validate({"plugins": runtime.describe_plugins()})
        return json_response(listed.model_dump())
