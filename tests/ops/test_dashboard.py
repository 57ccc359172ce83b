"""Offline checks of the Grafana dashboard built by ops/dashboard.py."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.ops

DASHBOARD_JSON = Path("charts/clerk-sync/files/dashboard.json")


@pytest.fixture(scope="module")
def builder(repo_root: Path) -> ModuleType:
    """ops/dashboard.py, imported from its path (ops/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "clerk_sync_ops_dashboard", repo_root / "ops/dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed(repo_root: Path) -> dict[str, Any]:
    """The dashboard JSON committed to the chart."""
    document: dict[str, Any] = json.loads((repo_root / DASHBOARD_JSON).read_text())
    return document


@pytest.fixture(scope="module")
def panels(builder: ModuleType, committed: dict[str, Any]) -> list[dict[str, Any]]:
    """The committed dashboard's panels, rows left out."""
    return list(builder.iter_panels(committed))


def _run_builder(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "ops/dashboard.py", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_committed_dashboard_equals_regenerated_output(
    builder: ModuleType, repo_root: Path
) -> None:
    """The committed JSON is exactly what `python ops/dashboard.py` writes."""
    assert (repo_root / DASHBOARD_JSON).read_text() == builder.render(), (
        "dashboard.json is stale: run `python ops/dashboard.py`"
    )


def test_check_mode_accepts_the_committed_dashboard(repo_root: Path) -> None:
    """`--check` exits 0 while the committed file is current."""
    result = _run_builder(repo_root, "--check")
    assert result.returncode == 0, result.stderr


def test_check_mode_exits_one_for_a_stale_or_missing_file(repo_root: Path, tmp_path: Path) -> None:
    """`--check` exits 1 and names the fix when the file differs or does not exist."""
    stale = tmp_path / "dashboard.json"
    stale.write_text('{"title": "old"}\n')
    for output in (stale, tmp_path / "missing.json"):
        result = _run_builder(repo_root, "--check", "--output", str(output))
        assert result.returncode == 1
        assert "python ops/dashboard.py" in result.stderr
    assert stale.read_text() == '{"title": "old"}\n'


def test_generating_in_a_new_process_gives_identical_output(
    builder: ModuleType, repo_root: Path, tmp_path: Path
) -> None:
    """Output does not depend on the process (hash seed, object ids): a new run writes the same."""
    output = tmp_path / "dashboard.json"
    result = _run_builder(repo_root, "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert output.read_text() == builder.render()


def test_dashboard_has_the_stable_uid(committed: dict[str, Any]) -> None:
    """The uid stays `clerk-sync` so links and provisioning survive regeneration."""
    assert committed["uid"] == "clerk-sync"
    assert committed["title"] == "clerk-sync"


def test_datasource_is_a_prometheus_template_variable_used_everywhere(
    committed: dict[str, Any], panels: list[dict[str, Any]]
) -> None:
    """Every panel and target queries the Prometheus data source picked in `datasource`."""
    variables = {v["name"]: v for v in committed["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels:
        assert panel["datasource"] == reference, panel["title"]
        assert all(t["datasource"] == reference for t in panel["targets"]), panel["title"]


def test_job_variable_defaults_to_clerk_sync_and_filters_every_query(
    builder: ModuleType, committed: dict[str, Any], contract_metrics: frozenset[str]
) -> None:
    """The `job` variable defaults to `clerk-sync` and every panel query selects `job="$job"`."""
    variables = {v["name"]: v for v in committed["templating"]["list"]}
    assert variables["job"]["type"] == "query"
    assert variables["job"]["current"]["value"] == "clerk-sync"
    values_of = re.fullmatch(r"label_values\((\w+), job\)", variables["job"]["query"])
    assert values_of is not None
    assert values_of[1] in contract_metrics
    for expr in builder.panel_queries(committed):
        assert 'job="$job"' in expr, expr


def test_every_panel_has_at_least_one_target(panels: list[dict[str, Any]]) -> None:
    """No panel is left without a query."""
    assert panels
    for panel in panels:
        assert panel.get("targets"), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_panel_ids_are_unique_and_panels_fit_the_grid(committed: dict[str, Any]) -> None:
    """Grafana needs distinct panel ids; no panel reaches past the 24-column grid."""
    ids = [panel["id"] for panel in committed["panels"]]
    assert len(ids) == len(set(ids))
    for panel in committed["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]


def test_panel_queries_returns_every_target_expression(
    builder: ModuleType, panels: list[dict[str, Any]]
) -> None:
    """`panel_queries()` lists the expressions of all targets of all panels, in order."""
    expected = [target["expr"] for panel in panels for target in panel["targets"]]
    assert builder.panel_queries() == expected


def test_every_panel_query_parses_as_promql(
    builder: ModuleType, promql_errors: Callable[[Sequence[str]], str]
) -> None:
    """promtool parses every dashboard expression once the Grafana variables are filled in."""
    expressions = [builder.expand_variables(e) for e in builder.panel_queries()]
    assert "$" not in "".join(expressions)
    assert promql_errors(expressions) == ""


def test_promql_check_rejects_an_unexpanded_grafana_variable(
    promql_errors: Callable[[Sequence[str]], str],
) -> None:
    """The parse check really parses: `$__rate_interval` is not PromQL until expanded."""
    assert promql_errors(["rate(clerk_sync_webhooks_total[$__rate_interval])"]) != ""


def test_panel_queries_reference_only_contract_metrics(
    builder: ModuleType,
    contract_metrics: frozenset[str],
    promql_metric_names: Callable[[str], set[str]],
) -> None:
    """Each query selects at least one metric, and only metrics of DESIGN.md (or `up`)."""
    for expr in builder.panel_queries():
        names = promql_metric_names(builder.expand_variables(expr))
        assert names, expr
        assert names <= contract_metrics, f"{sorted(names - contract_metrics)} in {expr}"


def test_dashboard_charts_every_service_metric(
    builder: ModuleType, promql_metric_names: Callable[[str], set[str]]
) -> None:
    """Every metric of DESIGN.md "Observability" appears in at least one panel."""
    selected = {
        name.removesuffix("_bucket")
        for expr in builder.panel_queries()
        for name in promql_metric_names(builder.expand_variables(expr))
    }
    assert selected >= {
        "clerk_sync_webhooks_total",
        "clerk_sync_webhook_duration_seconds",
        "clerk_sync_handler_duration_seconds",
        "clerk_sync_handler_failures_total",
        "clerk_sync_delivery_lag_seconds",
        "clerk_sync_mongodb_up",
        "clerk_sync_plugin_info",
    }


def test_latency_panels_show_the_agreed_quantiles(builder: ModuleType) -> None:
    """Webhook latency shows p50/p95/p99, delivery lag p50/p95, handler duration p95 by plugin."""
    quantiles: dict[str, list[str]] = {}
    for expr in builder.panel_queries():
        if expr.startswith("histogram_quantile("):
            metric = expr.split("rate(")[1].split("_bucket")[0]
            quantiles.setdefault(metric, []).append(
                expr.split(",")[0].removeprefix("histogram_quantile(")
            )
    assert quantiles == {
        "clerk_sync_webhook_duration_seconds": ["0.5", "0.95", "0.99"],
        "clerk_sync_delivery_lag_seconds": ["0.5", "0.95"],
        "clerk_sync_handler_duration_seconds": ["0.95"],
    }
