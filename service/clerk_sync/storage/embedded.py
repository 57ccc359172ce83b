"""The embedded development store: mongoeco's MongoDB wire server, in memory or over SQLite.

`clerk-sync serve` runs it as a child process (`python -m clerk_sync.storage.embedded`) when
MONGODB_URL is unset, so every worker process talks to one store over a real MongoDB connection.
The test fixtures run it as a child process too, with the in-memory engine (`--memory`), so the
store has an interpreter of its own beside the tests; `EmbeddedThread` runs it in a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

DB_FILE = "clerk-sync.sqlite3"
_READY = "clerk-sync-embedded-store"


def _server(path: Path | None, host: str, port: int) -> Any:
    """A mongoeco wire server over SQLite at `path`, or in memory.

    mongoeco (about 45 MiB once imported) is loaded only here, so a `clerk-sync serve` that
    merely supervises the store process, or talks to a real MongoDB, never imports it.
    """
    from mongoeco.engines.memory import MemoryEngine
    from mongoeco.engines.sqlite import SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    engine = SQLiteEngine(str(path)) if path is not None else MemoryEngine()
    return AsyncMongoEcoProxyServer(engine=engine, host=host, port=port)


class EmbeddedThread:
    """A wire server on its own event loop in a daemon thread; `start()` returns its URL."""

    def __init__(self, path: Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._path, self._host, self._port = path, host, port
        self._ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="clerk-sync-embedded", daemon=True)

    def start(self, timeout: float = 15.0) -> str:
        self._thread.start()
        return self._ready.result(timeout=timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # report start-up failures to the waiting caller
            if not self._ready.done():
                self._ready.set_exception(error)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = _server(self._path, self._host, self._port)
        address = await server.start()
        self._ready.set_result(address.uri)
        try:
            await self._stop.wait()
        finally:
            await server.close()


class EmbeddedProcess:
    """The wire server as a child process: over SQLite in `data_dir` (what `clerk-sync serve`
    uses), or in memory when `data_dir` is None (the test fixtures)."""

    def __init__(self, data_dir: Path | None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data_dir, self.host, self.port = data_dir, host, port
        self.process: subprocess.Popen[str] | None = None
        self.url: str | None = None

    @property
    def path(self) -> Path:
        if self.data_dir is None:
            raise ValueError("an in-memory embedded store has no file")
        return self.data_dir / DB_FILE

    def start(self, timeout: float = 30.0) -> str:
        command = [sys.executable, "-m", "clerk_sync.storage.embedded"]
        if self.data_dir is None:
            command.append("--memory")
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            command += ["--file", str(self.path)]
        command += ["--host", self.host, "--port", str(self.port)]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.process.stdout is not None
        self.url = _read_ready(self.process.stdout, timeout)
        return self.url

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 10 s) and close its pipe."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _read_ready(stream: IO[str], timeout: float) -> str:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        line = pool.submit(stream.readline).result(timeout=timeout)
    prefix, _, url = line.strip().partition(" ")
    if prefix != _READY or not url:
        raise RuntimeError(f"embedded store did not start: {line.strip()!r}")
    return url


async def _serve_forever(path: Path | None, host: str, port: int) -> None:
    server = _server(path, host, port)
    address = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(_READY, address.uri, flush=True)
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:  # never outlive `clerk-sync serve`
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="clerk-sync embedded development store")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--file", type=Path, help="keep the data in this SQLite file")
    where.add_argument("--memory", action="store_true", help="keep the data in memory only")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.file is not None:
        os.makedirs(args.file.parent, exist_ok=True)
    asyncio.run(_serve_forever(args.file, args.host, args.port))


if __name__ == "__main__":
    main()
