"""How the test suite chooses its MongoDB server (DESIGN.md "Tests and MongoDB")."""

from __future__ import annotations

import pytest

from clerk_sync.testing.pytest_plugin import (
    choose_backend,
    describe,
    docker_available,
    start_server,
)


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


def test_the_embedded_server_runs_in_a_child_process_and_stops() -> None:
    """The fallback store answers over a real connection from a process of its own (so it does
    not share the tests' interpreter), and `stop` ends that process."""
    import psutil
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    before = {p.pid for p in psutil.Process().children()}
    server = start_server("embedded", {})
    try:
        [child] = [p for p in psutil.Process().children() if p.pid not in before]
        assert "clerk_sync.storage.embedded" in " ".join(child.cmdline())
        assert "--memory" in child.cmdline()
        client: MongoClient[dict[str, object]] = MongoClient(
            server.url, serverSelectionTimeoutMS=5000
        )
        try:
            assert client.admin.command("ping")["ok"] == 1
        finally:
            client.close()
    finally:
        server.stop()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    client = MongoClient(server.url, serverSelectionTimeoutMS=300)
    try:
        with pytest.raises(PyMongoError):
            client.admin.command("ping")
    finally:
        client.close()


def test_the_testcontainers_path_starts_the_configured_image_and_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where Docker answers, the session's server is a `MongoDbContainer` of TEST_MONGODB_IMAGE
    (else mongo:8.0): its connection URL is the tests' URL and `stop` stops the container. The
    container class is replaced by a recorder here, as no Docker engine runs on this machine."""
    import testcontainers.community.mongodb

    seen: list[str] = []

    class Recorder:
        def __init__(self, image: str) -> None:
            seen.append(f"image {image}")

        def start(self) -> Recorder:
            seen.append("start")
            return self

        def get_connection_url(self) -> str:
            return "mongodb://test:test@127.0.0.1:49153"

        def stop(self) -> None:
            seen.append("stop")

    monkeypatch.setattr(testcontainers.community.mongodb, "MongoDbContainer", Recorder)
    server = start_server("testcontainers", {"TEST_MONGODB_IMAGE": "mongo:7.0"})
    assert (server.kind, server.url) == ("testcontainers", "mongodb://test:test@127.0.0.1:49153")
    assert seen == ["image mongo:7.0", "start"]
    server.stop()
    assert seen == ["image mongo:7.0", "start", "stop"]
    start_server("testcontainers", {})
    assert seen[-2:] == ["image mongo:8.0", "start"]
