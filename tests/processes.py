"""Real `clerk-sync serve` processes for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`python -m clerk_sync serve` in a child process; its JSON log lines are collected."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        cwd: Path | None = None,
        port: int | None = None,
        server: str | None = None,
        dev: bool = False,
        probe: str = "/readyz",
    ) -> None:
        """`dev` passes `--dev` (development mode when MONGODB_URL is unset); `start` waits for
        `probe` to answer 200 (`/livez` for a server that is up but must not be ready)."""
        self.port = port or free_port()
        self.server = server  # the HTTP server (`--server`); None: serve's default
        self.url = f"http://127.0.0.1:{self.port}"
        # no shut-down drain unless a test asks for one: stopping would wait its 5 s default
        self.env = {**os.environ, "LOG_FORMAT": "json", "CLERK_SYNC_SHUTDOWN_DELAY": "0", **env}
        self.workers = workers
        self.dev, self.probe = dev, probe
        self.cwd = cwd
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        command = [sys.executable, "-m", "clerk_sync", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        if self.server is not None:
            command += ["--server", self.server]
        command += ["--dev"] if self.dev else []
        self.process = subprocess.Popen(
            command,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError("server exited:\n" + "\n".join(self.lines))
            try:
                if httpx.get(self.url + self.probe, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError("server not ready:\n" + "\n".join(self.lines))

    def _collect(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        """Signal the server process only, as Kubernetes signals a container's PID 1."""
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def await_outcomes(db: Any, ids: Iterable[str], within: float = 10.0) -> None:
    """Wait until none of `ids` is `processing` any more, or `within` seconds have passed.

    A successful delivery's `processed` outcome follows its 200 by up to
    CLERK_SYNC_OUTCOME_FLUSH_SECONDS (group commit); a test reading the record right after the
    answers waits for it here, then asserts what it finds. No assertion on time is made."""
    wanted = list(ids)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if db.webhook_events.count_documents({"_id": {"$in": wanted}, "status": "processing"}) == 0:
            return
        time.sleep(0.05)
