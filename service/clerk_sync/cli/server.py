"""Running the app under granian (the default) or hypercorn, with the embedded store in
development mode."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
from contextlib import ExitStack
from typing import TYPE_CHECKING, Literal

from clerk_sync.cli import devmode
from clerk_sync.cli.drain import Backend, ServeConfig, serve
from clerk_sync.cli.preflight import development_chosen, refusals
from clerk_sync.errors import ConfigError
from clerk_sync.observability.logs import make_logger
from clerk_sync.settings import Settings
from clerk_sync.storage.embedded import EmbeddedProcess

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

type ServerName = Literal["granian", "hypercorn"]
SERVERS: tuple[ServerName, ...] = ("granian", "hypercorn")
#: seconds in-flight requests get once the listener has closed (the chart checks its
#: terminationGracePeriodSeconds against CLERK_SYNC_SHUTDOWN_DELAY plus this)
GRACEFUL_TIMEOUT = 15.0
#: seconds a client may take to send its request head (headers); then it is disconnected
READ_TIMEOUT = 30.0


def server_config(
    host: str, port: int, workers: int, server: ServerName = "granian"
) -> ServeConfig:
    """The limits either server serves with: 16 KiB of headers, slow clients disconnected
    after 30 s, 15 s for in-flight requests at shut-down. Idle keep-alive connections close
    after 20 s under hypercorn; granian's header-read timer covers them (30 s)."""
    return ServeConfig(
        host=host,
        port=port,
        workers=workers,
        read_timeout=READ_TIMEOUT,
        keep_alive_timeout=READ_TIMEOUT if server == "granian" else 20.0,
        max_header_bytes=16 * 1024,
        graceful_timeout=GRACEFUL_TIMEOUT,
    )


def backend(config: ServeConfig, server: ServerName) -> Backend:
    """The chosen HTTP server; hypercorn binds its sockets here, in the parent."""
    if server == "hypercorn":
        from clerk_sync.cli.serve_hypercorn import HypercornBackend

        return HypercornBackend.bind(config)
    from clerk_sync.cli.serve_granian import GranianBackend

    return GranianBackend(config)


def run(
    settings: Settings, *, host: str, port: int, workers: int, server: ServerName = "granian"
) -> int:
    """Refuse what `check` refuses, start the store if needed, then serve."""
    log = make_logger(settings.log_level, settings.log_format)
    refusals(settings)
    development = development_chosen(settings)
    # the workers read settings afresh: development mode reaches them only when it is in force
    # (with MONGODB_URL set, CLERK_SYNC_DEV changes nothing, the console's 127.0.0.1 access too)
    os.environ["CLERK_SYNC_DEV"] = "1" if development else "0"
    port = bindable_port(host, port)
    with ExitStack() as stack:
        if development:
            development_mode(stack, settings, log, client_url(host, port))
        if workers > 1:
            stack.enter_context(_multiprocess_metrics())
        log.info("serving", host=host, port=port, workers=workers, server=server)
        chosen = backend(server_config(host, port, workers, server), server)
        return serve(chosen, settings.clerk_sync_shutdown_delay)
    return 0  # pragma: no cover - ExitStack does not swallow exceptions


def bindable_port(host: str, port: int) -> int:
    """The port to serve on (a free one for 0), tried now: a busy port is one line, not a trace."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers bind
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use: stop what listens there "
                    "or choose another with --port"
                ) from error
            raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from error
        bound: int = sock.getsockname()[1]
        return bound


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a server bound to `host`."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def development_mode(
    stack: ExitStack, settings: Settings, log: FilteringBoundLogger, server_url: str
) -> None:
    """The embedded store, the development secret if none is set, dev-server.json, the banner."""
    data_dir = settings.clerk_sync_data_dir
    devmode.refuse_second_server(data_dir)
    secret = None
    if not settings.clerk_webhook_signing_secret:
        secret = devmode.ensure_dev_secret(data_dir)
        os.environ["CLERK_WEBHOOK_SIGNING_SECRET"] = secret  # read by the app in every worker
    store = EmbeddedProcess(data_dir)
    os.environ["MONGODB_URL"] = store.start()
    stack.callback(store.stop)
    log.warning(
        "embedded_store",
        path=str(store.path),
        url=os.environ["MONGODB_URL"],
        note="development only: set MONGODB_URL to use a MongoDB server",
    )
    if secret is not None:
        log.info("development_signing_secret", path=str(data_dir / devmode.SECRET_FILE))
    server = devmode.DevServer(server_url, os.environ["MONGODB_URL"], os.getpid())
    stack.enter_context(devmode.announced(data_dir, server))
    path = settings.clerk_sync_webhook_path
    console = f"{server_url}/console" if settings.console_mounted else None
    show_banner(devmode.banner(server, data_dir, secret, sys.stderr.isatty(), path, console))


def show_banner(text: str) -> None:
    """On stderr: stdout carries the log lines. The secret is in it only on a terminal."""
    sys.stderr.write(text)
    sys.stderr.flush()


class _multiprocess_metrics:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers, removed on exit."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="clerk-sync-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.path
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
