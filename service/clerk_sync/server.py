"""Running the app under hypercorn, with the embedded store when MONGODB_URL is unset."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack

from hypercorn.config import Config

from clerk_sync.drain import serve
from clerk_sync.embedded import EmbeddedProcess
from clerk_sync.logs import make_logger
from clerk_sync.plugins import discover, load_plugins, require
from clerk_sync.settings import Settings

APPLICATION = "clerk_sync.app:create_app()"
#: seconds in-flight requests get once the listener has closed (the chart checks its
#: terminationGracePeriodSeconds against CLERK_SYNC_SHUTDOWN_DELAY plus this)
GRACEFUL_TIMEOUT = 15.0


def server_config(host: str, port: int, workers: int) -> Config:
    """Hypercorn settings: limits on headers and slow clients, graceful shut-down."""
    config = Config()
    config.application_path = APPLICATION
    config.bind = [f"{host}:{port}"]
    config.workers = 0 if workers == 1 else workers
    config.h11_max_incomplete_size = 16 * 1024
    config.h2_max_header_list_size = 16 * 1024
    config.keep_alive_timeout = 20
    config.read_timeout = 30
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.accesslog = None
    config.errorlog = "-"
    return config


def run(settings: Settings, *, host: str, port: int, workers: int) -> int:
    """Check plugins once (required ones must load), start the store if needed, then serve."""
    log = make_logger(settings.log_level, settings.log_format)
    require(load_plugins(discover(), settings), settings.clerk_sync_required_plugins)
    if settings.read_api_enabled:
        from clerk_sync.auth import build_verifier

        build_verifier(settings)  # a bad CLERK_JWT_KEY fails here once, not in every worker
    with ExitStack() as stack:
        if settings.mongodb_url is None:
            store = EmbeddedProcess(settings.clerk_sync_data_dir)
            os.environ["MONGODB_URL"] = store.start()
            stack.callback(store.stop)
            log.warning(
                "embedded_store",
                path=str(store.path),
                url=os.environ["MONGODB_URL"],
                note="development only: set MONGODB_URL to use a MongoDB server",
            )
        if workers > 1:
            stack.enter_context(_multiprocess_metrics())
        log.info("serving", host=host, port=port, workers=workers)
        return serve(server_config(host, port, workers), settings.clerk_sync_shutdown_delay)
    return 0  # pragma: no cover - ExitStack does not swallow exceptions


class _multiprocess_metrics:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers, removed on exit."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="clerk-sync-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.path
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
