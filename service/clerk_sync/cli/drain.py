"""Serving with the shut-down drain of DESIGN.md ("Shut-down"), in one or several workers,
whichever HTTP server runs inside them (`serve_granian`, `serve_hypercorn`).

On SIGTERM every worker fails readiness at once (`/readyz` answers 503 `shutting down`) and
keeps serving every route for `CLERK_SYNC_SHUTDOWN_DELAY` seconds, so the orchestrator and the
ingress stop routing here first; then the server closes the listener, lets in-flight requests
finish within its graceful timeout, the app's shut-down runs and the process exits 0. SIGINT
(Ctrl-C on a terminal) skips the delay, also when it arrives during one.

With `--workers N` the parent spawns the workers and turns its signals into two shared events
every worker watches; a worker that gets the signal itself (a signal sent to the whole process
group) drains the same way.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as SharedEvent
from types import FrameType
from typing import Protocol

from clerk_sync.runtime import Runtime

WATCHED = {signal.SIGTERM, signal.SIGINT}
POLL = 0.05  # seconds between looks at the shared events
KILL_AFTER = 10.0  # seconds past delay + graceful timeout before a stuck worker is killed


@dataclass(frozen=True)
class Signals:
    """What the parent received: `drain` on SIGTERM, `drain` and `now` on SIGINT."""

    drain: SharedEvent
    now: SharedEvent


@dataclass(frozen=True)
class ServeConfig:
    """What `clerk-sync serve` asks of either HTTP server, in seconds and bytes."""

    host: str
    port: int
    workers: int
    #: a client still sending its request head this long after it began is disconnected
    read_timeout: float
    #: an idle keep-alive connection is closed after this long
    keep_alive_timeout: float
    #: the largest request head (request line and headers) served; larger ones answer 431
    max_header_bytes: int
    #: how long in-flight requests get once the listener has closed
    graceful_timeout: float


class Backend(Protocol):
    """One HTTP server's way of running a worker; picklable, for spawned workers."""

    @property
    def workers(self) -> int: ...

    @property
    def graceful_timeout(self) -> float: ...

    def worker(self, delay: float, signals: Signals | None) -> None:
        """Build the app, serve until `drained` returns, let in-flight requests finish, run
        the app's shut-down; raises when serving failed."""

    def close(self) -> None:
        """Close whatever this process holds of the listener (the workers have their own)."""


def serve(backend: Backend, delay: float) -> int:
    """Serve until a signal, drain; the exit status (0 after a clean shut-down)."""
    try:
        if backend.workers <= 1:
            backend.worker(delay, None)
            return 0
        return _supervise(backend, delay)
    finally:
        backend.close()


async def drained(runtime: Runtime, delay: float, signals: Signals | None) -> None:
    """Return when the listener should close: `delay` s after SIGTERM, at once after SIGINT.

    Readiness fails from the moment the signal is seen."""
    loop = asyncio.get_running_loop()
    drain, now = asyncio.Event(), asyncio.Event()

    def interrupted() -> None:
        drain.set()
        now.set()

    loop.add_signal_handler(signal.SIGTERM, drain.set)
    loop.add_signal_handler(signal.SIGINT, interrupted)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)  # a spawned worker starts blocked
    while not drain.is_set():
        if signals is not None and signals.drain.is_set():
            break
        await _sleep_until(drain, POLL)
    skip = now.is_set() or (signals is not None and signals.now.is_set())
    runtime.begin_shutdown(0.0 if skip else delay)
    deadline = loop.time() + delay
    while loop.time() < deadline:
        if now.is_set() or (signals is not None and signals.now.is_set()):
            return
        await _sleep_until(now, min(POLL, max(deadline - loop.time(), 0.0)))


async def _sleep_until(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return


def _supervise(backend: Backend, delay: float) -> int:
    """Run `backend.workers` spawned workers until they all exit; any failure stops them all."""
    context = multiprocessing.get_context("spawn")
    signals = Signals(context.Event(), context.Event())
    received: list[int] = []  # the handlers only append: the shared events take locks

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    # Workers inherit the blocked mask, so a signal reaching them before they serve waits
    # until their drain watches for it; the parent's own wait until its handlers are in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    processes = [
        context.Process(target=backend.worker, args=(delay, signals))
        for _ in range(backend.workers)
    ]
    for process in processes:
        process.start()
    previous = {s: signal.signal(s, on_signal) for s in WATCHED}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
    try:
        backend.close()  # the workers hold their own: the listener closes with theirs
        patience = delay + backend.graceful_timeout + KILL_AFTER
        return _wait_for(processes, signals, received, patience)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_for(
    processes: Sequence[BaseProcess], signals: Signals, received: list[int], patience: float
) -> int:
    """Wait for every worker, passing signals on; a worker ending before a signal, or one
    still running `patience` seconds after it, stops them all (status 1)."""
    status = 0
    running = list(processes)
    since: float | None = None
    while running:
        if received and since is None:
            since = time.monotonic()
            signals.drain.set()
        if signal.SIGINT in received:
            signals.now.set()
        finished = wait([p.sentinel for p in running], POLL * 4)
        if since is not None and time.monotonic() - since > patience:
            for process in running:
                process.kill()
            status = 1
        for process in [p for p in running if p.sentinel in finished or not p.is_alive()]:
            process.join()
            running.remove(process)
            if process.exitcode != 0 or since is None:
                status = 1
                received.append(signal.SIGINT)  # stop the other workers at once
    return status
