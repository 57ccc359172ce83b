"""The two servers under test as child processes, with their CPU time, peak RSS and store.

`clerk-sync serve` is started exactly as a user starts it (default settings, one worker); with
MONGODB_URL unset it starts its embedded store as its own child process. The peer runs under the
`hypercorn` command with its own embedded store, started here. CPU time is read from the kernel's
accounting of every process in a server's tree, with the store process counted apart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from clerk_sync.storage.embedded import EmbeddedProcess
from clerk_sync.testing import TEST_SECRET

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STORE_MARK = "clerk_sync.storage.embedded"
_SCRUBBED = ("MONGODB_URL", "MONGODB_DB", "LOG_LEVEL", "LOG_FORMAT", "PROMETHEUS_MULTIPROC_DIR")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(**extra: str) -> dict[str, str]:
    """This environment without settings of ours that could leak in, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith(("CLERK_", "BENCH_"))
    }
    env["CLERK_WEBHOOK_SIGNING_SECRET"] = TEST_SECRET
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds (user + system) of a server's own processes and of its store."""

    server: float
    store: float

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.server - other.server, self.store - other.store)


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def _peak_rss(pid: int) -> int:
    """VmHWM (the kernel's resident-set high-water mark) of a process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


class Server:
    """One server under test: its command, port, log file, process tree and store."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        workdir: Path,
        *,
        ready_path: str,
        port: int,
        store: EmbeddedProcess | None = None,
    ) -> None:
        self.name, self.command, self.env, self.workdir = name, command, env, workdir
        self.ready_path, self.port, self.own_store = ready_path, port, store
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.serving: list[psutil.Process] = []
        self.stores: list[psutil.Process] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        self._find_processes()
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            try:
                answer = httpx.get(self.url + self.ready_path, timeout=2)
                if self.ready_path != "/readyz" or answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout:g} s; see {self.log_path}")

    def _find_processes(self) -> None:
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        self.serving, self.stores = [root], []
        for child in root.children(recursive=True):
            is_store = any(STORE_MARK in part for part in child.cmdline())
            (self.stores if is_store else self.serving).append(child)
        if self.own_store is not None and self.own_store.process is not None:
            self.stores.append(psutil.Process(self.own_store.process.pid))

    def usage(self) -> Usage:
        return Usage(
            sum(_cpu(p) for p in self.serving),
            sum(_cpu(p) for p in self.stores),
        )

    def peak_rss(self) -> int:
        """The largest resident-set high-water mark among the serving processes (store apart)."""
        return max(_peak_rss(p.pid) for p in self.serving)

    def store_peak_rss(self) -> int:
        return max((_peak_rss(p.pid) for p in self.stores), default=0)

    def stop(self) -> int:
        """SIGTERM (graceful shut-down), then the store; SIGKILL the group if it hangs."""
        code = 0
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                code = self.process.wait()
        if self.own_store is not None:
            self.own_store.stop()
        return code


def clerk_sync(
    workdir: Path,
    *,
    mongodb_url: str | None,
    database: str,
    store: EmbeddedProcess | None = None,
    http_server: str = "granian",
    name: str = "clerk-sync",
    **env: str,
) -> Server:
    """`clerk-sync serve` with default settings and one worker, as `make run` starts it.

    Without a URL or a started `store`, serve starts its own embedded store as its child.
    `http_server="hypercorn"` adds `--server hypercorn`; `"uvicorn"` runs the same app under
    bench/serve_uvicorn.py instead.
    """
    port = free_port()
    # development mode chosen, as `make run` does (`serve --dev`); a MONGODB_URL overrides it
    extra = {"CLERK_SYNC_DATA_DIR": str(workdir / "data"), "CLERK_SYNC_DEV": "1", **env}
    mongodb_url = store.url if store is not None else mongodb_url
    if mongodb_url:
        extra |= {"MONGODB_URL": mongodb_url, "MONGODB_DB": database}
    command = [str(BIN / "clerk-sync"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if "CLERK_SYNC_BENCH_COMMAND_COUNTS" in env:
        command = [sys.executable, "-m", "bench.serve_instrumented", *command[2:]]
    if http_server == "uvicorn":
        command = [sys.executable, "-m", "bench.serve_uvicorn", *command[2:]]
    elif http_server != "granian":
        command += ["--server", http_server]
    return Server(
        name,
        command,
        base_env(**extra),
        workdir,
        ready_path="/readyz",
        port=port,
        store=store,
    )


def peer(
    workdir: Path,
    *,
    mongodb_url: str | None,
    database: str,
    store: EmbeddedProcess | None = None,
    **env: str,
) -> Server:
    """bench/peer.py under the `hypercorn` command, with its own store unless given a URL."""
    port = free_port()
    if store is None and not mongodb_url:
        store = EmbeddedProcess(workdir / "data")
        store.start()
    url = store.url if store is not None else mongodb_url
    assert url is not None
    command = [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", "bench.peer:create_app()"]
    extra = {"MONGODB_URL": url, "MONGODB_DB": database, **env}
    return Server(
        "peer", command, base_env(**extra), workdir, ready_path="/livez", port=port, store=store
    )
