"""`clerk-sync plugin new`: a plugin that installs, is found, runs, and passes its own tests."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pymongo import MongoClient

from clerk_sync.cli import main
from clerk_sync.cli.scaffold import Names
from clerk_sync.plugins import discover
from clerk_sync.testing import TEST_SECRET, sample
from tests.processes import ServerProcess

RUFF = Path(sys.executable).with_name("ruff")


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)


@pytest.fixture
def installed_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path, Path]]:
    """A plugin made by `plugin new`, installed with pip into a directory of its own and put on
    this process's path (and `site`, returned, on the path of its children). Not into the
    shared venv: tests running at the same time in other processes read that venv's plugins
    (`.env.example` loads every installed one), and would find this one half-installed."""
    name = f"scaffold-{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(main, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    target, site = tmp_path / name, tmp_path / "site"
    pip("install", "--no-deps", "--target", str(site), str(target))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield name, target, site
    importlib.invalidate_caches()


def test_new_plugin_installs_is_discovered_runs_and_passes_its_tests(
    installed_plugin: tuple[str, Path, Path], mongodb_url: str, mongodb_db: str, tmp_path: Path
) -> None:
    """Installed with pip, a real `serve` finds it by entry point and its handler writes."""
    name, target, site = installed_plugin
    names = Names(name)
    found = {c.name: c for c in discover()}
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = {
        "PYTHONPATH": path,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "CLERK_SYNC_PLUGINS": name,
        "CLERK_SYNC_REQUIRED_PLUGINS": name,
        f"{names.env_prefix}TAG": "from-env",
    }
    with ServerProcess(env, cwd=tmp_path) as server:
        sent = CliRunner().invoke(main, ["send-test", "user.created", "--url", server.url], env=env)
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    stored = client[mongodb_db][names.collection].find_one()
    client.close()
    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=target,
        env={**os.environ, "TEST_MONGODB_URL": mongodb_url, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found[name].distribution == names.distribution
    assert sent.exit_code == 0, sent.output
    delivered = json.loads(sample("user.created"))
    signed_up_at = datetime.fromtimestamp(delivered["timestamp"] / 1000, UTC)
    assert stored == {
        "_id": delivered["data"]["id"],
        "tag": "from-env",
        "signed_up_at": signed_up_at.replace(tzinfo=None),  # the envelope time, read naive
    }
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "2 passed" in own_tests.stdout


def test_new_plugin_has_the_promised_layout(tmp_path: Path) -> None:
    """Distribution clerk-sync-NAME, package with underscores, entry point NAME, tests, README."""
    result = CliRunner().invoke(main, ["plugin", "new", "loyalty-points", "--dir", str(tmp_path)])
    target = tmp_path / "loyalty-points"
    project = tomllib.loads((target / "pyproject.toml").read_text())
    module = (target / "src/clerk_sync_loyalty_points/__init__.py").read_text()
    tests = (target / "tests/test_plugin.py").read_text()
    assert result.exit_code == 0
    assert project["project"]["name"] == "clerk-sync-loyalty-points"
    assert project["project"]["dependencies"] == ["clerk-sync>=0.1.0"]
    assert project["project"]["entry-points"]["clerk_sync.plugins"] == {
        "loyalty-points": "clerk_sync_loyalty_points:plugin"
    }
    assert (target / "src/clerk_sync_loyalty_points/py.typed").exists()
    assert "class LoyaltyPointsSettings(BaseModel)" in module
    assert "CLERK_SYNC_PLUGIN_LOYALTY_POINTS_<FIELD>" in module
    assert "await ctx.engine.save(sign_up)" in module
    assert "from clerk_sync.testing import" in tests
    assert "mongodb_url: str, mongodb_db: str" in tests
    assert "clerk-sync-loyalty-points" in (target / "README.md").read_text()


def test_new_plugin_code_is_lint_clean(tmp_path: Path) -> None:
    """The generated Python passes ruff check and format with the ruff settings it ships."""
    CliRunner().invoke(main, ["plugin", "new", "lint-me", "--dir", str(tmp_path)])
    target = tmp_path / "lint-me"
    runs = [
        subprocess.run([str(RUFF), *args, "--no-cache", "."], cwd=target, capture_output=True)
        for args in (["check"], ["format", "--check"])
    ]
    assert [r.returncode for r in runs] == [0, 0], [r.stdout for r in runs]


def test_new_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["plugin", "new", "taken", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "exists and is not empty" in result.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("name", ["Loyalty", "1up", "with space", "x" * 42, "dots.no"])
def test_new_rejects_names_that_cannot_be_plugin_names(tmp_path: Path, name: str) -> None:
    result = CliRunner().invoke(main, ["plugin", "new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []
