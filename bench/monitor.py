"""Counting the MongoDB commands a server sends, with pymongo command monitoring.

`CommandCounter` is a `pymongo.monitoring.CommandListener` that counts started commands by name.
`count_commands_to(path)` registers one globally (for every client created afterwards), rewrites
`path` as JSON ten times a second and once more at exit, so a
benchmark can read totals while the server runs and after it stops.

The proposed hook in `clerk_sync.store.Store` (docs/performance.md) would pass
`count_commands_from_env(register=False)` to its client through `event_listeners=[...]` when
`CLERK_SYNC_BENCH_COMMAND_COUNTS` is set; until then bench/serve_instrumented.py registers it
globally before clerk_sync is imported.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from pymongo import monitoring

ENV = "CLERK_SYNC_BENCH_COMMAND_COUNTS"
_INTERVAL = 0.1


class CommandCounter(monitoring.CommandListener):
    """Counts commands by name; safe to call from pymongo's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self._counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def write(self, path: Path) -> None:
        """Replace `path` atomically with `{"written_at": <epoch s>, "commands": {...}}`."""
        record = {"written_at": time.time(), "pid": os.getpid(), "commands": self.snapshot()}
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(record))
        partial.replace(path)


def count_commands_to(path: str | Path, *, register: bool = True) -> CommandCounter:
    """A counter kept current in `path` (from a daemon thread, and at exit).

    `register=True` registers it globally, for every client created afterwards; with False it is
    only returned, for `MongoClient(..., event_listeners=[counter])`.
    """
    target = Path(path)
    counter = CommandCounter()
    if register:
        monitoring.register(counter)
    counter.write(target)
    threading.Thread(target=_keep_writing, args=(counter, target), daemon=True).start()
    atexit.register(counter.write, target)
    return counter


def count_commands_from_env(*, register: bool = True) -> CommandCounter | None:
    """`count_commands_to($CLERK_SYNC_BENCH_COMMAND_COUNTS)` when that variable is set."""
    path = os.environ.get(ENV)
    return count_commands_to(path, register=register) if path else None


def _keep_writing(counter: CommandCounter, path: Path) -> None:
    """Rewrite even when nothing changed: a fresh `written_at` tells readers nothing is pending."""
    while True:
        time.sleep(_INTERVAL)
        counter.write(path)


def read_counts(path: Path, *, after: float, timeout: float = 5.0) -> dict[str, int]:
    """The totals in `path` as written after the epoch time `after` (waits for a fresh write)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = {"written_at": 0.0}
        if record["written_at"] > after:
            counts: dict[str, int] = record["commands"]
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"no fresh command counts in {path}")
        time.sleep(0.05)
