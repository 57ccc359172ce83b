"""Fixtures for the offline ops checks: repository paths, promtool, and PromQL helpers."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# Series names of DESIGN.md "Observability", as Prometheus stores them, plus `up` (set by
# Prometheus for every target) and the reconcile gauge announced for the reconcile job.
_COUNTERS = ("clerk_sync_webhooks_total", "clerk_sync_handler_failures_total")
_GAUGES = ("clerk_sync_mongodb_up", "clerk_sync_plugin_info")
_HISTOGRAMS = (
    "clerk_sync_webhook_duration_seconds",
    "clerk_sync_handler_duration_seconds",
    "clerk_sync_delivery_lag_seconds",
)
_ANNOUNCED = (
    "clerk_sync_reconcile_last_success_timestamp_seconds",
    "clerk_sync_stale_deliveries",  # issue 35: the stale-delivery sweeper's gauge
)

# Removed before looking for metric names: strings, label matchers, ranges and subqueries,
# grouping clauses. What is left that looks like a name and is not a call or keyword is a metric.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.I)
_NAME = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*(?!\w|\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's top directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of the promtool binary; a missing promtool fails the test, it never skips it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: run `bash scripts/install-tools.sh`", pytrace=False)
    return found


@pytest.fixture(scope="session")
def contract_metrics() -> frozenset[str]:
    """Every series name the dashboard and alert rules may query."""
    histogram_series = (f"{h}{s}" for h in _HISTOGRAMS for s in ("_bucket", "_sum", "_count"))
    return frozenset((*_COUNTERS, *_GAUGES, *histogram_series, *_ANNOUNCED, "up"))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (by their bare name, not `__name__`)."""
    stripped = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGE, _GROUPING):
        stripped = pattern.sub(" ", stripped)
    return {name for name in _NAME.findall(stripped) if name.lower() not in _KEYWORDS}


@pytest.fixture(scope="session")
def promql_metric_names() -> Callable[[str], set[str]]:
    """A function giving the metric names a PromQL expression selects."""
    return metric_names


@pytest.fixture(scope="session")
def promql_errors(
    promtool: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Sequence[str]], str]:
    """A function returning promtool's complaints about PromQL expressions, '' when all parse.

    Each expression becomes a recording rule `expr_<index>` of a temporary rule file, which
    `promtool check rules` parses.
    """
    directory = tmp_path_factory.mktemp("promql")

    def errors(expressions: Sequence[str]) -> str:
        rules = [{"record": f"expr_{i}", "expr": e} for i, e in enumerate(expressions)]
        path = directory / "expressions.rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "parse", "rules": rules}]}))
        result = subprocess.run(
            [promtool, "check", "rules", "--lint=none", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode == 0:
            return ""
        listing = "\n".join(f"  expr_{i}: {e}" for i, e in enumerate(expressions))
        return f"{result.stdout}{result.stderr}\nexpressions:\n{listing}"

    return errors
