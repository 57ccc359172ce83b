"""Development mode (MONGODB_URL unset): the generated signing secret and the running server's file.

`clerk-sync serve` on the embedded store keeps two files in CLERK_SYNC_DATA_DIR:
`dev-signing-secret` (made once, mode 0600, reused) when CLERK_WEBHOOK_SIGNING_SECRET is unset, and
`dev-server.json` (server URL, embedded store URL, pid) while it serves, for the other commands.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from clerk_sync.errors import ConfigError
from clerk_sync.webhooks.verify import decode_secret

SECRET_FILE = "dev-signing-secret"  # noqa: S105 - a file name
SERVER_FILE = "dev-server.json"
SECRET_BYTES = 24  # the size of the keys Svix generates


@dataclass(frozen=True, slots=True)
class DevServer:
    """What `dev-server.json` says about a running development server."""

    server_url: str
    store_url: str
    pid: int


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def ensure_dev_secret(data_dir: Path) -> str:
    """The development secret of `data_dir`, generated (mode 0600) the first time."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        found = read_dev_secret(data_dir)
        assert found is not None
        return found
    secret = new_secret()
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(secret + "\n")
    return secret


def read_dev_secret(data_dir: Path) -> str | None:
    """The development secret kept in `data_dir`, None when there is none."""
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        if not secret.startswith("whsec_"):
            raise ValueError("it does not start with 'whsec_'")
        decode_secret(secret)
    except ValueError as error:
        raise ConfigError(
            f"{path} is not a whsec_ secret ({error}): delete it and restart clerk-sync serve"
        ) from error
    return secret


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def running_server(data_dir: Path) -> DevServer | None:
    """The server of `dev-server.json`; None when that is missing, unreadable or stale."""
    try:
        found = orjson.loads((data_dir / SERVER_FILE).read_bytes())
        server = DevServer(str(found["server_url"]), str(found["store_url"]), int(found["pid"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return server if pid_alive(server.pid) else None


@contextlib.contextmanager
def announced(data_dir: Path, server: DevServer) -> Iterator[Path]:
    """`dev-server.json` written (atomically) for as long as the block runs, then removed."""
    path = data_dir / SERVER_FILE
    partial = path.with_name(f".{SERVER_FILE}.{server.pid}")
    partial.write_bytes(orjson.dumps(asdict(server), option=orjson.OPT_INDENT_2))
    os.replace(partial, path)
    try:
        yield path
    finally:
        _remove_if_ours(path, server.pid)


def _remove_if_ours(path: Path, pid: int) -> None:
    try:
        if orjson.loads(path.read_bytes()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        return


def refuse_second_server(data_dir: Path) -> None:
    """Two servers on one data directory would share one SQLite store: refuse the second."""
    other = running_server(data_dir)
    if other is not None and other.pid != os.getpid():
        raise ConfigError(
            f"clerk-sync serve is already running on {data_dir} (pid {other.pid}, "
            f"{other.server_url}): stop it, or set CLERK_SYNC_DATA_DIR to another directory"
        )


def command_name() -> str:
    """How to call this `clerk-sync` from here (`.venv/bin/clerk-sync` after `make run`)."""
    import shutil
    import sys

    script = Path(sys.executable).with_name("clerk-sync")
    if not script.exists():
        return "clerk-sync"
    if shutil.which("clerk-sync") == str(script):
        return "clerk-sync"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def banner(
    server: DevServer,
    data_dir: Path,
    secret: str | None,
    show_secret: bool,
    webhook_path: str = "/webhooks/clerk",
    console_url: str | None = None,
) -> str:
    """The start-up text for the terminal: where to send webhooks, with what, the console
    (when mounted), and what next."""
    command = command_name()
    if secret is None:
        signing = "CLERK_WEBHOOK_SIGNING_SECRET (from the environment or .env)"
    elif show_secret:
        signing = f"{secret}  (development only, kept in {data_dir / SECRET_FILE})"
    else:
        signing = f"in {data_dir / SECRET_FILE} (shown only on a terminal)"
    console = [f"  console         {console_url}"] if console_url else []
    return "\n".join(
        [
            "clerk-sync development mode: MONGODB_URL is not set, using the embedded store",
            f"  webhook URL     {server.server_url}{webhook_path}",
            f"  signing secret  {signing}",
            f"  store           {server.store_url} ({data_dir})",
            *console,
            "next, in a second terminal in this directory:",
            f"  {command} send-test user.created",
            f"  {command} events list",
            f"  {command} db find users",
            "",
        ]
    )
