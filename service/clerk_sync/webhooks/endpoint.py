"""`POST /webhooks/clerk` (CLERK_SYNC_WEBHOOK_PATH) as a plain ASGI endpoint in front of Quart.

The webhook is the hot path and needs nothing from a web framework: refuse what can be refused
before the body (`Intake`: size, Svix headers, secret, timestamp, bodies being read), read at
most the configured number of bytes within the body deadline, hand them and the headers to the
`Receiver`, send its small JSON answer. Doing that here refuses an oversize body before anything
is buffered (Quart queues every chunk of a request without bound) and skips Quart's request and
response objects on every delivery. A request refused before its body was read whole is
answered with `Connection: close`: the rest of its body is never read. Every
other request, other methods on the webhook path included, goes to Quart. Mounted under a prefix
(Starlette's `Mount`, an ASGI `root_path`), the path is matched below that prefix, as Quart does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from clerk_sync.errors import DeliveryError
from clerk_sync.webhooks.answers import Answer, Error
from clerk_sync.webhooks.intake import Intake

if TYPE_CHECKING:
    from clerk_sync.webhooks.pipeline import Receiver

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]  # Quart types its own scopes

WEBHOOK_PATH = "/webhooks/clerk"
_JSON = (b"content-type", b"application/json")
_NOT_ALLOWED = Answer.of(
    405, Error(error="only POST is allowed here"), "bad_request", {"Allow": "POST"}
)


class WebhookEndpoint:
    """Wrap `app`: POSTs to the webhook path are answered here, everything else passes on."""

    def __init__(
        self, app: ASGIApp, receiver: Receiver, limit: int, path: str = WEBHOOK_PATH
    ) -> None:
        self.app, self.receiver, self.limit, self.path = app, receiver, limit, path
        self.intake = Intake(receiver, limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _below_root(scope) != self.path:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _respond(send, _NOT_ALLOWED)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        try:
            body = await self.intake.read(headers, receive)
        except DeliveryError as error:
            await _respond(send, self.receiver.reject_early(error), close=True)
            return
        await _respond(send, await self.receiver.receive(body, headers))


def _below_root(scope: Scope) -> str | None:
    """The request path below the scope's `root_path` (None when it lies outside of it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root:
        return path
    return path.removeprefix(root) if path.startswith(root) and path != root else None


async def _respond(send: Send, answer: Answer, *, close: bool = False) -> None:
    body = orjson.dumps(answer.body)
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
