"""nginx (Debian's package, the engine behind ingress-nginx) in front of `clerk-sync serve`
processes, with its upstream kept to the servers whose `/readyz` answers 200.

`Nginx` runs its own master process on a free 127.0.0.1 port with its own prefix, config, pid
file and logs (root or not; the system's nginx service plays no part). `ReadinessController`
is what an ingress controller does with EndpointSlices: it probes every server's `/readyz`
every PROBE_INTERVAL seconds and, when the set of ready servers changes, rewrites the upstream
and reloads nginx (SIGHUP), waiting until the new configuration answers. nginx's passive
checks are off (`max_fails=0`), as ingress-nginx's balancer leaves them: membership follows
readiness only. Retries to the next server are off (`proxy_next_upstream off`): a request sent
to a server that no longer listens is answered 502, as it is wherever the proxy cannot try
another server for it (one endpoint; routing through a Service IP; a vanished pod IP that only
times out). With ingress-nginx's default (`error timeout`) nginx would quietly retry a refused
connection on the other server, and this harness could not tell a drain from none.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port
from tests.tools import INSTALL

PROBE_INTERVAL = 0.1
GENERATION = "/nginx-generation"

CONFIG = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format answers '$status $upstream_addr $upstream_status';
    access_log {prefix}/access.log answers;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream clerk_sync {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = {generation_path} {{ return 200 "{generation}"; }}
        location / {{
            proxy_pass http://clerk_sync;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_next_upstream off;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """The nginx command (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx", path=os.pathsep.join((os.environ["PATH"], "/usr/sbin")))
    if found is None:
        pytest.fail(f"nginx is not installed: {INSTALL}", pytrace=False)
    return found


class Nginx:
    """One nginx master process with an upstream of the given `host:port` servers."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = prefix / "nginx.conf"
        self.generation = 0
        self.upstream: tuple[str, ...] = ()
        self.process: subprocess.Popen[bytes] | None = None

    def _write(self, upstream: Sequence[str]) -> None:
        self.generation += 1
        self.upstream = tuple(upstream)
        servers = "\n".join(f"        server {s} max_fails=0;" for s in upstream)
        self.config.write_text(
            CONFIG.format(
                prefix=self.prefix,
                servers=servers,
                port=self.port,
                generation_path=GENERATION,
                generation=self.generation,
            )
        )

    def start(self, upstream: Sequence[str]) -> Nginx:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self._write(upstream)
        command = [nginx_binary(), "-p", str(self.prefix), "-c", str(self.config)]
        command += ["-e", str(self.prefix / "error.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_for_generation(30.0)
        return self

    def reload(self, upstream: Sequence[str]) -> None:
        """New configuration, SIGHUP; returns once new connections get it."""
        assert self.process is not None
        self._write(upstream)
        self.process.send_signal(signal.SIGHUP)
        self._wait_for_generation(10.0)

    def _wait_for_generation(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.errors()}")
            try:
                answer = httpx.get(self.url + GENERATION, timeout=2)
                if answer.text == str(self.generation):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"nginx did not load generation {self.generation}: {self.errors()}")

    def errors(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def answers(self) -> Counter[str]:
        """Statuses nginx answered, from its access log (the generation probes left out)."""
        found: Counter[str] = Counter()
        path = self.prefix / "access.log"
        for line in path.read_text().splitlines() if path.exists() else []:
            status, upstream, _ = line.split(" ", 2)
            if upstream != "-":
                found[status] += 1
        return found

    def upstream_errors(self) -> list[str]:
        """Access-log lines where an upstream attempt failed (a 5xx, or a retry when on)."""
        path = self.prefix / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if "," in line or line.startswith("5")]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


class ReadinessController:
    """Keeps nginx's upstream equal to the servers whose `/readyz` answers 200."""

    def __init__(self, nginx: Nginx, servers: Sequence[str]) -> None:
        self.nginx, self.servers = nginx, list(servers)
        self.reloads = 0
        self.ready: tuple[str, ...] = tuple(servers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ReadinessController:
        self._thread.start()
        return self

    def probe(self, server: str) -> bool:
        try:
            return httpx.get(f"http://{server}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            ready = tuple(s for s in self.servers if self.probe(s))
            if ready and ready != self.nginx.upstream:
                self.nginx.reload(ready)
                self.reloads += 1
            self.ready = ready
            self._stop.wait(PROBE_INTERVAL)

    def wait_for(self, server: str, timeout: float = 60.0) -> None:
        """Until `server` is back in nginx's upstream."""
        deadline = time.monotonic() + timeout
        while server not in self.nginx.upstream:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server} never rejoined the upstream")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
