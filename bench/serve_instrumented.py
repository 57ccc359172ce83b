"""`clerk-sync serve` with a global pymongo command counter (and optionally a profiler).

    CLERK_SYNC_BENCH_COMMAND_COUNTS=counts.json python -m bench.serve_instrumented --port 8000

The counter is registered with `pymongo.monitoring.register` before `clerk_sync` is imported, so
the service's client reports to it without any change to the service. Totals are kept current in
the file while the server runs and written once more when it exits (SIGTERM shuts the server
down gracefully, then `atexit` runs). With `BENCH_PROFILE=out.txt` the main thread is sampled by
pyinstrument between SIGUSR1 and SIGUSR2 (sent around a load phase) and the profile written
there as text. One worker only: spawned worker
processes would not inherit the listener.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from pathlib import Path

from bench.monitor import count_commands_from_env

PROFILE_ENV = "BENCH_PROFILE"


def _arm_profiler(path: Path) -> None:
    """SIGUSR1 starts sampling the main thread, SIGUSR2 stops it and writes the text report."""
    from pyinstrument import Profiler

    from bench.hotpath import render

    profiler = Profiler(interval=0.0005, async_mode="disabled")

    def start(*_: object) -> None:
        if not profiler.is_running:
            profiler.start()

    def stop(*_: object) -> None:
        if profiler.is_running:
            profiler.stop()
            path.write_text(render(profiler))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    atexit.register(stop)


def main(argv: list[str]) -> None:
    count_commands_from_env()
    profile = os.environ.get(PROFILE_ENV)
    if profile:
        _arm_profiler(Path(profile))
    from clerk_sync.cli import main as clerk_sync_main  # only now: the listener is in place

    clerk_sync_main(["serve", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
