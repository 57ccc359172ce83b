"""`ClerkSync`, the Quart extension: Clerk sync and Clerk sessions inside a team's own app.

`ClerkSync(app)` (or `ClerkSync()` then `init_app(app)`) puts on the app what the service
serves: the webhook receiver at CLERK_SYNC_WEBHOOK_PATH (the plain ASGI endpoint in front of
Quart), the probes, `/metrics`, `/plugins`, the read API, `/openapi.json` and the console,
with MongoDB started and stopped by the app's serving hooks. The app's own views use
`require_session`, `require_org_role`, `current_session` and `current_user`. Everything of one
app is kept on the app (`app.extensions`); a `ClerkSync` holds only what it was given, so one
instance may initialise several apps (an app factory) and two apps run side by side in one
process.

An HTTP module: may import Quart and every layer below (`openapi`, `runtime`, `auth`, ...).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, current_app

from clerk_sync.auth.entitlements import Entitlements, Subject
from clerk_sync.auth.queries import synced_user
from clerk_sync.auth.read_api import make_verifier
from clerk_sync.errors import ApiError, ConfigError
from clerk_sync.extension import guards
from clerk_sync.extension.guards import EXTENSION, VERIFIER, Guard, View
from clerk_sync.extension.routes import BLUEPRINT, blueprint, check_routes
from clerk_sync.runtime import Runtime
from clerk_sync.settings import load_settings
from clerk_sync.webhooks.endpoint import WebhookEndpoint

if TYPE_CHECKING:
    from clerk_sync.auth.tokens import Session
    from clerk_sync.plugins import Plugin
    from clerk_sync.settings import Settings

__all__ = ["BLUEPRINT", "EXTENSION", "VERIFIER", "ClerkSync", "lifespan"]


class ClerkSync:
    """The Quart extension; see docs/extension.md for the tutorial and the reference.

    `settings` default to the environment (read at `init_app`), `plugins` to the installed
    entry points. Each `False` below leaves that part to the host app: `probes` (`/livez`,
    `/readyz`), `metrics` (`/metrics`), `plugins_route` (`/plugins`), `read_api` (`/api/v1/*`,
    mounted only when CLERK_JWT_KEY or CLERK_JWKS_URL is set), `openapi` (`/openapi.json`) and
    `console` (`/console`, mounted only when CLERK_SYNC_CONSOLE_USERS or _ORG is set, or in
    development mode for 127.0.0.1; docs/console.md).
    A route the host app already has at one of those paths is never replaced: start-up stops
    with a `ConfigError` naming the route and the argument that switches the part off."""

    def __init__(
        self,
        app: Quart | None = None,
        *,
        settings: Settings | None = None,
        plugins: Iterable[Plugin] | None = None,
        probes: bool = True,
        metrics: bool = True,
        plugins_route: bool = True,
        read_api: bool = True,
        openapi: bool = True,
        console: bool = True,
    ) -> None:
        self.settings = settings
        self.plugins = list(plugins) if plugins is not None else None
        self.parts = {
            "probes": probes,
            "metrics": metrics,
            "plugins_route": plugins_route,
            "read_api": read_api,
            "openapi": openapi,
            "console": console,
        }
        self._guards: dict[object, Guard] = {}  # wrapped view -> its checks
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Load the plugins and mount every part on `app`; MongoDB starts with the app."""
        if EXTENSION in app.extensions:
            raise ConfigError(
                f"the app {app.name!r} already has a ClerkSync (app.extensions['clerk_sync']):"
                " use one ClerkSync per app, and call init_app once"
            )
        settings = self.settings if self.settings is not None else load_settings()
        runtime = Runtime.build(settings, self.plugins)
        verifier = make_verifier(app, runtime) if settings.read_api_enabled else None
        app.extensions[EXTENSION] = runtime
        app.register_blueprint(blueprint(runtime, verifier, self.parts))
        check_routes(app, settings.clerk_sync_webhook_path)
        app.asgi_app = WebhookEndpoint(  # type: ignore[method-assign,assignment]
            app.asgi_app,
            runtime.receiver,
            settings.clerk_sync_max_body_bytes,
            settings.clerk_sync_webhook_path,
        )
        app.register_error_handler(ApiError, guards.refused)
        _log_settings(runtime, verifier is not None and self.parts["read_api"])

        @app.before_serving
        async def start() -> None:
            """Routes added after `init_app` and the decorated views are checked; then the
            runtime starts (MongoDB, indexes, the monitor)."""
            check_routes(app, settings.clerk_sync_webhook_path)
            guards.check_guards(app, self._guards)
            await runtime.start()

        @app.after_serving
        async def stop() -> None:
            await runtime.stop()

    # -- the host app's views -----------------------------------------------------------------

    def require_session(self, view: View) -> View:
        """401 JSON with the reason unless the request carries a valid Clerk session token
        (the checks of `/api/v1`: signature, times, issuer, parties, not `pending`)."""

        @functools.wraps(view)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            refused = await guards.verify_session()
            if refused is not None:
                return refused
            return await current_app.ensure_async(view)(*args, **kwargs)

        self._guards[guarded] = Guard("require_session")
        return guarded

    def require_org_role(
        self, role: str, *, org_from: str | None = "org_id"
    ) -> Callable[[View], View]:
        """`require_session`, then 403 unless the caller's synced membership of the view's
        organization has `role` (as Clerk names it: `org:admin`). The organization is the
        view argument `org_from` (a variable of the URL rule); `org_from=None` takes the
        organization active in the session token instead."""

        async def check(kwargs: dict[str, Any]) -> Response | None:
            return await guards.check_role(role, guards.organization(org_from, kwargs))

        return self._guarded("require_org_role", org_from, check)

    def require_permission(
        self, key: str, *, org_from: str | None = "org_id"
    ) -> Callable[[View], View]:
        """`require_session`, then 403 unless the caller's synced membership of the view's
        organization (chosen as for `require_org_role`) has the permission `key`
        (`org:invoices:read`): the membership's own `permissions`, else its role's in `roles`."""

        async def check(kwargs: dict[str, Any]) -> Response | None:
            return await guards.check_permission(key, guards.organization(org_from, kwargs))

        return self._guarded("require_permission", org_from, check)

    def require_plan(self, slug: str, *, org_from: str | None = None) -> Callable[[View], View]:
        """`require_session`, then 403 unless the subject has the plan `slug` now: the
        organization named by the view argument `org_from` (the caller must be a member), or
        with `org_from=None` the caller. The rules are in docs/data.md "Entitlements"."""
        return self._billing("require_plan", "plan", slug, org_from)

    def require_feature(self, key: str, *, org_from: str | None = None) -> Callable[[View], View]:
        """As `require_plan`, for a feature one of the subject's plans lists in `billing_plans`."""
        return self._billing("require_feature", "feature", key, org_from)

    async def entitlements(
        self, user_id: str | None = None, organization_id: str | None = None
    ) -> dict[str, Any]:
        """`{plans, features, items}` of a user, or of an organization, from synced state (no
        request needed: for back-end jobs). Given both, the organization's, as the user, a
        member, would be granted by the guards: nothing when the user is not a live member."""
        if user_id is None and organization_id is None:
            raise TypeError("entitlements() needs user_id, organization_id or both")
        if user_id is None:
            subject = Subject(organization_id=organization_id)
            return (await guards.subject_entitlements(subject)).as_json()
        found = await guards.entitlements(user_id, organization_id)
        return (found or Entitlements()).as_json()

    def _billing(
        self, decorator: str, kind: str, wanted: str, org_from: str | None
    ) -> Callable[[View], View]:
        async def check(kwargs: dict[str, Any]) -> Response | None:
            org_id = guards.organization(org_from, kwargs) if org_from is not None else None
            return await guards.check_billing(kind, wanted, org_id)

        return self._guarded(decorator, org_from, check)

    def _guarded(
        self, decorator: str, org_from: str | None, check: Callable[..., Awaitable[Any]]
    ) -> Callable[[View], View]:
        """A decorator: `require_session`, then `check(view_kwargs)`; its answer refuses."""

        def decorate(view: View) -> View:
            @functools.wraps(view)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                refused = await guards.verify_session()
                if refused is None:
                    refused = await check(kwargs)
                if refused is not None:
                    return refused
                return await current_app.ensure_async(view)(*args, **kwargs)

            self._guards[guarded] = Guard(decorator, org_from)
            return guarded

        return decorate

    def current_session(self) -> Session:
        """The verified session of this request (user, session, active organization); only in
        a view under `require_session` or `require_org_role`."""
        session = guards.current_session()
        if session is None:
            raise RuntimeError(
                "current_session() is only known in a view decorated with "
                "@clerk.require_session or @clerk.require_org_role(...)"
            )
        return session

    async def current_user(self) -> dict[str, Any] | None:
        """The caller's synced `users` document (all of it, `private_metadata` included; no
        `_id`), or None until the users plugin has synced the user (and once deleted)."""
        return await synced_user(guards.database(), self.current_session().user_id)

    # -- wiring ---------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: Quart) -> AsyncIterator[None]:
    """Run `app`'s start-up and shut-down (its serving hooks: MongoDB, indexes) around the
    block, for a host that does not pass lifespan events on to mounted apps (Starlette,
    FastAPI): `FastAPI(lifespan=lambda _: lifespan(clerk_app))`."""
    await app.startup()
    try:
        yield
    finally:
        await app.shutdown()


def _log_settings(runtime: Runtime, read_api: bool) -> None:
    if not runtime.settings.clerk_webhook_signing_secret:
        runtime.log.warning(
            "webhooks_refused", reason="CLERK_WEBHOOK_SIGNING_SECRET is not set; answering 503"
        )
    if not runtime.settings.read_api_enabled:
        runtime.log.info(
            "read_api_disabled", reason="neither CLERK_JWT_KEY nor CLERK_JWKS_URL is set"
        )
    elif not read_api:
        runtime.log.info("read_api_disabled", reason="ClerkSync(read_api=False)")
