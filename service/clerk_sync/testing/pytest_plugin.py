"""pytest fixtures for clerk-sync and plugin authors: a real MongoDB server for every test run.

The server is chosen in this order: `TEST_MONGODB_URL` if set; a MongoDB container from
testcontainers (`TEST_MONGODB_IMAGE`, default `mongo:8.0`) when a Docker engine answers; else the
embedded mongoeco wire server in memory, in a child process of its own. The pytest header names
the one used. Under pytest-xdist each worker process starts its own server (a container, or an
embedded child); each test has a database of its own on it either way.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pytest

BackendKind = Literal["url", "testcontainers", "embedded"]
DEFAULT_IMAGE = "mongo:8.0"


def docker_available(timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers `GET /_ping` (the testcontainers path needs one).

    Speaks HTTP over the socket itself so a missing engine costs one refused connect.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port))
        else:
            return False
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(256)
    except (OSError, ValueError):
        return False


def choose_backend(environ: Mapping[str, str], docker: Callable[[], bool]) -> BackendKind:
    """Pick the MongoDB server for tests; `docker` is only asked when no URL is given."""
    if environ.get("TEST_MONGODB_URL"):
        return "url"
    if docker():
        return "testcontainers"
    return "embedded"


def describe(kind: BackendKind, environ: Mapping[str, str]) -> str:
    if kind == "url":
        return "TEST_MONGODB_URL (an external MongoDB server)"
    if kind == "testcontainers":
        return f"testcontainers ({environ.get('TEST_MONGODB_IMAGE', DEFAULT_IMAGE)})"
    return "embedded mongoeco wire server (in memory, a child process)"


@dataclass
class MongoServer:
    """A running server for the test session and how to stop it."""

    kind: BackendKind
    url: str
    stop: Callable[[], None]


def start_server(kind: BackendKind, environ: Mapping[str, str]) -> MongoServer:
    if kind == "url":
        return MongoServer(kind, environ["TEST_MONGODB_URL"], lambda: None)
    if kind == "testcontainers":
        from testcontainers.community.mongodb import MongoDbContainer

        container = MongoDbContainer(environ.get("TEST_MONGODB_IMAGE", DEFAULT_IMAGE))
        container.start()
        return MongoServer(kind, container.get_connection_url(), container.stop)
    from clerk_sync.storage.embedded import EmbeddedProcess

    store = EmbeddedProcess(None)
    return MongoServer(kind, store.start(), store.stop)


_KEY = pytest.StashKey[BackendKind]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = choose_backend(os.environ, docker_available)


def pytest_report_header(config: pytest.Config) -> str:
    return f"clerk-sync MongoDB backend: {describe(config.stash[_KEY], os.environ)}"


@pytest.fixture(scope="session")
def mongodb_server(pytestconfig: pytest.Config) -> Iterator[MongoServer]:
    """The session's MongoDB server (see the module docstring for how it is chosen)."""
    server = start_server(pytestconfig.stash[_KEY], os.environ)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongodb_url(mongodb_server: MongoServer) -> str:
    return mongodb_server.url


@pytest.fixture
def mongodb_db(mongodb_url: str) -> Iterator[str]:
    """A database name of the test's own, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url, serverSelectionTimeoutMS=2000)
    try:
        client.drop_database(name)
    except PyMongoError:  # a test that stopped the server must not fail its teardown here
        return
    finally:
        client.close()
