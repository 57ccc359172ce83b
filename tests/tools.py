"""Finding the command-line tools the tests drive (promtool, prometheus, helm checks, ...)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

INSTALL = "run `make install` (Python tools) and `bash scripts/install-tools.sh`"


def tool(name: str) -> str:
    """Path of a command-line tool: this venv's bin, then PATH; missing fails the test."""
    search = os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"]))
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL}", pytrace=False)
    return found
