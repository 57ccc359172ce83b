"""The blueprint `ClerkSync` mounts (probes, `/metrics`, `/plugins`, the read API,
`/openapi.json`, the console) and the start-up check that none of it clashes with the host
app's routes.

An HTTP module: may import Quart and every layer below.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from quart import Blueprint, Quart, Response

from clerk_sync.auth.http import json_response
from clerk_sync.auth.read_api import PREFIX, register_read_api
from clerk_sync.console import register_console
from clerk_sync.errors import ConfigError
from clerk_sync.observability import probes
from clerk_sync.runtime import Runtime

if TYPE_CHECKING:
    from clerk_sync.auth.tokens import TokenVerifier

BLUEPRINT = "clerk_sync"
CONSOLE = "/console"
_VARIABLE = re.compile(r"<(?:[^<>:]+:)?[^<>]+>")

#: the argument of `ClerkSync` that switches off the part serving each path
SWITCHES = {
    "/livez": "probes",
    "/readyz": "probes",
    "/metrics": "metrics",
    "/plugins": "plugins_route",
    "/openapi.json": "openapi",
}


def blueprint(
    runtime: Runtime, verifier: TokenVerifier | None, parts: dict[str, bool]
) -> Blueprint:
    """The routes of the parts switched on; the read API only with a verifier."""
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
    if parts["console"]:
        register_console(routes, runtime, verifier)
    return routes


def _shape(rule: str) -> str:
    """A rule with its variables unnamed: `/a/<org_id>` and `/a/<string:x>` are one path."""
    return _VARIABLE.sub("<>", rule)


def check_routes(app: Quart, webhook_path: str) -> None:
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
            switch = _switch(rule.rule)
            raise ConfigError(
                f"the app's route {rule.rule} ({rule.endpoint}) clashes with ClerkSync's: "
                f"pass ClerkSync(..., {switch}=False) to keep the app's own"
            )


def _switch(rule: str) -> str:
    """The argument of `ClerkSync` that switches off the part serving `rule`."""
    if rule.startswith(PREFIX + "/"):
        return "read_api"
    if rule == CONSOLE or rule.startswith(CONSOLE + "/"):
        return "console"
    return SWITCHES[rule]


def _is_ours(endpoint: str) -> bool:
    return endpoint.startswith(BLUEPRINT + ".")


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

    served = {path for path, part in SWITCHES.items() if parts[part]}
    document = openapi_document(
        read_api,
        webhook_path=runtime.settings.clerk_sync_webhook_path,
        only=served,
    )

    @routes.get("/openapi.json")
    async def openapi() -> Response:
        return json_response(document)
