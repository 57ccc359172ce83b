"""`make mutate`: mutmut over the delivery path against the tests that cover it (docs/testing.md).

mutmut imports the mutated copy of a package only from `./`, `src/` or `source/`, and names
mutants after the file's path with `src.` stripped; this repository keeps the package in
`service/`. So the run happens in `.mutate/`, where `src` links to `service/` and `tests` to
`tests/` ([tool.mutmut] in pyproject.toml is written for that layout). One embedded MongoDB
wire server, started here, serves every forked test run through TEST_MONGODB_URL.

Not part of CI: it takes about twenty minutes. `MUTATE_JOBS` sets the parallel test runs (4:
about half of a test run waits on timeouts and restarted servers, so two cores keep four busy).
`MUTATE_KEEP=1` keeps `.mutate/` from the last run, so `make mutate ARGS='name ...'` re-checks
chosen mutants (e.g. the survivors) against the current tests without regenerating the others.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from clerk_sync.storage.embedded import EmbeddedThread

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutate"


def stage() -> None:
    if os.environ.get("MUTATE_KEEP") == "1" and (STAGE / "mutants").is_dir():
        return
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir()
    (STAGE / "src").symlink_to(ROOT / "service")
    (STAGE / "tests").symlink_to(ROOT / "tests")
    shutil.copy2(ROOT / "pyproject.toml", STAGE / "pyproject.toml")


def main(argv: list[str]) -> int:
    stage()
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    jobs = os.environ.get("MUTATE_JOBS", "4")
    store = EmbeddedThread()
    # scripts/mutate_order.py runs each mutant's tests fastest first; pytest-randomly (which
    # `make test` uses) would shuffle that order away, so it is off here
    path = os.pathsep.join(filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")]))
    own = "-p mutate_order -p no:randomly"
    addopts = " ".join(filter(None, [own, os.environ.get("PYTEST_ADDOPTS")]))
    env = {
        **os.environ,
        "TEST_MONGODB_URL": store.start(),
        "PYTHONPATH": path,
        "PYTEST_ADDOPTS": addopts,
    }
    try:
        command = [mutmut, "run", "--max-children", jobs, *argv]
        run = subprocess.run(command, cwd=STAGE, env=env)  # noqa: S603 (our venv's mutmut)
        subprocess.run([mutmut, "results"], cwd=STAGE, env=env, check=False)  # noqa: S603
    finally:
        store.stop()
    return run.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
