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

WEBHOOK_PATH = "/webhooks/clerk"


def event_body(event: str) -> bytes:
    """The bytes of a file, or of the bundled sample named by an event type."""
    from clerk_sync.testing import sample, sample_types

    path = Path(event)
    if path.is_file():
        return path.read_bytes()
    if event in sample_types():
        return sample(event)
    fail(f"{event!r} is neither a file nor a bundled sample ({', '.join(sample_types())})")


def webhook_url(url: str) -> str:
    """A bare base URL (`http://host:8000`) gets the receiver's path appended."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"--url {url!r}: expected an http:// or https:// URL")
    if parts.path in ("", "/"):
        return url.rstrip("/") + WEBHOOK_PATH
    return url


def signing_secret(given: str | None) -> str:
    """The --secret, else the first CLERK_WEBHOOK_SIGNING_SECRET (the newest during rotation)."""
    from clerk_sync.webhooks.verify import decode_secret

    if given is None:
        secrets = settings_or_exit().clerk_webhook_signing_secret
        if not secrets:
            fail("no secret: set CLERK_WEBHOOK_SIGNING_SECRET or pass --secret")
        given = secrets[0].get_secret_value()
    if not given.startswith("whsec_"):
        fail("the signing secret must start with 'whsec_'")
    try:
        decode_secret(given)
    except ValueError as error:
        fail(str(error))
    return given


@click.command("send-test")
@click.argument("event", metavar="EVENT_TYPE|FILE")
@click.option(
    "--url",
    required=True,
    help="Receiver URL; a bare base URL gets /webhooks/clerk appended.",
)
@click.option(
    "--secret",
    help="whsec_ secret to sign with. Default: the first CLERK_WEBHOOK_SIGNING_SECRET.",
)
@click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(0.1, 300))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
def send_test(event: str, url: str, secret: str | None, timeout: float, as_json: bool) -> None:
    """Post a signed test delivery of EVENT_TYPE (a bundled sample) or of FILE.

    The body is sent byte for byte, signed with a fresh svix-id and the current time, exactly as
    Svix signs a delivery. Bundled samples: user.created, session.revoked, organization.created
    and the other types of the sample story (see `clerk_sync.testing.sample_types()`).

    Exit status: 0 when the receiver answered 2xx, 1 for any other answer or no answer,
    2 for bad arguments or configuration.
    """
    import httpx

    from clerk_sync.testing import signed_headers

    body = event_body(event)
    target = webhook_url(url)
    headers = signed_headers(body, secret=signing_secret(secret))
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        fail(f"no answer from {target}: {type(error).__name__}: {error}", FAILED)
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
