"""Plugin discovery through entry points, load failures, allow/deny/required lists, /plugins."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from clerk_sync import Context, Event, Plugin, PluginError, Settings, create_app
from clerk_sync.plugins import discover, load_plugins
from clerk_sync.testing import envelope
from tests.conftest import Runner

BAD_PLUGINS = {
    "explodes": "raise RuntimeError('cannot import this plugin')\n",
    "typo": """
        from clerk_sync import Plugin
        plugin = Plugin("typo")

        @plugin.on("user.craeted")
        async def handle(event, ctx):
            return None
    """,
    "syncy": """
        from clerk_sync import Plugin
        plugin = Plugin("syncy")

        @plugin.on("user.created")
        def handle(event, ctx):
            return None
    """,
}


def install_fake_distribution(root: Path, name: str, source: str) -> None:
    """Put a module and a dist-info with a `clerk_sync.plugins` entry point on sys.path; a
    module of that name an earlier test imported in this process is forgotten, so the entry
    point loads this source."""
    module = f"fake_plugin_{name}"
    sys.modules.pop(module, None)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"fake_plugin_{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: fake-plugin-{name}\nVersion: 1.2.3\n"
    )
    (info / "entry_points.txt").write_text(f"[clerk_sync.plugins]\n{name} = {module}:plugin\n")


@pytest.fixture
def bad_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for name, source in BAD_PLUGINS.items():
        install_fake_distribution(tmp_path, name, source)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return list(BAD_PLUGINS)


def test_each_broken_plugin_is_a_one_line_error_naming_it(
    bad_plugins: list[str], make_settings: Callable[..., Settings]
) -> None:
    records = {r.name: r for r in load_plugins(discover(), make_settings())}
    errors = {name: records[name].error for name in bad_plugins}
    assert all(records[name].status == "failed" for name in bad_plugins)
    for name, error in errors.items():
        assert error is not None
        assert f"'{name}'" in error
        assert "\n" not in error
    assert "cannot import this plugin" in (errors["explodes"] or "")
    assert "did you mean 'user.created'" in (errors["typo"] or "")
    assert "must be 'async def'" in (errors["syncy"] or "")
    assert records["users"].status == "loaded", "the others keep loading"


async def test_broken_plugins_show_failed_and_start_up_goes_on(
    bad_plugins: list[str], running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(plugins=None) as r:
        response = await r.client.get("/plugins")
        listing = {p["name"]: p for p in (await response.get_json())["plugins"]}
        ready = await r.client.get("/readyz")
    assert {listing[name]["status"] for name in bad_plugins} == {"failed"}
    assert listing["typo"]["distribution"] == "fake-plugin-typo"
    assert listing["typo"]["version"] == "1.2.3"
    assert ready.status_code == 200
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    failures = {e["plugin"] for e in logged if e["event"] == "plugin_load_failed"}
    assert failures >= set(bad_plugins)


@pytest.mark.parametrize("name", list(BAD_PLUGINS))
def test_required_broken_plugin_stops_start_up_with_its_line(
    bad_plugins: list[str], make_settings: Callable[..., Settings], name: str
) -> None:
    with pytest.raises(PluginError, match=f"'{name}'") as caught:
        create_app(make_settings(clerk_sync_required_plugins=name))
    assert "\n" not in str(caught.value)


def test_required_plugin_that_is_not_installed_stops_start_up(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(PluginError, match="'nope' is not installed"):
        create_app(make_settings(clerk_sync_required_plugins="nope"))


async def test_installed_distribution_is_discovered_through_its_entry_point(
    running: Runner,
) -> None:
    """The users plugin is its own distribution; without `plugins=` the app finds and runs it."""
    body = envelope(
        "user.created",
        {"id": "user_ep", "object": "user", "first_name": "Ada", "updated_at": 1_700_000_000_000},
    )
    async with running(plugins=None) as r:
        listing = await (await r.client.get("/plugins")).get_json()
        status, _ = await r.post(body)
        user = await r.db.users.find_one({"clerk_id": "user_ep"})
    users = next(p for p in listing["plugins"] if p["name"] == "users")
    assert users["distribution"] == "clerk-sync-users"
    assert users["status"] == "loaded"
    assert "user.created" in users["subscriptions"]
    assert status == 200
    assert user is not None
    assert user["first_name"] == "Ada"


def test_allow_list_and_deny_list_disable_plugins(make_settings: Callable[..., Settings]) -> None:
    allowed = {
        r.name: r.status
        for r in load_plugins(discover(), make_settings(clerk_sync_plugins="nothing-else"))
    }
    denied = {
        r.name: r.status
        for r in load_plugins(discover(), make_settings(clerk_sync_disabled_plugins="users"))
    }
    assert allowed["users"] == "disabled"
    assert denied["users"] == "disabled"


def test_two_plugins_with_one_name_are_a_load_error(make_settings: Callable[..., Settings]) -> None:
    from clerk_sync.plugins import direct

    records = load_plugins(direct([Plugin("twin"), Plugin("twin")]), make_settings())
    assert [r.status for r in records] == ["loaded", "failed"]
    assert "two plugins have this name" in (records[1].error or "")


def test_wildcard_subscriptions_cover_a_group_and_reject_unknown_groups() -> None:
    plugin = Plugin("wild")

    @plugin.on("organization.*")
    async def handle(event: Event, ctx: Context[None]) -> None:
        return None

    with pytest.raises(PluginError, match=r"unknown event type 'organisation\.\*'"):
        plugin.on("organisation.*")
    assert plugin.subscriptions[0].wants("organization.updated")
    assert not plugin.subscriptions[0].wants("organizationMembership.created")


def test_plugin_settings_are_read_from_prefixed_environment(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    from pydantic import BaseModel

    from clerk_sync.plugins import direct

    class AuditSettings(BaseModel):
        collection: str = "audit"
        limit: int = 5

    monkeypatch.setenv("CLERK_SYNC_PLUGIN_AUDIT_LOG_COLLECTION", "trail")
    monkeypatch.setenv("CLERK_SYNC_PLUGIN_AUDIT_LOG_LIMIT", "many")
    records = load_plugins(direct([Plugin("audit-log", settings=AuditSettings)]), make_settings())
    assert records[0].status == "failed"
    assert "CLERK_SYNC_PLUGIN_AUDIT_LOG_LIMIT" in (records[0].error or "")
    monkeypatch.setenv("CLERK_SYNC_PLUGIN_AUDIT_LOG_LIMIT", "7")
    records = load_plugins(direct([Plugin("audit-log", settings=AuditSettings)]), make_settings())
    assert records[0].status == "loaded"
    assert records[0].settings is not None
    assert records[0].settings.model_dump() == {"collection": "trail", "limit": 7}


def test_reconciler_declarations_are_checked_where_they_are_made() -> None:
    """An unknown resource, a second reconciler for one resource and an `async def` projection
    are refused with a PluginError naming the plugin."""
    plugin = Plugin("crm")
    with pytest.raises(PluginError, match=r"plugin 'crm': reconciler for 'sessions'"):
        plugin.reconciler("sessions", collection="s", cleared={})
    plugin.reconciler("users", collection="crm_contacts", cleared={})(lambda user: {})
    with pytest.raises(PluginError, match=r"plugin 'crm': two reconcilers for 'users'"):
        plugin.reconciler("users", collection="other", cleared={})

    async def project(user: dict[str, object]) -> dict[str, object]:
        return {}

    with pytest.raises(PluginError, match="must be a plain function"):
        plugin.reconciler("organizations", collection="o", cleared={})(project)  # type: ignore[arg-type]
    assert [r.resource for r in plugin.reconcilers] == ["users"]


async def test_plugins_listing_names_the_resources_each_plugin_reconciles(running: Runner) -> None:
    """`/plugins` shows each plugin's reconcilers next to its subscriptions (none for sessions)."""
    async with running(plugins=None) as r:
        listing = await (await r.client.get("/plugins")).get_json()
    by_name = {p["name"]: p["reconciles"] for p in listing["plugins"]}
    assert by_name["users"] == ["users", "invitations", "waitlist_entries"]
    assert by_name["organizations"] == [
        "organizations",
        "memberships",
        "roles",
        "permissions",
        "domains",
    ]
    assert by_name["sessions"] == []
    # the built-in billing plugin is discovered like the others
    assert by_name["billing"] == ["plans", "subscription_items", "subscriptions"]
    assert {p["name"]: p["status"] for p in listing["plugins"]}["billing"] == "loaded"
