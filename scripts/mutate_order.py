"""A pytest plugin for `make mutate`: run a mutant's tests fastest first.

mutmut runs the tests that cover a mutant with `-x`, so a killed mutant costs the tests run up to
the first failure; but it passes them as a set, in no useful order, and a pipeline mutant then
often waits out a fault test (handler timeouts, a restarted MongoDB server) before a quick
contract test would have failed. This plugin sorts the items of a mutant's run by the durations
mutmut recorded in its stats run (`mutants/mutmut-stats.json`, read from the working directory
mutmut runs the tests in), unknown tests last. Outside a mutant's run (no `MUTANT_UNDER_TEST`,
or no stats yet) it leaves the order alone. scripts/mutate.py loads it with `-p`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

STATS = Path("mutmut-stats.json")


def durations() -> dict[str, float]:
    """Recorded seconds per test id; empty when mutmut has not written its stats yet."""
    try:
        recorded = json.loads(STATS.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(test): float(seconds) for test, seconds in recorded.items()}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return
    recorded = durations()
    if not recorded:
        return
    unknown = max(recorded.values()) + 1.0
    items.sort(key=lambda item: recorded.get(item.nodeid, unknown))
