"""The service's app factory: a Quart app with `ClerkSync` on it, the extension's first user."""

from __future__ import annotations

from collections.abc import Iterable

from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from clerk_sync.auth.http import json_response
from clerk_sync.extension import EXTENSION, ClerkSync
from clerk_sync.plugins import Plugin
from clerk_sync.runtime import Runtime
from clerk_sync.settings import Settings, load_settings

__all__ = ["EXTENSION", "create_app", "runtime_of"]


def runtime_of(app: Quart) -> Runtime:
    runtime: Runtime = app.extensions[EXTENSION]
    return runtime


def create_app(
    settings: Settings | None = None, *, plugins: Iterable[Plugin] | None = None
) -> Quart:
    """Build the app. Plugins are discovered from entry points unless passed in directly."""
    settings = settings if settings is not None else load_settings()
    app = Quart("clerk_sync")
    app.config["MAX_CONTENT_LENGTH"] = settings.clerk_sync_max_body_bytes
    ClerkSync(app, settings=settings, plugins=plugins)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        """Every answer is a small JSON body, 404s and 405s included."""
        return json_response({"error": error.description or error.name}, error.code or 500)

    return app
