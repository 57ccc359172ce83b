"""An in-memory mongoeco wire server in its own process, for `python -m bench --store memory`.

The SQLite-backed embedded store that `clerk-sync serve` starts is much slower than a MongoDB
server for some command shapes (see docs/performance.md); the in-memory engine shows how the
comparison moves when the store answers faster. Prints the same ready line as
`python -m clerk_sync.storage.embedded` and stops on SIGTERM or when its parent exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from clerk_sync.storage.embedded import EmbeddedProcess, EmbeddedThread

READY = "clerk-sync-embedded-store"


class MemoryProcess(EmbeddedProcess):
    """Like `EmbeddedProcess`, but the store keeps its data in memory."""

    def start(self, timeout: float = 30.0) -> str:
        command = [sys.executable, "-m", "bench.memstore"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != READY:
            self.stop()
            raise RuntimeError(f"in-memory store did not start: {line}")
        self.url = line[1]
        return self.url


def main() -> None:
    store = EmbeddedThread(path=None)
    print(READY, store.start(), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(1.0) and os.getppid() == parent:
        pass
    store.stop()


if __name__ == "__main__":
    main()
