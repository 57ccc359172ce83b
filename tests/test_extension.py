"""`ClerkSync` on a host Quart app: sync, its routes beside the host's, and the session helpers."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from clerk_sync_organizations import plugin as organizations_plugin
from clerk_sync_users import plugin as users_plugin
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from quart import Quart, Response, jsonify
from quart.testing.app import LifespanError
from quart.typing import TestClientProtocol as QuartClient

from clerk_sync import ClerkSync, ConfigError, Plugin, Session, Settings
from clerk_sync.testing import TEST_SECRET, envelope, sample, signed_headers
from tests.test_auth import bearer, signer

USER = json.loads(sample("user.created"))["data"]
MAYA = USER["id"]
ORG = json.loads(sample("organization.created"))["data"]["id"]
MEMBER = "user_2member00000000000000000"
OUTSIDER = "user_2outsider0000000000000000"
SECOND_SECRET = "whsec_" + "c2Vjb25kLWFwcC1zZWNyZXQtb2YtMzItYnl0ZXMhIQ=="


def host_app() -> Quart:
    """A team's own app: its own home page and its own `/metrics`."""
    app = Quart("northwind")

    @app.get("/")
    async def home() -> str:
        return "Northwind home"

    @app.get("/metrics")
    async def own_metrics() -> Response:
        return Response("northwind_orders_total 7\n", content_type="text/plain")

    return app


@dataclass
class Host:
    app: Quart
    client: QuartClient
    db: AsyncIOMotorDatabase[dict[str, Any]]

    async def deliver(self, body: bytes, secret: str = TEST_SECRET) -> tuple[int, str]:
        """POST a signed delivery: the status code and the answer's `status`."""
        headers = signed_headers(body, secret=secret)
        answer = await self.client.post("/webhooks/clerk", data=body, headers=headers)
        return answer.status_code, (await answer.get_json()).get("status", "")

    async def get(self, path: str, user_id: str | None = None, **claims: Any) -> tuple[int, Any]:
        headers = bearer(signer("ins_key_one").token(sub=user_id, **claims)) if user_id else {}
        answer = await self.client.get(path, headers=headers)
        return answer.status_code, await answer.get_json()


@asynccontextmanager
async def serving(app: Quart, settings: Settings) -> AsyncIterator[Host]:
    assert settings.mongodb_url is not None
    mongo: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        settings.mongodb_url.get_secret_value(), tz_aware=True
    )
    try:
        async with app.test_app() as test_app:
            yield Host(app, test_app.test_client(), mongo[settings.mongodb_db])
    finally:
        mongo.close()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(clerk_jwt_key=signer("ins_key_one").pem)


# -- acceptance 1: sync on a host app, whose routes answer as before --------------------------


async def test_a_host_app_syncs_a_signed_delivery_and_keeps_its_own_routes(
    settings: Settings,
) -> None:
    """With its own `/` and `/metrics` and `ClerkSync(app, metrics=False)`: the delivery is
    processed into `users`; `/` and `/metrics` are the host's; the probes are ClerkSync's."""
    app = host_app()
    ClerkSync(app, settings=settings, plugins=[users_plugin], metrics=False)
    async with serving(app, settings) as host:
        delivered = await host.deliver(sample("user.created"))
        stored = await host.db.users.find_one({"clerk_id": MAYA})
        home = await host.client.get("/")
        metrics = await host.client.get("/metrics")
        ready = await host.get("/readyz")
        document = await host.get("/openapi.json")
    assert delivered == (200, "processed")
    assert stored is not None
    assert stored["email"] == "maya.okafor@northwind.example"
    assert (home.status_code, await home.get_data(as_text=True)) == (200, "Northwind home")
    assert await metrics.get_data(as_text=True) == "northwind_orders_total 7\n"
    assert ready == (200, {"status": "ready", "plugins_failed": []})
    assert "/metrics" not in document[1]["paths"]
    assert "/webhooks/clerk" in document[1]["paths"]


async def test_parts_switched_off_are_neither_served_nor_documented(settings: Settings) -> None:
    """With probes, /plugins and the read API off, /openapi.json lists exactly what is served."""
    app = Quart("lean")
    ClerkSync(app, settings=settings, plugins=[], probes=False, plugins_route=False, read_api=False)
    served = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule) for r in app.url_map.iter_rules()}
    async with serving(app, settings) as host:
        status, document = await host.get("/openapi.json")
        livez = await host.client.get("/livez")
        me = await host.get("/api/v1/me", MAYA)
    assert status == 200
    assert set(document["paths"]) == (served - {"/static/{filename}"}) | {"/webhooks/clerk"}
    assert set(document["paths"]) == {"/webhooks/clerk", "/metrics", "/openapi.json"}
    assert (livez.status_code, me[0]) == (404, 404)


def test_a_host_route_at_a_path_of_clerk_sync_stops_start_up_naming_it(
    settings: Settings,
) -> None:
    """The host's `/metrics` is never replaced: init_app fails naming the route and the switch."""
    with pytest.raises(ConfigError, match=r"/metrics .*metrics=False"):
        ClerkSync(host_app(), settings=settings, plugins=[])


async def test_a_clashing_route_added_after_init_app_stops_start_up(settings: Settings) -> None:
    app = Quart("late")
    ClerkSync(app, settings=settings, plugins=[])

    @app.get("/livez")
    async def own_livez() -> str:
        return "mine"

    with pytest.raises(LifespanError, match=r"/livez .*probes=False"):
        async with app.test_app():
            pass


def test_a_host_route_at_the_webhook_path_stops_start_up(
    make_settings: Callable[..., Settings],
) -> None:
    app = Quart("hooks")

    @app.post("/hooks/clerk")
    async def own_hook() -> str:
        return "mine"

    with pytest.raises(ConfigError, match=r"CLERK_SYNC_WEBHOOK_PATH: /hooks/clerk"):
        ClerkSync(app, settings=make_settings(clerk_sync_webhook_path="/hooks/clerk"), plugins=[])


async def test_the_webhook_is_served_at_clerk_sync_webhook_path(
    make_settings: Callable[..., Settings],
) -> None:
    """CLERK_SYNC_WEBHOOK_PATH moves the receiver (and its OpenAPI entry); the default is gone."""
    settings = make_settings(clerk_sync_webhook_path="/hooks/clerk")
    app = Quart("moved")
    ClerkSync(app, settings=settings, plugins=[users_plugin])
    body = sample("user.created")
    async with serving(app, settings) as host:
        moved = await host.client.post("/hooks/clerk", data=body, headers=signed_headers(body))
        old = await host.client.post("/webhooks/clerk", data=body, headers=signed_headers(body))
        document = await host.get("/openapi.json")
    assert (moved.status_code, (await moved.get_json())["status"]) == (200, "processed")
    assert old.status_code == 404
    assert "/hooks/clerk" in document[1]["paths"]
    assert "/webhooks/clerk" not in document[1]["paths"]


# -- acceptance 2: require_session, current_session, current_user -----------------------------


def protected_app(settings: Settings, plugins: list[Plugin]) -> tuple[Quart, ClerkSync]:
    app = Quart("protected")
    clerk = ClerkSync(app, settings=settings, plugins=plugins)

    @app.get("/dashboard")
    @clerk.require_session
    async def dashboard() -> Response:
        session = clerk.current_session()
        user = await clerk.current_user()
        return jsonify(
            user_id=session.user_id,
            session_id=session.session_id,
            org_id=session.org_id,
            org_role=session.org_role,
            email=None if user is None else user["email"],
        )

    return app, clerk


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "token_missing"),
        (lambda: signer("ins_key_one").token(sub=MAYA, exp=int(time.time()) - 60), "token_expired"),
        (lambda: signer("ins_key_other").token(sub=MAYA), "signature_invalid"),
        (lambda: signer("ins_key_one").token(sub=MAYA, sts="pending"), "session_pending"),
    ],
    ids=["no token", "expired", "another key", "pending session"],
)
async def test_require_session_refuses_with_401_and_the_reason(
    settings: Settings, token: Callable[[], str] | None, reason: str
) -> None:
    app, _ = protected_app(settings, [users_plugin])
    headers = bearer(token()) if token is not None else {}
    async with serving(app, settings) as host:
        answer = await host.client.get("/dashboard", headers=headers)
        body = await answer.get_json()
    assert answer.status_code == 401
    assert body["reason"] == reason
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_a_valid_token_gets_the_session_and_the_user_once_synced(
    settings: Settings,
) -> None:
    """current_user() is None before user.created is synced, the synced document after."""
    app, _ = protected_app(settings, [users_plugin])
    active = {"o": {"id": ORG, "rol": "admin", "slg": "northwind"}}
    async with serving(app, settings) as host:
        before = await host.get("/dashboard", MAYA, **active)
        assert (await host.deliver(sample("user.created")))[0] == 200
        after = await host.get("/dashboard", MAYA, **active)
    assert before == (
        200,
        {
            "user_id": MAYA,
            "session_id": "sess_2testsession000000000000",
            "org_id": ORG,
            "org_role": "org:admin",
            "email": None,
        },
    )
    assert after[1]["email"] == "maya.okafor@northwind.example"


def test_sessions_carry_the_active_organization_of_v1_and_v2_tokens() -> None:
    from clerk_sync.auth.tokens import _session

    v2 = _session({"sub": MAYA, "o": {"id": ORG, "rol": "member", "slg": "nw"}})
    v1 = _session({"sub": MAYA, "org_id": ORG, "org_role": "org:admin"})
    assert (v2.org_id, v2.org_role, v2.org_slug) == (ORG, "org:member", "nw")
    assert (v1.org_id, v1.org_role) == (ORG, "org:admin")
    assert _session({"sub": MAYA}) == Session(MAYA, None, {"sub": MAYA})


async def test_require_session_without_session_keys_stops_start_up(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    app, _ = protected_app(settings, [])
    with pytest.raises(LifespanError, match=r"CLERK_JWT_KEY or CLERK_JWKS_URL.*/dashboard"):
        async with app.test_app():
            pass


# -- acceptance 3: require_org_role against memberships synced by webhooks ---------------------


def membership_event(event_type: str, user_id: str, role: str) -> bytes:
    data = copy.deepcopy(json.loads(sample("organizationMembership.created"))["data"])
    data["id"] = f"orgmem_{user_id.removeprefix('user_')}"
    data["role"] = role
    data["public_user_data"]["user_id"] = user_id
    data["updated_at"] = int(time.time() * 1000)
    return envelope(event_type, data)


async def test_require_org_role_follows_the_synced_memberships(settings: Settings) -> None:
    """Admin 200; member 403 (org_role_required); non-member and deleted membership 403
    (not_a_member); with `org_from=None` the token's active organization is the one checked."""
    app = Quart("roles")
    clerk = ClerkSync(app, settings=settings, plugins=[users_plugin, organizations_plugin])

    @app.get("/orgs/<org_id>/billing")
    @clerk.require_org_role("org:admin")
    async def billing(org_id: str) -> Response:
        return jsonify(org_id=org_id, by=clerk.current_session().user_id)

    @app.get("/active-org/settings")
    @clerk.require_org_role("org:admin", org_from=None)
    async def active_settings() -> Response:
        return jsonify(org_id=clerk.current_session().org_id)

    removed = "user_2removedadmin000000000000"
    path = f"/orgs/{ORG}/billing"
    async with serving(app, settings) as host:
        for body in (
            sample("organization.created"),
            sample("organizationMembership.created"),  # Maya, org:admin
            membership_event("organizationMembership.created", MEMBER, "org:member"),
            membership_event("organizationMembership.created", removed, "org:admin"),
            membership_event("organizationMembership.deleted", removed, "org:admin"),
        ):
            assert (await host.deliver(body))[0] == 200
        admin = await host.get(path, MAYA)
        member = await host.get(path, MEMBER)
        outsider = await host.get(path, OUTSIDER)
        deleted = await host.get(path, removed)
        anonymous = await host.get(path)
        active = await host.get("/active-org/settings", MAYA, o={"id": ORG, "rol": "admin"})
        no_active = await host.get("/active-org/settings", MAYA)
    assert admin == (200, {"org_id": ORG, "by": MAYA})
    assert (member[0], member[1]["reason"]) == (403, "org_role_required")
    assert (outsider[0], outsider[1]["reason"]) == (403, "not_a_member")
    assert (deleted[0], deleted[1]["reason"]) == (403, "not_a_member")
    assert (anonymous[0], anonymous[1]["reason"]) == (401, "token_missing")
    assert active == (200, {"org_id": ORG})
    assert (no_active[0], no_active[1]["reason"]) == (403, "no_active_organization")


async def test_require_org_role_on_a_rule_without_the_organization_stops_start_up(
    settings: Settings,
) -> None:
    app = Quart("roles")
    clerk = ClerkSync(app, settings=settings, plugins=[])

    @app.get("/billing")
    @clerk.require_org_role("org:admin")
    async def billing() -> str:
        return "never"

    with pytest.raises(LifespanError, match=r"/billing: the rule has no <org_id>"):
        async with app.test_app():
            pass


# -- acceptance 5: one ClerkSync per app, no module-level state --------------------------------


def test_a_second_clerk_sync_or_a_second_init_app_is_one_clear_error(settings: Settings) -> None:
    app = Quart("twice")
    clerk = ClerkSync(app, settings=settings, plugins=[])
    message = r"already has a ClerkSync .*one ClerkSync per app, and call init_app once"
    with pytest.raises(ConfigError, match=message):
        ClerkSync(app, settings=settings, plugins=[])
    with pytest.raises(ConfigError, match=message):
        clerk.init_app(app)


async def test_two_apps_in_one_process_keep_their_own_settings_plugins_and_metrics(
    make_settings: Callable[..., Settings], mongodb_url: str
) -> None:
    """One ClerkSync instance (an app factory) on two apps: each has its own database, secret,
    plugins and metrics; a delivery to one is not seen by the other."""
    first = make_settings(mongodb_db="clerk_sync_first_app")
    second = make_settings(
        mongodb_db="clerk_sync_second_app", clerk_webhook_signing_secret=SECOND_SECRET
    )
    apps = []
    for settings, plugins in ((first, [users_plugin]), (second, [organizations_plugin])):
        app = Quart("side_by_side")
        ClerkSync(app, settings=settings, plugins=plugins)
        apps.append(app)
    try:
        async with serving(apps[0], first) as one, serving(apps[1], second) as two:
            user = sample("user.created")
            processed = await one.deliver(user)
            ignored = await two.deliver(user, secret=SECOND_SECRET)
            wrong_secret = await two.deliver(user)
            users = (await one.db.users.count_documents({}), await two.db.users.count_documents({}))
            plugins = [(await h.get("/plugins"))[1]["plugins"] for h in (one, two)]
            metrics = [
                await (await h.client.get("/metrics")).get_data(as_text=True) for h in (one, two)
            ]
    finally:
        for name in (first.mongodb_db, second.mongodb_db):
            client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url)
            await client.drop_database(name)
            client.close()
    assert processed == (200, "processed")
    assert ignored == (200, "ignored")
    assert wrong_secret[0] == 401
    assert users == (1, 0)
    assert [[p["name"] for p in listed] for listed in plugins] == [["users"], ["organizations"]]
    processed_line = 'clerk_sync_webhooks_total{event_type="user.created",outcome="processed"} 1.0'
    assert processed_line in metrics[0]
    assert processed_line not in metrics[1]
