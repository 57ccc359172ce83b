"""A fresh directory as a newcomer's clone looks after `make install`, and commands run in it.

The directory holds links to this checkout's Makefile, pyproject.toml, plugins and `.venv`, and
nothing else; commands run there with no CLERK_*, MONGODB_* or LOG_* variable in the environment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
LINKED = ("Makefile", "pyproject.toml", "plugins", "bench")
FENCE = re.compile(
    r"^(?:[ ]*<!-- (?P<mark>.*?) -->\n)?[ ]*```(?P<lang>\w*)\n(?P<body>.*?)^[ ]*```", re.M | re.S
)
SETTINGS_PREFIXES = ("CLERK_", "MONGODB_", "LOG_")


#: set by an enclosing `make test`; a newcomer's terminal has none of them (a nested make
#: would print "make[1]: Entering directory" among the server's log lines)
MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment as a newcomer's terminal has it: no clerk-sync settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    for name in ("PROMETHEUS_MULTIPROC_DIR", *MAKE_VARIABLES):
        env.pop(name, None)
    return {**env, **extra}


def fresh_checkout(path: Path) -> Path:
    """`path` made to look like a clone after `make install` (the venv is this one)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (path / name).symlink_to(REPO / name)
    (path / ".venv").symlink_to(Path(sys.prefix))
    return path


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(marker comment or "", language, body) of each fenced block of a Markdown text."""
    return [(m["mark"] or "", m["lang"], m["body"]) for m in FENCE.finditer(text)]


def commands(body: str) -> list[str]:
    """The command lines of a shell block: continuations joined, comments and blanks dropped."""
    joined = body.replace("\\\n", " ")
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def section(text: str, title: str) -> str:
    """The text of the `## title` section of a Markdown document."""
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def shell(line: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> Any:
    return subprocess.run(
        ["bash", "-c", line],  # the documented command, as typed
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Background:
    """A long-running documented command (`make run`), its stdout and stderr collected apart."""

    def __init__(self, line: str, cwd: Path, env: dict[str, str]) -> None:
        self.line, self.cwd, self.env = line, cwd, env
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.code: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.cwd / ".clerk-sync"

    def server(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = orjson.loads((self.data_dir / "dev-server.json").read_bytes())
        except (OSError, ValueError):
            return None
        return found

    def start(self, timeout: float = 90) -> dict[str, Any]:
        """Start the command and wait until dev-server.json names a server that is ready."""
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {self.line}"],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.process.stdout, self.stdout),
                (self.process.stderr, self.stderr),
            )
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.line} exited:\n{self.output}")
            server = self.server()
            if server is not None and self._ready(server["server_url"]):
                return server
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"{self.line} not ready:\n{self.output}")

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _collect(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join([*self.stdout, *self.stderr])

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Ctrl-C, as in the terminal: the signal goes to the whole process group."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        try:
            self.code = self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.code = self.process.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.code

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.code is None:
            self.stop()
