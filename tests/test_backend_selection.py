"""How the test suite chooses its MongoDB server (DESIGN.md "Tests and MongoDB")."""

from __future__ import annotations

import pytest

from clerk_sync.testing.pytest_plugin import choose_backend, describe, docker_available


def _never() -> bool:
    raise AssertionError("Docker must not be asked when TEST_MONGODB_URL is set")


def test_url_from_environment_wins_without_asking_docker() -> None:
    """TEST_MONGODB_URL is used as is, even where Docker would answer."""
    assert choose_backend({"TEST_MONGODB_URL": "mongodb://db:27017"}, _never) == "url"


def test_docker_engine_selects_testcontainers() -> None:
    assert choose_backend({}, lambda: True) == "testcontainers"


def test_no_url_and_no_docker_selects_embedded_server() -> None:
    assert choose_backend({}, lambda: False) == "embedded"


def test_empty_url_counts_as_unset() -> None:
    assert choose_backend({"TEST_MONGODB_URL": ""}, lambda: False) == "embedded"


def test_testcontainers_image_is_configurable_and_named() -> None:
    """The header names the image, default mongo:8.0, overridden by TEST_MONGODB_IMAGE."""
    assert describe("testcontainers", {}) == "testcontainers (mongo:8.0)"
    assert "mongo:7.0" in describe("testcontainers", {"TEST_MONGODB_IMAGE": "mongo:7.0"})


def test_docker_probe_reports_false_when_no_engine_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With DOCKER_HOST pointing at nothing, the probe says no instead of raising."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    assert docker_available() is False


def test_pytest_header_names_the_backend(pytestconfig: pytest.Config) -> None:
    header = pytestconfig.hook.pytest_report_header(config=pytestconfig, start_path=None)
    assert any("clerk-sync MongoDB backend:" in str(line) for line in header)
