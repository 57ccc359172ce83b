"""Offline checks of the Prometheus alert rules, their unit tests and their runbooks."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.ops

RULES = Path("charts/clerk-sync/files/alerts.yaml")
RULE_TESTS = Path("ops/tests/alerts_test.yaml")
RUNBOOKS = Path("docs/runbooks.md")
RUNBOOKS_URL = "https://github.com/clerk-sync/clerk-sync/blob/main/docs/runbooks.md"

ALERTS = (
    "ClerkSyncAbsent",
    "ClerkSyncHigh5xxRatio",
    "ClerkSyncInvalidSignatureSpike",
    "ClerkSyncHandlerFailureRatio",
    "ClerkSyncHighP99Latency",
    "ClerkSyncMongoDBDown",
    "ClerkSyncStaleDeliveries",
    "ClerkSyncDeliveryLag",
    "ClerkSyncReconcileStale",
)
# The reconcile gauge may come from another scrape job than the service (see the rule's comment).
NOT_JOB_SCOPED = frozenset({"ClerkSyncReconcileStale"})
RUNBOOK_PARTS = ("Meaning", "Impact", "Diagnosis", "Mitigation")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def rules(repo_root: Path) -> dict[str, dict[str, Any]]:
    """The alerting rules of alerts.yaml by alert name."""
    document = _load_yaml(repo_root / RULES)
    found = [rule for group in document["groups"] for rule in group["rules"]]
    return {rule["alert"]: rule for rule in found if "alert" in rule}


def _github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading (ASCII headings)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runbook_sections(text: str) -> dict[str, list[str]]:
    """Second-level headings as anchors, each with the third-level headings under it."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("## "):
            current = sections.setdefault(_github_anchor(line[3:]), [])
        elif not in_code and line.startswith("### "):
            current.append(line[4:].strip())
    return sections


def _promtool(promtool: str, repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_rule_file_is_a_plain_prometheus_rule_file(repo_root: Path) -> None:
    """The file holds only `groups`, so it is valid standalone and its groups can be embedded."""
    document = _load_yaml(repo_root / RULES)
    assert set(document) == {"groups"}
    assert all(set(group) <= {"name", "interval", "rules"} for group in document["groups"])


def test_rule_file_passes_promtool_check_with_fatal_lint(promtool: str, repo_root: Path) -> None:
    """`promtool check rules --lint-fatal` accepts the rules (no syntax errors, no duplicates)."""
    result = _promtool(promtool, repo_root, "check", "rules", "--lint-fatal", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass(promtool: str, repo_root: Path) -> None:
    """`promtool test rules ops/tests/alerts_test.yaml` succeeds."""
    result = _promtool(promtool, repo_root, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_file_defines_exactly_the_agreed_alerts(rules: dict[str, dict[str, Any]]) -> None:
    """The alerts are the eight of issue 4, no more and no fewer."""
    assert sorted(rules) == sorted(ALERTS)


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_has_severity_and_the_three_annotations(
    rules: dict[str, dict[str, Any]], alert: str
) -> None:
    """Each alert carries labels.severity and a non-empty summary, description and runbook_url."""
    rule = rules[alert]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    for name in ("summary", "description", "runbook_url"):
        assert str(rule["annotations"].get(name, "")).strip(), f"{alert} lacks {name}"


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_url_points_to_a_complete_runbook_section(
    rules: dict[str, dict[str, Any]], repo_root: Path, alert: str
) -> None:
    """runbook_url leads to a runbooks.md section with meaning, impact, diagnosis and mitigation."""
    url = rules[alert]["annotations"]["runbook_url"]
    page, _, anchor = url.partition("#")
    assert page == RUNBOOKS_URL
    sections = _runbook_sections((repo_root / RUNBOOKS).read_text())
    assert anchor in sections, f"no heading for #{anchor} in {RUNBOOKS}"
    assert sections[anchor] == list(RUNBOOK_PARTS)


def test_every_alert_expression_parses_as_promql(
    rules: dict[str, dict[str, Any]], promql_errors: Callable[[Sequence[str]], str]
) -> None:
    """promtool parses each alert's expression on its own, as a recording rule."""
    assert promql_errors([rules[alert]["expr"] for alert in ALERTS]) == ""


def test_alert_expressions_reference_only_contract_metrics(
    rules: dict[str, dict[str, Any]],
    contract_metrics: frozenset[str],
    promql_metric_names: Callable[[str], set[str]],
) -> None:
    """Each alert selects a metric, and only DESIGN.md metrics, `up` or the reconcile gauge."""
    for alert in ALERTS:
        names = promql_metric_names(rules[alert]["expr"])
        assert names, alert
        assert names <= contract_metrics, f"{alert}: {sorted(names - contract_metrics)}"


def test_alerts_select_the_clerk_sync_scrape_job(rules: dict[str, dict[str, Any]]) -> None:
    """Every selector of the service's own alerts is restricted to `job="clerk-sync"`."""
    for alert in sorted(set(ALERTS) - NOT_JOB_SCOPED):
        selectors = re.findall(r"[a-z_]+\{([^}]*)\}", rules[alert]["expr"])
        assert selectors, alert
        assert all('job="clerk-sync"' in s for s in selectors), alert


def test_absent_alert_uses_the_agreed_expression(rules: dict[str, dict[str, Any]]) -> None:
    """ClerkSyncAbsent is `absent(up{job="clerk-sync"} == 1)` held for 5 minutes."""
    assert rules["ClerkSyncAbsent"]["expr"].strip() == 'absent(up{job="clerk-sync"} == 1)'
    assert rules["ClerkSyncAbsent"]["for"] == "5m"


def test_every_alert_has_a_firing_and_a_silent_unit_test(repo_root: Path) -> None:
    """alerts_test.yaml has, per alert, a case where it fires and a case where it stays silent."""
    document = _load_yaml(repo_root / RULE_TESTS)
    firing: set[str] = set()
    silent: set[str] = set()
    for group in document["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing >= set(ALERTS), f"never fires: {sorted(set(ALERTS) - firing)}"
    assert silent >= set(ALERTS), f"never silent: {sorted(set(ALERTS) - silent)}"
