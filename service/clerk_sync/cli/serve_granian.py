"""`clerk-sync serve` on granian (the default): the app under granian's Rust HTTP/1.1 and
HTTP/2 server, embedded, so that the drain of `drain` keeps control of the signals.

Each worker runs one embedded granian server in its own event loop (uvloop's), with the app's
start-up and shut-down run here rather than by granian's lifespan: after a signal and the delay,
`Server.stop()` closes the listener and granian lets in-flight requests finish; only then, or
when the graceful timeout is up, does the app shut down (the group commit is flushed there).
Workers of `--workers N` each bind the port themselves (granian listens with SO_REUSEPORT), so
the kernel spreads connections over them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvloop
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server.embed import Server

from clerk_sync.cli.drain import ServeConfig, Signals, drained

if TYPE_CHECKING:
    from quart import Quart

    from clerk_sync.runtime import Runtime

#: granian's own lines (errors only) go to stderr: stdout carries the service's JSON log
_STDERR = {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
LOGGING: dict[str, Any] = {"handlers": {"console": _STDERR, "access": _STDERR}}


@dataclass(frozen=True)
class GranianBackend:
    """Serves `config` on granian; nothing is bound in the parent."""

    config: ServeConfig

    @property
    def workers(self) -> int:
        return self.config.workers

    @property
    def graceful_timeout(self) -> float:
        return self.config.graceful_timeout

    def worker(self, delay: float, signals: Signals | None) -> None:
        """One worker: build the app here (spawned workers cannot share it), serve, drain."""
        from clerk_sync.app import create_app, runtime_of

        app = create_app()
        # uvloop: granian and motor hand every request and every command to the loop from
        # their own threads, and uvloop's wake-ups cost less CPU (docs/performance.md)
        asyncio.run(
            self._serve(app, runtime_of(app), delay, signals), loop_factory=uvloop.new_event_loop
        )

    def close(self) -> None:
        return None  # each worker holds its own listener

    async def _serve(
        self, app: Quart, runtime: Runtime, delay: float, signals: Signals | None
    ) -> None:
        await app.startup()
        try:
            await self._until_drained(app, runtime, delay, signals)
        finally:
            await app.shutdown()

    async def _until_drained(
        self, app: Quart, runtime: Runtime, delay: float, signals: Signals | None
    ) -> None:
        """Serve until `drained` returns, then stop and give in-flight requests the graceful
        timeout; a server that stops on its own (it could not bind, say) raises."""
        server = self.server(app)
        serving = asyncio.create_task(server.serve())
        trigger = asyncio.create_task(drained(runtime, delay, signals))
        await asyncio.wait({serving, trigger}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            trigger.cancel()
            serving.result()
            raise RuntimeError("granian stopped serving before any signal")
        server.stop()  # type: ignore[no-untyped-call]  # granian leaves it unannotated
        try:
            await asyncio.wait_for(serving, self.config.graceful_timeout)
        except TimeoutError:
            return  # what is still in flight is cut off, as hypercorn's graceful timeout does

    def server(self, app: Quart) -> Server:
        """The embedded server with the limits of `config`."""
        config = self.config
        http1 = HTTP1Settings(
            # granian's header-read timer also runs while a keep-alive connection is idle
            header_read_timeout=int(config.read_timeout * 1000),
            keep_alive=True,
            max_buffer_size=config.max_header_bytes,
        )
        http2 = HTTP2Settings(
            max_headers_size=config.max_header_bytes,
            keep_alive_timeout=int(config.keep_alive_timeout),
        )
        return Server(
            app,
            address=config.host,
            port=config.port,
            interface=Interfaces.ASGINL,  # the lifespan is run by `_serve`
            http=HTTPModes.auto,
            websockets=False,
            http1_settings=http1,
            http2_settings=http2,
            log_level=LogLevels.error,
            log_dictconfig=LOGGING,
            log_access=False,
        )
