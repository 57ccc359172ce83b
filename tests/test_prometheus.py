"""The service under a real Prometheus: promtool-clean exposition, several workers, and every
dashboard query and alert expression evaluated against scraped data."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from clerk_sync.testing import TEST_SECRET, envelope, new_svix_id, signed_headers
from tests.processes import ServerProcess, free_port
from tests.test_observability import samples
from tests.tools import tool

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "ops"))
import dashboard  # noqa: E402 - ops/ is not a package


@pytest.fixture
def server_env(mongodb_url: str, mongodb_db: str) -> dict[str, str]:
    return {
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
    }


def deliver_mix(url: str, count: int) -> dict[str, int]:
    """Send `count` deliveries of every kind; return how many of each outcome were answered."""
    seen: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(count):
            body = envelope("user.created", {"id": f"user_{n}", "updated_at": 1_700_000_000_000})
            if n % 5 == 4:  # the users plugin refuses a user without an id: a handler failure
                body = envelope("user.updated", {"object": "user"})
            headers = signed_headers(body)
            if n % 7 == 6:
                headers["svix-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            answer = client.post("/webhooks/clerk", content=body, headers=headers)
            key = str(answer.status_code)
            seen[key] = seen.get(key, 0) + 1
    return seen


def test_two_workers_count_every_request_exactly(server_env: dict[str, str]) -> None:
    """With two worker processes, the counters summed over outcomes equal the requests sent."""
    with ServerProcess(server_env, workers=2) as server:
        answered = deliver_mix(server.url, 60)
        scrapes = [httpx.get(server.url + "/metrics").text for _ in range(4)]
    assert sum(answered.values()) == 60
    for text in scrapes:
        counts = samples(text, "clerk_sync_webhooks_total")
        assert sum(counts.values()) == 60
        by_outcome: dict[str, float] = {}
        for labels, value in counts.items():
            outcome = dict(labels)["outcome"]
            by_outcome[outcome] = by_outcome.get(outcome, 0) + value
        assert by_outcome["invalid_signature"] == answered["401"]
        assert by_outcome["failed"] == answered["500"]
        assert by_outcome["processed"] == answered["200"]


def test_live_metrics_pass_promtool_check(server_env: dict[str, str]) -> None:
    with ServerProcess(server_env) as server:
        deliver_mix(server.url, 10)
        text = httpx.get(server.url + "/metrics").text
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.fixture
def prometheus(tmp_path: Path) -> tuple[str, Path]:
    """Where a real Prometheus will listen on 127.0.0.1, and its working directory."""
    return f"http://127.0.0.1:{free_port()}", tmp_path


def start_prometheus(base: str, directory: Path, target: str) -> subprocess.Popen[bytes]:
    rules = yaml.safe_load((REPO / "charts/clerk-sync/files/alerts.yaml").read_text())
    (directory / "rules.yaml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(directory / "rules.yaml")],
        "scrape_configs": [{"job_name": "clerk-sync", "static_configs": [{"targets": [target]}]}],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = base.rsplit(":", 1)[1]
    command = [
        tool("prometheus"),
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def query(base: str, expr: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(base + "/api/v1/query", params={"query": expr}).json()
    return answer


def test_dashboard_queries_return_data_and_alerts_evaluate(
    server_env: dict[str, str], prometheus: tuple[str, Path]
) -> None:
    """Every dashboard panel query returns data and every alert expression evaluates cleanly."""
    base, directory = prometheus
    with ServerProcess(server_env) as server:
        process = start_prometheus(base, directory, server.url.removeprefix("http://"))
        try:
            deliver_mix(server.url, 20)
            httpx.post(server.url + "/webhooks/clerk", content=b"x" * 2_000_000)
            duplicate = envelope("user.created", {"id": "user_dup"})
            svix_id = new_svix_id()
            for _ in range(2):
                headers = signed_headers(duplicate, msg_id=svix_id)
                httpx.post(server.url + "/webhooks/clerk", content=duplicate, headers=headers)
            exprs = [
                dashboard.expand_variables(e, rate_interval="1m") for e in dashboard.panel_queries()
            ]
            empty = list(exprs)
            deadline = time.monotonic() + 60
            while empty and time.monotonic() < deadline:
                deliver_mix(server.url, 3)
                time.sleep(1)
                empty = [e for e in empty if not query(base, e)["data"]["result"]]
            rules = yaml.safe_load((REPO / "charts/clerk-sync/files/alerts.yaml").read_text())
            alert_answers = {
                rule["alert"]: query(base, rule["expr"])
                for group in rules["groups"]
                for rule in group["rules"]
                if "alert" in rule
            }
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert empty == [], f"dashboard queries without data: {empty}"
    assert all(a["status"] == "success" for a in alert_answers.values()), alert_answers
