"""The delivery console at `/console`: server-rendered pages (Jinja templates and one stylesheet
shipped in this package; no script, nothing from a CDN) to see, search and replay deliveries.
DESIGN.md "The console"; docs/console.md.

An HTTP package: `views` and `access` import Quart; `deliveries`, `detail`, `overview`, `chart`
and `shown` are plain functions the tests and the benchmark call directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quart import Blueprint

    from clerk_sync.auth.tokens import TokenVerifier
    from clerk_sync.runtime import Runtime


def register_console(parent: Blueprint, runtime: Runtime, verifier: TokenVerifier | None) -> bool:
    """Mount the console on `parent` when it is configured (or in development mode, for
    127.0.0.1); whether it was mounted. The log line says how callers are let in."""
    settings = runtime.settings
    if not settings.console_mounted:
        runtime.log.info(
            "console_disabled",
            reason="neither CLERK_SYNC_CONSOLE_USERS nor CLERK_SYNC_CONSOLE_ORG is set",
        )
        return False
    from clerk_sync.console.views import console_blueprint

    parent.register_blueprint(console_blueprint(runtime, verifier))
    callers = "127.0.0.1 (development mode)" if settings.console_development else "session token"
    runtime.log.info("console_mounted", path="/console", callers=callers)
    return True
