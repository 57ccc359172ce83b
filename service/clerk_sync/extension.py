"""`ClerkSync`, the Quart extension: Clerk sync and Clerk sessions inside a team's own app.

`ClerkSync(app)` (or `ClerkSync()` then `init_app(app)`) puts on the app what the service
serves: the webhook receiver at CLERK_SYNC_WEBHOOK_PATH (the plain ASGI endpoint in front of
Quart), the probes, `/metrics`, `/plugins`, the read API and `/openapi.json`, with MongoDB
started and stopped by the app's serving hooks. The app's own views use `require_session`,
`require_org_role`, `current_session` and `current_user`. Everything of one app is kept on the
app (`app.extensions`); a `ClerkSync` holds only what it was given, so one instance may
initialise several apps (an app factory) and two apps run side by side in one process.

An HTTP module: may import Quart and every layer below (`openapi`, `runtime`, `auth`, ...).
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Quart, Response, current_app, g, request

from clerk_sync.auth.http import json_response
from clerk_sync.auth.read_api import (
    PREFIX,
    caller,
    live_membership,
    make_verifier,
    refuse,
    register_read_api,
    synced_user,
)
from clerk_sync.errors import ApiError, AuthError, ConfigError
from clerk_sync.observability import probes
from clerk_sync.runtime import Runtime
from clerk_sync.settings import load_settings
from clerk_sync.webhooks.endpoint import WebhookEndpoint

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from clerk_sync.auth.tokens import Session, TokenVerifier
    from clerk_sync.plugins import Plugin
    from clerk_sync.settings import Settings

#: `app.extensions` keys: the app's `Runtime`, and its session-token verifier
EXTENSION = "clerk_sync"
VERIFIER = "clerk_sync.read_api"
BLUEPRINT = "clerk_sync"
_SESSION = "_clerk_sync_session"
_VARIABLE = re.compile(r"<(?:[^<>:]+:)?[^<>]+>")

type View = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Guard:
    """What a decorator of this `ClerkSync` asks of the view it wraps."""

    decorator: str
    org_from: str | None = None


class ClerkSync:
    """The Quart extension; see docs/extension.md for the tutorial and the reference.

    `settings` default to the environment (read at `init_app`), `plugins` to the installed
    entry points. Each `False` below leaves that part to the host app: `probes` (`/livez`,
    `/readyz`), `metrics` (`/metrics`), `plugins_route` (`/plugins`), `read_api` (`/api/v1/*`,
    mounted only when CLERK_JWT_KEY or CLERK_JWKS_URL is set) and `openapi` (`/openapi.json`).
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
    ) -> None:
        self.settings = settings
        self.plugins = list(plugins) if plugins is not None else None
        self.parts = {
            "probes": probes,
            "metrics": metrics,
            "plugins_route": plugins_route,
            "read_api": read_api,
            "openapi": openapi,
        }
        self._guards: dict[object, _Guard] = {}  # wrapped view -> its checks
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
        app.register_blueprint(self._blueprint(runtime, verifier))
        _check_routes(app, settings.clerk_sync_webhook_path)
        app.asgi_app = WebhookEndpoint(  # type: ignore[method-assign,assignment]
            app.asgi_app,
            runtime.receiver,
            settings.clerk_sync_max_body_bytes,
            settings.clerk_sync_webhook_path,
        )
        app.register_error_handler(ApiError, _refused)
        _log_settings(runtime, verifier is not None and self.parts["read_api"])

        @app.before_serving
        async def start() -> None:
            """Routes added after `init_app` and the decorated views are checked; then the
            runtime starts (MongoDB, indexes, the monitor)."""
            _check_routes(app, settings.clerk_sync_webhook_path)
            self._check_guards(app)
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
            refused = await _verify_session()
            if refused is not None:
                return refused
            return await current_app.ensure_async(view)(*args, **kwargs)

        self._guards[guarded] = _Guard("require_session")
        return guarded

    def require_org_role(
        self, role: str, *, org_from: str | None = "org_id"
    ) -> Callable[[View], View]:
        """`require_session`, then 403 unless the caller's synced membership of the view's
        organization has `role` (as Clerk names it: `org:admin`). The organization is the
        view argument `org_from` (a variable of the URL rule); `org_from=None` takes the
        organization active in the session token instead."""

        def decorate(view: View) -> View:
            @functools.wraps(view)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                refused = await _verify_session()
                if refused is None:
                    refused = await _check_role(role, _organization(org_from, kwargs))
                if refused is not None:
                    return refused
                return await current_app.ensure_async(view)(*args, **kwargs)

            self._guards[guarded] = _Guard("require_org_role", org_from)
            return guarded

        return decorate

    def current_session(self) -> Session:
        """The verified session of this request (user, session, active organization); only in
        a view under `require_session` or `require_org_role`."""
        session: Session | None = g.get(_SESSION)
        if session is None:
            raise RuntimeError(
                "current_session() is only known in a view decorated with "
                "@clerk.require_session or @clerk.require_org_role(...)"
            )
        return session

    async def current_user(self) -> dict[str, Any] | None:
        """The caller's synced `users` document (all of it, `private_metadata` included; no
        `_id`), or None until the users plugin has synced the user (and once deleted)."""
        return await synced_user(_database(), self.current_session().user_id)

    # -- wiring ---------------------------------------------------------------------------------

    def _blueprint(self, runtime: Runtime, verifier: TokenVerifier | None) -> Blueprint:
        parts = self.parts
        routes = Blueprint(BLUEPRINT, __name__)
        if parts["probes"]:
            _probes(routes, runtime)
        if parts["metrics"]:
            _metrics(routes, runtime)
        if parts["plugins_route"]:
            _plugins(routes, runtime)
        read_api = verifier is not None and parts["read_api"]
        if read_api:
            assert verifier is not None
            register_read_api(routes, runtime, verifier)
        if parts["openapi"]:
            _openapi(routes, runtime, read_api=read_api, parts=parts)
        return routes

    def _check_guards(self, app: Quart) -> None:
        """A decorated view needs session keys, and its `org_from` in its URL rule."""
        for rule in app.url_map.iter_rules():
            guard = self._guards.get(app.view_functions[rule.endpoint])
            if guard is None:
                continue
            if app.extensions.get(VERIFIER) is None:
                raise ConfigError(
                    f"invalid configuration: CLERK_JWT_KEY or CLERK_JWKS_URL: needed by "
                    f"@clerk.{guard.decorator} on {rule.rule}"
                )
            if guard.org_from is not None and guard.org_from not in rule.arguments:
                raise ConfigError(
                    f"@clerk.require_org_role on {rule.rule}: the rule has no "
                    f"<{guard.org_from}>; name its variable with org_from=, or pass "
                    "org_from=None for the organization active in the session"
                )


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


# -- the checks of the decorators -------------------------------------------------------------


def _runtime() -> Runtime:
    runtime: Runtime | None = current_app.extensions.get(EXTENSION)
    if runtime is None:
        raise ConfigError(f"the app {current_app.name!r} has no ClerkSync: call init_app(app)")
    return runtime


def _database() -> AsyncIOMotorDatabase[dict[str, Any]]:
    store = _runtime().store
    if store is None:
        raise ApiError("storage_unavailable", "storage is not started", status=503)
    return store.db


async def _verify_session() -> Response | None:
    """Keep the verified session on `g`; else the 401 (or 503 when no key is configured)."""
    runtime = _runtime()
    verifier: TokenVerifier | None = current_app.extensions.get(VERIFIER)
    if verifier is None:
        return refuse(
            ApiError(
                "sessions_not_configured",
                "session checks need CLERK_JWT_KEY or CLERK_JWKS_URL",
                status=503,
            )
        )
    try:
        session = await caller(verifier)
    except AuthError as error:
        runtime.log.debug("session_refused", path=request.path, reason=error.reason)
        return refuse(error)
    setattr(g, _SESSION, session)
    return None


def _organization(org_from: str | None, view_args: dict[str, Any]) -> str | None:
    if org_from is None:
        session: Session = g.get(_SESSION)
        return session.org_id
    if org_from not in view_args:
        raise ConfigError(f"@clerk.require_org_role: the view has no argument {org_from!r}")
    value = view_args[org_from]
    return value if isinstance(value, str) else str(value)


async def _check_role(role: str, org_id: str | None) -> Response | None:
    session: Session = g.get(_SESSION)
    if org_id is None:
        error = ApiError("no_active_organization", "no organization is active", status=403)
        return refuse(error)
    membership = await live_membership(_database(), org_id, session.user_id)
    if membership is None:
        return refuse(
            ApiError("not_a_member", "you are not a member of this organization", status=403)
        )
    if membership.get("role") != role:
        return refuse(ApiError("org_role_required", f"this needs the role {role}", status=403))
    return None


async def _refused(error: ApiError) -> Response:
    """An `ApiError` raised in a view of the host app (storage not started) as JSON."""
    return refuse(error)


# -- the routes and their clashes -------------------------------------------------------------

#: the argument of `ClerkSync` that switches off the part serving each path
_SWITCHES = {
    "/livez": "probes",
    "/readyz": "probes",
    "/metrics": "metrics",
    "/plugins": "plugins_route",
    "/openapi.json": "openapi",
}


def _shape(rule: str) -> str:
    """A rule with its variables unnamed: `/a/<org_id>` and `/a/<string:x>` are one path."""
    return _VARIABLE.sub("<>", rule)


def _check_routes(app: Quart, webhook_path: str) -> None:
    """No route of the host app at a path of ours; nothing of Quart at the webhook path."""
    ours = {_shape(r.rule) for r in app.url_map.iter_rules() if _is_ours(r.endpoint)}
    for rule in app.url_map.iter_rules():
        shape = _shape(rule.rule)
        if shape == _shape(webhook_path):
            raise ConfigError(
                f"invalid configuration: CLERK_SYNC_WEBHOOK_PATH: {webhook_path} is also the "
                f"route {rule.rule} ({rule.endpoint}); choose another webhook path"
            )
        if shape in ours and not _is_ours(rule.endpoint):
            switch = "read_api" if rule.rule.startswith(PREFIX + "/") else _SWITCHES[rule.rule]
            raise ConfigError(
                f"the app's route {rule.rule} ({rule.endpoint}) clashes with ClerkSync's: "
                f"pass ClerkSync(..., {switch}=False) to keep the app's own"
            )


def _is_ours(endpoint: str) -> bool:
    return endpoint.startswith(BLUEPRINT + ".")


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


def _probes(routes: Blueprint, runtime: Runtime) -> None:
    @routes.get("/livez")
    async def livez() -> Response:
        return json_response(probes.Live(status="ok").model_dump())

    @routes.get("/readyz")
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
        if not runtime.receiver.keys:
            reasons.append(probes.NO_SECRET)
        failed = [r.name for r in runtime.records if r.status == "failed"]
        if reasons:
            return json_response(
                probes.NotReady(status="not_ready", reasons=reasons).model_dump(), 503
            )
        return json_response(probes.Ready(status="ready", plugins_failed=failed).model_dump())


def _metrics(routes: Blueprint, runtime: Runtime) -> None:
    @routes.get("/metrics")
    async def metrics() -> Response:
        payload, content_type = runtime.metrics.render()
        return Response(payload, content_type=content_type)


def _plugins(routes: Blueprint, runtime: Runtime) -> None:
    @routes.get("/plugins")
    async def plugins() -> Response:
        listed = probes.Plugins.model_validate({"plugins": runtime.describe_plugins()})
        return json_response(listed.model_dump())


def _openapi(
    routes: Blueprint, runtime: Runtime, *, read_api: bool, parts: dict[str, bool]
) -> None:
    from clerk_sync.openapi import openapi_document

    served = {path for path, part in _SWITCHES.items() if parts[part]}
    document = openapi_document(
        read_api,
        webhook_path=runtime.settings.clerk_sync_webhook_path,
        only=served,
    )

    @routes.get("/openapi.json")
    async def openapi() -> Response:
        return json_response(document)
