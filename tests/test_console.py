"""The delivery console over HTTP (Quart's test client): who gets in, the security headers, the
list and its filters, one delivery, replay with its CSRF token. DESIGN.md "The console"."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from clerk_sync_users import plugin as users_plugin
from quart import Quart

from clerk_sync import ClerkSync
from clerk_sync.errors import ConfigError
from clerk_sync.settings import load_settings
from clerk_sync.testing import envelope, new_svix_id
from tests.conftest import Runner, Running
from tests.console_support import (
    ERROR,
    OPERATOR,
    ORG,
    STRANGER,
    Switch,
    crm_plugin,
    csrf_of,
    listed_ids,
    next_cursor,
    session_key,
    token_headers,
    user_body,
)
from tests.test_read_api import membership

LOCAL = {"client": ("127.0.0.1", 40000)}


@asynccontextmanager
async def console(running: Runner, switch: Switch, **overrides: Any) -> AsyncIterator[Running]:
    """An app whose console lets OPERATOR in, with `crm` and the users plugin."""
    settings: dict[str, Any] = {
        "clerk_jwt_key": session_key(),
        "clerk_sync_console_users": (OPERATOR,),
        **overrides,
    }
    async with running(plugins=[crm_plugin(switch), users_plugin], **settings) as r:
        yield r


async def page(r: Running, path: str, user_id: str = OPERATOR) -> tuple[int, str]:
    response = await r.client.get(path, headers=token_headers(user_id))
    return response.status_code, await response.get_data(as_text=True)


async def test_without_console_callers_or_development_mode_nothing_is_mounted(
    running: Runner,
) -> None:
    async with running(plugins=[], clerk_jwt_key=session_key()) as r:
        response = await r.client.get("/console", headers=token_headers())
        assert response.status_code == 404


async def test_no_token_is_401_and_a_user_neither_listed_nor_permitted_is_403(
    running: Runner,
) -> None:
    async with console(running, Switch(), clerk_sync_console_org=ORG) as r:
        await r.db.organization_memberships.insert_one(membership(ORG, STRANGER))
        anonymous = await r.client.get("/console/deliveries")
        stranger, body = await page(r, "/console/deliveries", STRANGER)
        assert anonymous.status_code == 401
        assert "Sign in first" in await anonymous.get_data(as_text=True)
        assert stranger == 403
        assert "may not use the console" in body


@pytest.mark.parametrize("via", ["membership", "role"])
async def test_a_member_of_the_console_org_with_the_operate_permission_gets_in(
    running: Runner, via: str
) -> None:
    """The membership's own permissions when Clerk sent them, else its role's."""
    async with console(
        running, Switch(), clerk_sync_console_users=(), clerk_sync_console_org=ORG
    ) as r:
        if via == "membership":
            held = membership(ORG, STRANGER, permissions=["org:clerk_sync:operate"])
        else:
            held = membership(ORG, STRANGER, role="org:ops", permissions=[])
            await r.db.roles.insert_one(
                {
                    "clerk_id": "role_ops",
                    "key": "org:ops",
                    "permissions": ["org:clerk_sync:operate"],
                }
            )
        await r.db.organization_memberships.insert_one(held)
        status, _ = await page(r, "/console", STRANGER)
        assert status == 200


async def test_every_answer_carries_the_security_headers(running: Runner) -> None:
    async with console(running, Switch()) as r:
        for path in ("/console", "/console/deliveries", "/console/deliveries/msg_none"):
            response = await r.client.get(path, headers=token_headers())
            csp = response.headers["Content-Security-Policy"]
            assert "script-src" not in csp
            assert "default-src 'none'" in csp
            assert "frame-ancestors 'none'" in csp
            assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["Cache-Control"] == "no-store"
        refused = await r.client.get("/console")
        assert refused.headers["X-Frame-Options"] == "DENY"
        assert "<script" not in await response.get_data(as_text=True)


async def test_development_mode_answers_127_0_0_1_only_without_a_token(running: Runner) -> None:
    async with running(plugins=[], clerk_sync_dev=True) as r:
        local = await r.client.get("/console/deliveries", scope_base=LOCAL)
        remote = await r.client.get(
            "/console/deliveries", scope_base={"client": ("192.0.2.7", 40000)}
        )
        forwarded = await r.client.get(
            "/console",
            headers={"X-Forwarded-For": "127.0.0.1"},
            scope_base={"client": ("192.0.2.7", 40000)},
        )
        assert local.status_code == 200
        assert remote.status_code == 403
        assert forwarded.status_code == 403


async def test_a_failed_delivery_shows_the_error_and_replay_makes_it_processed(
    running: Runner,
) -> None:
    switch = Switch()
    async with console(running, switch) as r:
        svix_id = new_svix_id()
        status, _ = await r.post(user_body("user_2failing"), msg_id=svix_id)
        assert status == 500
        code, shown = await page(r, f"/console/deliveries/{svix_id}")
        assert code == 200
        assert ERROR in shown
        assert "Replay this delivery" in shown
        switch.broken = False
        replay = await r.client.post(
            f"/console/deliveries/{svix_id}/replay",
            form={"csrf_token": csrf_of(shown)},
            headers=token_headers(),
        )
        assert replay.status_code == 303
        _, after = await page(r, replay.headers["Location"])
        assert "the delivery is processed" in after
        assert (await r.event(svix_id) or {})["status"] == "processed"
        assert switch.seen == [svix_id]


async def test_a_forged_replay_without_the_csrf_token_is_403_and_changes_nothing(
    running: Runner,
) -> None:
    switch = Switch()
    async with console(running, switch) as r:
        svix_id = new_svix_id()
        await r.post(user_body("user_2failing"), msg_id=svix_id)
        switch.broken = False
        headers = token_headers()
        missing = await r.client.post(f"/console/deliveries/{svix_id}/replay", headers=headers)
        forged = await r.client.post(
            f"/console/deliveries/{svix_id}/replay", form={"csrf_token": "x" * 43}, headers=headers
        )
        assert missing.status_code == 403
        assert forged.status_code == 403
        assert (await r.event(svix_id) or {})["status"] == "failed"
        assert switch.seen == []


async def test_a_redacted_delivery_has_no_replay_and_says_why(running: Runner) -> None:
    async with console(running, Switch()) as r:
        svix_id = new_svix_id()
        await r.db.webhook_events.insert_one(
            {
                "_id": svix_id,
                "status": "failed",
                "type": "email.created",
                "redacted": True,
                "payload": {"type": "email.created", "data": {"id": "ema_1", "body": "[redacted]"}},
                "attempts": 1,
            }
        )
        _, shown = await page(r, f"/console/deliveries/{svix_id}")
        assert "stored redacted" in shown
        assert "only Svix can resend it" in shown
        assert "Replay this delivery" not in shown


async def test_private_metadata_is_never_shown(running: Runner) -> None:
    """Neither in the payload nor in the synced user document the page shows beside it."""
    async with console(running, Switch()) as r:
        svix_id = new_svix_id()
        secret = {"stripe_customer": "cus_do_not_show"}
        body = user_body("user_2private", private_metadata=secret, public_metadata={"tier": "gold"})
        await r.post(body, msg_id=svix_id)
        _, shown = await page(r, f"/console/deliveries/{svix_id}")
        assert "gold" in shown  # the payload is there, and the users document too
        assert "users / user_2private" in shown
        assert "cus_do_not_show" not in shown
        assert "private_metadata" not in shown


async def test_the_filters_narrow_the_list(running: Runner) -> None:
    switch = Switch()
    async with console(running, switch) as r:
        failed = [new_svix_id() for _ in range(3)]
        for n, svix_id in enumerate(failed):
            await r.post(user_body(f"user_2f{n}"), msg_id=svix_id)
        switch.broken = False
        org_id = new_svix_id()
        org_body = envelope("organization.created", {"id": "org_2x", "object": "organization"})
        await r.post(org_body, msg_id=org_id)
        member = new_svix_id()
        member_body = envelope(
            "organizationMembership.created",
            {
                "id": "orgmem_1",
                "organization": {"id": "org_2x"},
                "public_user_data": {"user_id": "user_2f1"},
            },
        )
        await r.post(member_body, msg_id=member)
        _, everything = await page(r, "/console/deliveries")
        _, only_failed = await page(r, "/console/deliveries?status=failed")
        _, only_org = await page(r, "/console/deliveries?type=organization.created")
        _, by_svix_id = await page(r, f"/console/deliveries?q={failed[0]}")
        _, by_user = await page(r, "/console/deliveries?q=user_2f2")
        _, later = await page(r, "/console/deliveries?since=2999-01-01")
        _, earlier = await page(r, "/console/deliveries?until=2000-01-01T00:00:00Z")
        assert listed_ids(everything) == [member, org_id, *reversed(failed)]
        assert listed_ids(only_failed) == list(reversed(failed))
        assert listed_ids(only_org) == [org_id]
        assert listed_ids(by_svix_id) == [failed[0]]
        assert listed_ids(by_user) == [failed[2]]
        assert listed_ids(later) == listed_ids(earlier) == []


async def test_pages_of_the_list_hold_every_delivery_once_newest_first(running: Runner) -> None:
    async with console(running, Switch()) as r:
        sent = [new_svix_id() for _ in range(7)]
        for svix_id in sent:
            await r.post(envelope("session.created", {"id": "sess_1"}), msg_id=svix_id)
        from clerk_sync.console import deliveries

        seen: list[str] = []
        path = "/console/deliveries"
        original = deliveries.PAGE
        deliveries.PAGE = 3
        try:
            while path:
                _, shown = await page(r, path)
                seen += listed_ids(shown)
                cursor = next_cursor(shown)
                path = f"/console/deliveries?after={quote(cursor)}" if cursor else ""
        finally:
            deliveries.PAGE = original
        assert seen == list(reversed(sent))


async def test_a_bad_filter_or_a_forged_cursor_is_400(running: Runner) -> None:
    async with console(running, Switch()) as r:
        for query in ("status=lost", "since=yesterday", "after=AAAAAAAAAAAAAAAAAAAAAAAAAA"):
            status, shown = await page(r, f"/console/deliveries?{query}")
            assert status == 400, query
            assert "Cannot answer" in shown


async def test_the_overview_charts_the_deliveries_and_names_the_failing_handler(
    running: Runner,
) -> None:
    async with console(
        running, Switch(), clerk_sync_grafana_url="https://grafana.example/d/cs"
    ) as r:
        for n in range(2):
            await r.post(user_body(f"user_2o{n}"))
        status, shown = await page(r, "/console")
        assert status == 200
        assert shown.count('class="bar-failed"') == 2  # one bar in each chart
        assert "2 failed per minute" in shown
        assert "crm:push" in shown
        assert ERROR in shown
        assert 'href="https://grafana.example/d/cs"' in shown
        assert "users" in shown
        assert "loaded" in shown


def test_console_callers_without_session_keys_are_refused_at_start() -> None:
    for name in ("clerk_sync_console_users", "clerk_sync_console_org"):
        with pytest.raises(ConfigError, match=name.upper()):
            load_settings(_env_file=None, **{name: "user_2x"})


def test_a_host_app_route_at_console_names_the_switch(make_settings: Any) -> None:
    app = Quart("host")

    @app.get("/console")
    async def own() -> str:
        return "mine"

    settings = make_settings(clerk_jwt_key=session_key(), clerk_sync_console_users=(OPERATOR,))
    with pytest.raises(ConfigError, match="console=False"):
        ClerkSync(app, settings=settings, plugins=[])


@pytest.mark.parametrize(
    ("lease", "offered"), [(timedelta(minutes=-5), True), (timedelta(minutes=5), False)]
)
async def test_processing_is_replayable_once_its_lease_has_expired(
    running: Runner, lease: timedelta, offered: bool
) -> None:
    """A delivery a crashed attempt left `processing` gets the Replay button once its lease is
    over; while an attempt may still hold it, the page says so instead."""
    async with console(running, Switch()) as r:
        svix_id = new_svix_id()
        await r.db.webhook_events.insert_one(
            {
                "_id": svix_id,
                "status": "processing",
                "type": "user.created",
                "lease_until": datetime.now(UTC) + lease,
                "payload": {"type": "user.created", "data": {"id": "user_2stale"}},
                "attempts": 1,
            }
        )
        _, shown = await page(r, f"/console/deliveries/{svix_id}")
        assert ("Replay this delivery" in shown) is offered
        assert ("An attempt holds this delivery now" in shown) is not offered


async def test_every_control_has_a_label(running: Runner) -> None:
    """Each input and select of the pages has a `<label for>`; each button says what it does
    (axe-core would take a placeholder for a name; a label is what we promise)."""
    switch = Switch()
    async with console(running, switch) as r:
        svix_id = new_svix_id()
        await r.post(user_body("user_2labels"), msg_id=svix_id)
        for path in ("/console", "/console/deliveries", f"/console/deliveries/{svix_id}"):
            _, shown = await page(r, path)
            labelled = set(re.findall(r'<label for="([^"]+)"', shown))
            controls = re.findall(r"<(input|select|textarea)\b([^>]*)>", shown)
            visible = [attrs for _, attrs in controls if 'type="hidden"' not in attrs]
            ids = [re.search(r'id="([^"]+)"', attrs) for attrs in visible]
            assert all(found is not None and found.group(1) in labelled for found in ids), path
            assert all(text.strip() for text in re.findall(r"<button[^>]*>([^<]*)</button>", shown))
        _, listed = await page(r, "/console/deliveries")
        assert set(re.findall(r'<label for="([^"]+)"', listed)) == {
            "f-status",
            "f-type",
            "f-since",
            "f-until",
            "f-q",
        }
