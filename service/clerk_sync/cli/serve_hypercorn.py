"""`clerk-sync serve --server hypercorn`: the app under hypercorn, with the drain of `drain`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app

from clerk_sync.cli.drain import ServeConfig, Signals, drained

APPLICATION = "clerk_sync.app:create_app()"


def hypercorn_config(config: ServeConfig) -> Config:
    """Hypercorn settings: limits on headers and slow clients, graceful shut-down."""
    hyper = Config()
    hyper.application_path = APPLICATION
    hyper.bind = [f"{config.host}:{config.port}"]
    hyper.workers = 0 if config.workers == 1 else config.workers
    hyper.h11_max_incomplete_size = config.max_header_bytes
    hyper.h2_max_header_list_size = config.max_header_bytes
    hyper.keep_alive_timeout = config.keep_alive_timeout
    hyper.read_timeout = int(config.read_timeout)
    hyper.graceful_timeout = config.graceful_timeout
    hyper.accesslog = None
    hyper.errorlog = "-"
    return hyper


@dataclass
class HypercornBackend:
    """The parent binds the sockets (as hypercorn does); every worker serves on copies."""

    config: Config
    sockets: Sockets

    @classmethod
    def bind(cls, config: ServeConfig) -> HypercornBackend:
        hyper = hypercorn_config(config)
        return cls(hyper, hyper.create_sockets())

    @property
    def workers(self) -> int:
        return max(self.config.workers, 1)

    @property
    def graceful_timeout(self) -> float:
        return float(self.config.graceful_timeout)

    def worker(self, delay: float, signals: Signals | None) -> None:
        """One worker: build the app here (spawned workers cannot share it), serve, drain."""
        from clerk_sync.app import create_app, runtime_of

        app = create_app()
        trigger = partial(drained, runtime_of(app), delay, signals)
        asyncio.run(
            worker_serve(
                wrap_app(app, self.config.wsgi_max_body_size, "asgi"),
                self.config,
                sockets=self.sockets,
                shutdown_trigger=trigger,
            )
        )

    def close(self) -> None:
        for sock in (
            *self.sockets.secure_sockets,
            *self.sockets.insecure_sockets,
            *self.sockets.quic_sockets,
        ):
            sock.close()
