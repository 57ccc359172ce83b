"""The chart's console switch (`console.enabled`, docs/console.md): off by default; enabled, its
settings reach the ConfigMap and the ingress routes `/console`; the values schema and the
templates refuse an enabled console that nobody could use. Offline, as tests/ops/test_chart.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.test_chart import RELEASE, REQUIRED, ci_values, render_docs, render_error

pytestmark = pytest.mark.ops

CONSOLE_SETTINGS = ("CLERK_SYNC_CONSOLE_USERS", "CLERK_SYNC_CONSOLE_ORG", "CLERK_SYNC_GRAFANA_URL")


def kind(docs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == name]


def paths(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    [ingress] = kind(docs, "Ingress")
    return [
        (p["path"], p["pathType"])
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]


def test_the_console_is_off_by_default_and_the_ingress_routes_only_the_webhook() -> None:
    values = ci_values("ingress-tls")
    docs = render_docs(values)
    [config] = kind(docs, "ConfigMap")
    assert not set(CONSOLE_SETTINGS) & set(config["data"])
    assert paths(docs) == [("/webhooks/clerk", "Exact")]


def test_enabled_the_console_gets_its_settings_and_the_ingress_routes_console() -> None:
    values = ci_values("console")
    docs = render_docs(values)
    [config] = kind(docs, "ConfigMap")
    assert {k: config["data"][k] for k in CONSOLE_SETTINGS} == {
        "CLERK_SYNC_CONSOLE_USERS": "user_2operator1,user_2operator2",
        "CLERK_SYNC_CONSOLE_ORG": "org_2operators",
        "CLERK_SYNC_GRAFANA_URL": "https://grafana.example.com/d/clerk-sync",
    }
    assert paths(docs) == [("/webhooks/clerk", "Exact"), ("/console", "Prefix")]
    [ingress] = kind(docs, "Ingress")
    backends = {
        p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert backends == {RELEASE}


@pytest.mark.parametrize(
    ("console", "secrets", "message"),
    [
        ({"enabled": True}, {"jwtKey": "pem"}, "console.enabled needs console.users"),
        ({"enabled": True, "users": "user_2a"}, {}, "console.enabled needs session-token keys"),
    ],
)
def test_an_enabled_console_nobody_could_use_is_refused(
    console: dict[str, Any], secrets: dict[str, str], message: str
) -> None:
    values = {**REQUIRED, "secrets": {**REQUIRED["secrets"], **secrets}, "console": console}
    assert message in render_error(values)


@pytest.mark.parametrize(
    "console",
    [{"enabled": "yes"}, {"grafanaUrl": "grafana.example.com"}, {"org": "org x"}, {"admins": "a"}],
)
def test_the_values_schema_refuses_malformed_console_values(console: dict[str, Any]) -> None:
    assert "console" in render_error({**REQUIRED, "console": console})
