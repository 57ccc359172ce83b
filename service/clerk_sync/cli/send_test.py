"""`clerk-sync send-test`: sign a sample event as Svix would and post it to a receiver."""

from __future__ import annotations

import sys
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from clerk_sync.cli.support import FAILED, OK, echo_json, fail, settings_or_exit

if TYPE_CHECKING:
    import httpx

    from clerk_sync.settings import Settings

WEBHOOK_PATH = "/webhooks/clerk"
DEFAULT_URL = "http://127.0.0.1:8000"


def event_body(event: str) -> bytes:
    """The bytes of a file, or of the bundled sample named by an event type."""
    from clerk_sync.testing import sample, sample_types

    path = Path(event)
    if path.is_file():
        return path.read_bytes()
    if event in sample_types():
        return sample(event)
    fail(f"{event!r} is neither a file nor a bundled sample ({', '.join(sample_types())})")


def webhook_url(url: str, path: str = WEBHOOK_PATH) -> str:
    """A bare base URL (`http://host:8000`) gets the receiver's path appended."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"--url {url!r}: expected an http:// or https:// URL")
    if parts.path in ("", "/"):
        return url.rstrip("/") + path
    return url


def default_url(settings: Settings) -> str:
    """The `clerk-sync serve` running on this data directory, else http://127.0.0.1:8000."""
    from clerk_sync.cli.devmode import running_server

    server = running_server(settings.clerk_sync_data_dir)
    return server.server_url if server is not None else DEFAULT_URL


def signing_secret(given: str | None, settings: Settings | None = None) -> str:
    """--secret, else the first CLERK_WEBHOOK_SIGNING_SECRET (the newest during rotation),
    else the development secret `clerk-sync serve` made in CLERK_SYNC_DATA_DIR."""
    from clerk_sync.webhooks.verify import decode_secret

    if given is None:
        given = _configured_secret(settings or settings_or_exit())
    if not given.startswith("whsec_"):
        fail("the signing secret must start with 'whsec_'")
    try:
        decode_secret(given)
    except ValueError as error:
        fail(str(error))
    return given


def _configured_secret(settings: Settings) -> str:
    from clerk_sync.cli.devmode import read_dev_secret
    from clerk_sync.errors import ConfigError

    if settings.clerk_webhook_signing_secret:
        return settings.clerk_webhook_signing_secret[0].get_secret_value()
    try:
        development = read_dev_secret(settings.clerk_sync_data_dir)
    except ConfigError as error:
        fail(str(error))
    if development is None:
        fail(
            "no secret: set CLERK_WEBHOOK_SIGNING_SECRET, pass --secret, or start "
            "clerk-sync serve without MONGODB_URL (it makes a development secret)"
        )
    return development


@click.command("send-test")
@click.argument("event", metavar="EVENT_TYPE|FILE")
@click.option(
    "--url",
    help="Receiver URL; a bare base URL gets CLERK_SYNC_WEBHOOK_PATH (/webhooks/clerk) "
    "appended. Default: the "
    "clerk-sync serve running on CLERK_SYNC_DATA_DIR, else http://127.0.0.1:8000.",
)
@click.option(
    "--secret",
    help="whsec_ secret to sign with. Default: the first CLERK_WEBHOOK_SIGNING_SECRET, else "
    "the development secret in CLERK_SYNC_DATA_DIR/dev-signing-secret.",
)
@click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(0.1, 300))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
def send_test(
    event: str, url: str | None, secret: str | None, timeout: float, as_json: bool
) -> None:
    """Post a signed test delivery of EVENT_TYPE (a bundled sample) or of FILE.

    The body is sent byte for byte, signed with a fresh svix-id and the current time, exactly as
    Svix signs a delivery. Bundled samples: user.created, session.revoked, organization.created
    and the other types of the sample story (see `clerk_sync.testing.sample_types()`). A FILE
    holds one Clerk webhook event as JSON: {"type": ..., "object": "event", "data": {...}, ...}.

    Exit status: 0 when the receiver answered 2xx, 1 for any other answer or no answer,
    2 for bad arguments or configuration.
    """
    import httpx

    from clerk_sync.testing import signed_headers

    body = event_body(event)
    settings = settings_or_exit() if url is None or secret is None else None
    hint = " (is clerk-sync serve running? `make run` starts it)" if url is None else ""
    if url is None and settings is not None:
        url = default_url(settings)
    path = settings.clerk_sync_webhook_path if settings is not None else WEBHOOK_PATH
    target = webhook_url(url or DEFAULT_URL, path)
    headers = signed_headers(body, secret=signing_secret(secret, settings))
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        fail(f"no answer from {target}: {type(error).__name__}: {error}{hint}", FAILED)
    answer = _answer_body(response)
    if as_json:
        echo_json({"status": response.status_code, "svix_id": headers["svix-id"], "body": answer})
    else:
        phrase = response.reason_phrase or _phrase(response.status_code)
        click.echo(f"{response.status_code} {phrase} svix-id={headers['svix-id']}")
        click.echo(response.text.strip())
    sys.exit(OK if response.is_success else FAILED)


def _answer_body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
