"""How `make test` spreads the suite over its xdist workers (`--dist loadscope`, docs/testing.md).

Every test is scheduled on its own, except the tests of a module that share an expensive module-
or session-scoped fixture (an image build, a pair of servers, a rendered chart): those form one
unit, run by one worker, so the fixture is made once. The longest tests and units (from
`--durations`) are handed out first, so that none of them starts last and sets the wall time;
the rest keep pytest-randomly's shuffled order.

xdist's own `--dist loadgroup` would express the units with `xdist_group` marks, but xdist 3.8.0
names a group by rewriting `item._nodeid`, which pytest 9.2 no longer reads (nodes keep `_id`):
every test stayed on its own and three workers built the image at once. So the units come from a
scheduler of our own, xdist's `LoadScopeScheduling` with its scope rule replaced.
"""

from __future__ import annotations

from typing import Any

import pytest

#: Modules whose tests share a module- or session-scoped fixture worth making only once.
SHARED_FIXTURE_MODULES = frozenset(
    {
        "tests/ops/test_image_build.py",  # the base image, the wheelhouse, two image builds
        "tests/ops/test_chart.py",  # the rendered chart
        "tests/ops/test_dashboard.py",  # the generated dashboard
        "tests/ops/test_alerts.py",  # the rule files
        "tests/reliability/test_duplicates_and_crashes.py",  # the session's pair of servers
        "tests/reliability/test_group_commit_crash.py",
        "tests/reliability/test_soak_and_outage.py",  # the soak's own pair
        "tests/reliability/test_limits.py",  # one server, probed with slow clients
        "tests/reliability/test_body_attacks.py",  # one server, flooded
        "tests/test_docs_commands.py",  # the documented commands' environment
        "tests/test_console_browser.py",  # one served app and one Chromium for the module
    }
)

#: Started first, longest first (seconds under `make test`, docs/testing.md).
LONGEST_FIRST = (
    "tests/reliability/test_soak_and_outage.py",  # ~150 s, the soak
    "tests/ops/test_image_build.py",  # ~130 s, two image builds
    "tests/test_story.py::test_any_order_with_duplicates_ends_in_the_in_order_state",
    "tests/test_docs_commands.py",
    "tests/reliability/test_rolling_restart.py",
)


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def group_of(nodeid: str) -> str | None:
    """The unit a test is scheduled in: its module's path when the module shares a fixture."""
    module = module_of(nodeid)
    return module if module in SHARED_FIXTURE_MODULES else None


def rank(nodeid: str) -> int:
    """Where a test is handed out: by its place in LONGEST_FIRST, else after all of those."""
    for place, prefix in enumerate(LONGEST_FIRST):
        if nodeid == prefix or nodeid.startswith(prefix + "::") or module_of(nodeid) == prefix:
            return place
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """After pytest-randomly's shuffle (a wrapper, so earlier): the longest to the front, by a
    stable sort, so the shuffled order holds among the rest. The controller hands units out in
    this order (with `--no-loadscope-reorder`; xdist would otherwise put the largest first)."""
    items.sort(key=lambda item: rank(item.nodeid))


@pytest.hookimpl(optionalhook=True)  # a hook of xdist, which a plain `pytest` may lack
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `--dist loadscope`: a module sharing a fixture is one unit, any other test its own."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid) or nodeid

    return SharedFixtureScheduling(config, log)
