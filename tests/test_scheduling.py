"""The xdist schedule of `make test`: shared-fixture modules stay together, the longest go first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.scheduling import LONGEST_FIRST, SHARED_FIXTURE_MODULES, group_of, rank

ROOT = Path(__file__).resolve().parents[1]


def test_a_module_sharing_a_fixture_is_one_group_and_any_other_test_is_on_its_own() -> None:
    build = "tests/ops/test_image_build.py::test_image_runs_its_entry_point_as_uid_10001"
    assert group_of(build) == "tests/ops/test_image_build.py"
    assert group_of("tests/test_store.py::test_a_claim_is_recorded") is None


def test_the_longest_are_handed_out_first_in_their_listed_order() -> None:
    soak = "tests/reliability/test_soak_and_outage.py::test_soak_two_servers"
    story = LONGEST_FIRST[2]
    ordinary = "tests/test_story.py::test_shuffled_deliveries_through_the_receiver"
    assert rank(soak) < rank(story) < rank(ordinary) == len(LONGEST_FIRST)
    assert rank(story + "[param]") > rank(story)  # a prefix of a test name is not the test


def test_every_listed_module_and_test_exists() -> None:
    """A renamed module would silently drop out of its group or off the front."""
    for entry in (*SHARED_FIXTURE_MODULES, *LONGEST_FIRST):
        path, _, name = entry.partition("::")
        assert (ROOT / path).is_file(), path
        assert not name or f"def {name}(" in (ROOT / path).read_text(), entry


def test_every_test_module_with_a_module_fixture_is_one_unit() -> None:
    """A new module-scoped fixture outside SHARED_FIXTURE_MODULES would be made once per
    worker that runs one of its tests."""
    with_module_fixture = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").rglob("test_*.py")
        if re.search(r'@pytest\.fixture\(scope="module"', path.read_text())
    }
    assert with_module_fixture <= SHARED_FIXTURE_MODULES


def test_under_xdist_a_shared_fixture_module_runs_in_one_worker_and_others_spread() -> None:
    """The real scheduler: `pytest -n 2` as `make test` runs it, over a module with a shared
    fixture (the dashboard) and one without (the signature check)."""
    shared, spread = "tests/ops/test_dashboard.py", "tests/test_verify.py"
    assert group_of(shared + "::x") == shared
    assert group_of(spread + "::x") is None
    command = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadscope"]
    # in this order (no shuffle): the first two units handed out are single tests of `spread`
    command += ["--no-loadscope-reorder", "-v", "-p", "no:cacheprovider", "-p", "no:randomly"]
    command += [spread, shared]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    workers: dict[str, set[str]] = {shared: set(), spread: set()}
    for line in result.stdout.splitlines():
        if match := re.match(r"\[(gw\d+)\] .*PASSED (tests/[^:]+)::", line):
            workers[match[2]].add(match[1])
    assert len(workers[shared]) == 1, (workers, result.stdout[-3000:])
    assert workers[spread] == {"gw0", "gw1"}, workers
