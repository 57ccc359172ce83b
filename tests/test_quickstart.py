"""The README's first loop, as a newcomer runs it: `make run`, then a second terminal's commands.

Development mode (DESIGN.md): chosen by `make run` (`serve --dev`) or CLERK_SYNC_DEV=1, with no
MONGODB_URL, it means an embedded store, a development signing secret made once, dev-server.json
while serving, and a banner that never reaches a log line. Not chosen, it never happens.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from clerk_sync.cli.devmode import SECRET_FILE, SERVER_FILE, DevServer, banner
from clerk_sync.testing import sample, signed_headers
from tests.devloop import (
    REPO,
    Background,
    blocks,
    clean_environment,
    commands,
    fresh_checkout,
    section,
    shell,
)
from tests.processes import ServerProcess, free_port

USER_ID = json.loads(sample("user.created"))["data"]["id"]


def readme_loop() -> tuple[str, list[str]]:
    """The quick start's first block (one command: the server) and its second (the rest)."""
    found = [b for _, lang, b in blocks(section((REPO / "README.md").read_text(), "Quick start"))]
    server, second = commands(found[0]), commands(found[1])
    assert server == ["make run"], "the quick start starts with `make run` alone"
    return server[0], second


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return fresh_checkout(tmp_path / "clerk-sync")


def make_run(checkout: Path, **env: str) -> Background:
    """The quick start's `make run`, on a free port (`make run PORT=…`, as the README says)."""
    line, _ = readme_loop()
    return Background(f"{line} PORT={free_port()}", checkout, clean_environment(**env))


def run_second_terminal(checkout: Path) -> list[Any]:
    _, lines = readme_loop()
    results = [shell(line, checkout, clean_environment()) for line in lines]
    for line, result in zip(lines, results, strict=True):
        assert result.returncode == 0, f"{line}:\n{result.stdout}\n{result.stderr}"
    return results


def secret_of(checkout: Path) -> str:
    return (checkout / ".clerk-sync" / SECRET_FILE).read_text().strip()


def logs(server: Background) -> list[str]:
    """The server's log lines: its stdout but for the command make echoes."""
    return [line for line in server.stdout if not line.startswith(".venv/bin/clerk-sync serve")]


def assert_secret_not_logged(server: Background, secret: str) -> None:
    """Neither the secret nor its key (the base64 after whsec_) is in any output line."""
    key = secret.removeprefix("whsec_")
    leaked = [line for line in [*server.stdout, *server.stderr] if key in line]
    assert leaked == []


def test_readme_loop_syncs_the_first_delivery_and_keeps_its_secret(checkout: Path) -> None:
    """`make run`, then send-test (no flags), events list and db find users, all exit 0: the
    delivery is processed, the user is in `users`; after Ctrl-C and a restart the same
    development secret signs a second send-test. The secret is in no log line (JSON, console)."""
    with make_run(checkout) as first:
        server = first.start()
        sent, listed, found = run_second_terminal(checkout)
        as_json = shell(".venv/bin/clerk-sync events list --json", checkout, clean_environment())
        console = httpx.get(f"{server['server_url']}/console/deliveries", timeout=10)
        client: MongoClient[dict[str, Any]] = MongoClient(server["store_url"])
        user = client.clerk_sync.users.find_one({"clerk_id": USER_ID})
        client.close()
        first.stop()
    assert sent.stdout.startswith("200 OK svix-id=msg_")
    [delivery] = json.loads(as_json.stdout)
    assert delivery["type"] == "user.created"
    assert delivery["status"] == "processed"
    assert delivery["svix_id"] in listed.stdout
    assert user is not None
    assert user["email"] == "maya.okafor@northwind.example"
    assert USER_ID in found.stdout
    assert not (checkout / ".clerk-sync" / SERVER_FILE).exists()

    secret = secret_of(checkout)
    path = checkout / ".clerk-sync" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert all(json.loads(line)["event"] for line in logs(first))  # JSON log lines
    assert_secret_not_logged(first, secret)
    banner = "\n".join(first.stderr)
    assert f"webhook URL     {server['server_url']}/webhooks/clerk" in banner
    assert "send-test user.created" in banner
    # the console of development mode: its URL in the banner, served to 127.0.0.1 without a token
    assert f"console         {server['server_url']}/console\n" in banner
    assert console.status_code == 200
    assert delivery["svix_id"] in console.text
    assert f".clerk-sync/{SECRET_FILE} (shown only on a terminal)" in banner

    with make_run(checkout, LOG_FORMAT="console") as again:
        again.start()
        resent = shell(".venv/bin/clerk-sync send-test user.created", checkout, clean_environment())
        again.stop()
    assert resent.returncode == 0, resent.stderr
    assert resent.stdout.startswith("200 OK svix-id=msg_")
    assert secret_of(checkout) == secret
    assert logs(again)
    assert not any(line.startswith("{") for line in logs(again))  # console lines this time
    assert not (checkout / ".clerk-sync" / SERVER_FILE).exists()
    assert_secret_not_logged(again, secret)


def test_banner_shows_the_secret_on_a_terminal_only(checkout: Path) -> None:
    """With stderr on a terminal the banner has the secret; the logs (stdout) still do not."""
    main, tty = pty.openpty()
    port = free_port()
    env = clean_environment(LOG_FORMAT="console")
    process = subprocess.Popen(
        [sys.executable, "-m", "clerk_sync", "serve", "--dev", "--port", str(port)],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=tty,
        text=True,
        start_new_session=True,
    )
    os.close(tty)
    terminal: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(main, terminal), daemon=True)
    reader.start()
    try:
        _wait_ready(f"http://127.0.0.1:{port}")
        secret = secret_of(checkout)
    finally:
        process.terminate()
        logs, _ = process.communicate(timeout=40)
        reader.join(timeout=10)
        os.close(main)
    shown = b"".join(terminal).decode(errors="replace")
    assert f"signing secret  {secret}  (development only" in shown
    assert secret.removeprefix("whsec_") not in logs


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


def _wait_ready(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        threading.Event().wait(0.3)
    raise TimeoutError(url)


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("CLERK_", "MONGODB_", "LOG_")):
            monkeypatch.delenv(name)


def test_with_mongodb_url_and_no_secret_nothing_of_development_mode_happens(
    tmp_path: Path, mongodb_url: str, no_settings: None
) -> None:
    """Webhooks answer 503, and neither a secret file nor dev-server.json is written, even
    with development mode chosen (`--dev` changes nothing when MONGODB_URL is set)."""
    data = tmp_path / "data"
    body = sample("user.created")
    env = {"MONGODB_URL": mongodb_url, "CLERK_SYNC_DATA_DIR": str(data)}
    with ServerProcess(env, cwd=tmp_path, dev=True, probe="/livez") as server:
        answer = httpx.post(
            server.url + "/webhooks/clerk", content=body, headers=signed_headers(body)
        )
        files = sorted(p.name for p in data.iterdir()) if data.exists() else []
    assert answer.status_code == 503
    assert files == []
    assert not any("development mode" in line for line in server.lines)


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "spaces"])
def test_serve_without_mongodb_url_refuses_unless_development_mode_is_chosen(
    tmp_path: Path, no_settings: None, value: str | None
) -> None:
    """A MONGODB_URL unset, empty or blank (a Secret with a misnamed key) and no `--dev`: exit 2
    with one line naming MONGODB_URL, and no embedded store, secret or dev-server.json made."""
    data = tmp_path / "data"
    env = clean_environment(CLERK_SYNC_DATA_DIR=str(data), LOG_FORMAT="json")
    if value is not None:
        env["MONGODB_URL"] = value
    result = subprocess.run(
        [sys.executable, "-m", "clerk_sync", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a serve that falls into development mode serves on: this fails it
        check=False,
    )
    assert result.returncode == 2, result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith("clerk-sync: invalid configuration: MONGODB_URL: not set (or blank)")
    assert "clerk-sync serve --dev" in line
    assert "CLERK_SYNC_DEV=1" in line
    assert result.stdout == ""
    assert not data.exists()


def stale_server_file(data_dir: Path) -> None:
    """dev-server.json of a server that is gone: a dead pid, a store nobody listens on."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    data_dir.mkdir(parents=True)
    (data_dir / SERVER_FILE).write_text(
        json.dumps(
            {
                "server_url": f"http://127.0.0.1:{free_port()}",
                "store_url": f"mongodb://127.0.0.1:{free_port()}/",
                "pid": dead.pid,
            }
        )
    )


@pytest.mark.parametrize(
    "args",
    [
        ["events", "list"],
        ["events", "show", "msg_x"],
        ["events", "replay", "--status", "failed"],
        ["check"],
        ["db", "find", "users"],
        ["reconcile", "--dry-run"],
    ],
)
def test_a_stale_dev_server_file_is_one_line_not_a_hang(checkout: Path, args: list[str]) -> None:
    """Every command that needs MongoDB ignores the file of a dead server and says what to do."""
    stale_server_file(checkout / ".clerk-sync")
    env = clean_environment(CLERK_SECRET_KEY="sk_test_unused", CLERK_API_URL="http://127.0.0.1:9")
    result = subprocess.run(
        [".venv/bin/clerk-sync", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "clerk-sync: MONGODB_URL is not set and no clerk-sync serve is running on .clerk-sync: "
        "set MONGODB_URL or start clerk-sync serve"
    ]


def test_send_test_ignores_a_stale_file_for_its_default_url(checkout: Path) -> None:
    """The dead server's URL is not used: the default is http://127.0.0.1:8000."""
    stale_server_file(checkout / ".clerk-sync")
    from clerk_sync.cli.send_test import default_url
    from clerk_sync.settings import Settings

    settings = Settings(_env_file=None, clerk_sync_data_dir=checkout / ".clerk-sync")
    assert default_url(settings) == "http://127.0.0.1:8000"


@pytest.mark.parametrize("development", [True, False])
def test_serve_on_a_busy_port_prints_one_line_and_exits_2(
    tmp_path: Path, mongodb_url: str, no_settings: None, development: bool
) -> None:
    """No traceback, nothing started: no store, no dev-server.json."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = clean_environment(CLERK_SYNC_DATA_DIR=str(tmp_path / "data"))
        if not development:
            env["MONGODB_URL"] = mongodb_url
        dev = ["--dev"] if development else []
        result = subprocess.run(
            [sys.executable, "-m", "clerk_sync", "serve", *dev, "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"clerk-sync: port {port} on 127.0.0.1 is already in use: stop what listens there "
        "or choose another with --port"
    ]
    assert not (tmp_path / "data" / SERVER_FILE).exists()


def test_the_banner_gives_the_configured_webhook_path(tmp_path: Path) -> None:
    server = DevServer("http://127.0.0.1:8123", "mongodb://127.0.0.1:27099", os.getpid())
    text = banner(server, tmp_path, None, False, "/hooks/clerk")
    assert "webhook URL     http://127.0.0.1:8123/hooks/clerk\n" in text
