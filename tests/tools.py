"""Finding the command-line tools the tests drive (promtool, prometheus, helm checks, ...)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL = "run `make install` (Python tools) and `bash scripts/install-tools.sh`"


def tools_cache() -> Path:
    """Where downloaded and built tools are kept across clones, keyed by version (the same place
    as scripts/install-tools.sh): CLERK_SYNC_TOOLS_CACHE, else $XDG_CACHE_HOME/clerk-sync, else
    ~/.cache/clerk-sync."""
    if explicit := os.environ.get("CLERK_SYNC_TOOLS_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clerk-sync"


def tool(name: str) -> str:
    """Path of a command-line tool: this venv's bin, then PATH; missing fails the test."""
    search = os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"]))
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL}", pytrace=False)
    return found


def run(
    *command: str | Path, timeout: float = 300, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root and capture its output (never raises on failure)."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **kwargs,
    )
