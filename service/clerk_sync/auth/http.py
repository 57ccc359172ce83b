"""HTTP helpers shared by the app and the read API: JSON answers, and what a mounted API needs
from the running service (its settings, logger and store), without depending on `runtime`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import orjson
from quart import Response

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.settings import Settings
    from clerk_sync.storage.store import Store


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


class Running(Protocol):
    """The parts of `clerk_sync.runtime.Runtime` an HTTP module reads."""

    @property
    def settings(self) -> Settings: ...

    @property
    def log(self) -> FilteringBoundLogger: ...

    @property
    def store(self) -> Store | None: ...
