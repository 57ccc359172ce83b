"""The console's pages: the Quart blueprint mounted at `/console` (an HTTP module).

Each view reads through the plain functions of `deliveries`, `detail` and `overview`; access,
CSRF and the security headers are `access`'s. Replay is `replay_one`, as `clerk-sync events
replay` runs it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError
from quart import Blueprint, Response, g, redirect, render_template, request, url_for

from clerk_sync.auth.cursor import cursor_key
from clerk_sync.console import access
from clerk_sync.console.chart import chart
from clerk_sync.console.deliveries import STATUSES, Filters, list_page
from clerk_sync.console.detail import object_id, shaped, touched
from clerk_sync.console.overview import CHARTS, failing_handlers, series, store_health
from clerk_sync.console.shown import age, outcomes
from clerk_sync.errors import ApiError
from clerk_sync.webhooks.replaying import replay_one

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from clerk_sync.auth.tokens import TokenVerifier
    from clerk_sync.runtime import Runtime

    type Database = AsyncIOMotorDatabase[dict[str, Any]]

NAME = "console"
TEMPLATES = "clerk_sync_console"
#: what the page after a replay says, by `replay_one`'s result
REPLAYED = {
    "processed": "Replayed: every handler succeeded, the delivery is processed.",
    "failed": "Replayed: a handler failed again; its error is below.",
    "skipped": "Nothing to replay: the delivery is done, ignored or held by another attempt.",
    "refused": "Not replayed: the delivery is stored redacted; only Svix can resend it.",
}


class Console:
    """The state the views share: the runtime, the token verifier and the keys."""

    def __init__(self, runtime: Runtime, verifier: TokenVerifier | None) -> None:
        self.runtime = runtime
        self.verifier = verifier
        self.cursor_key = cursor_key(runtime.settings)
        self.csrf_key = access.csrf_key(self.cursor_key)

    def database(self) -> Database:
        if self.runtime.store is None:
            raise ApiError("storage_unavailable", "storage is not started", status=503)
        return self.runtime.store.db

    async def page(self, template: str, code: int = 200, **context: Any) -> Response:
        caller: access.Caller | None = g.get("console_caller")
        body = await render_template(
            f"{TEMPLATES}/{template}",
            caller=caller,
            csrf_field=access.CSRF_FIELD,
            csrf_token=access.csrf_token(self.csrf_key, caller) if caller else "",
            grafana_url=self.runtime.settings.clerk_sync_grafana_url,
            **context,
        )
        return Response(body, status=code, content_type="text/html; charset=utf-8")

    async def refused(self, error: ApiError) -> Response:
        status = access.status_of(error)
        self.runtime.log.info("console_refused", reason=error.reason, status=status)
        answer = await self.page("refused.html", status, message=str(error), status=status)
        if status == 401:
            answer.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return answer


def console_blueprint(runtime: Runtime, verifier: TokenVerifier | None) -> Blueprint:
    """The console at `/console`, its templates and its stylesheet."""
    console = Console(runtime, verifier)
    pages = Blueprint(
        NAME, __name__, url_prefix="/console", template_folder="templates", static_folder="static"
    )

    @pages.before_request
    async def admit() -> Response | None:
        try:
            g.console_caller = await access.admit(runtime.settings, verifier, console.database())
        except ApiError as error:
            return await console.refused(error)
        return None

    pages.after_request(access.secured)
    pages.register_error_handler(ApiError, console.refused)

    @pages.errorhandler(PyMongoError)
    async def storage_error(error: PyMongoError) -> Response:
        runtime.log.warning("console_storage_error", error=type(error).__name__)
        down = ApiError("storage_unavailable", "MongoDB did not answer; try again", status=503)
        return await console.refused(down)

    _register_overview(pages, console)
    _register_deliveries(pages, console)
    return pages


def _register_overview(pages: Blueprint, console: Console) -> None:
    @pages.get("")
    async def overview() -> Response:
        runtime, now = console.runtime, datetime.now(UTC)
        events = console.database().webhook_events
        charts = [chart(await series(events, now, *spec)) for spec in CHARTS]
        return await console.page(
            "overview.html",
            charts=charts,
            failing=await failing_handlers(events, now - timedelta(days=1)),
            health=await store_health(runtime.store, runtime.indexes_ready, now),
            plugins=runtime.describe_plugins(),
        )


def _register_deliveries(pages: Blueprint, console: Console) -> None:
    @pages.get("/deliveries")
    async def deliveries() -> Response:
        filters = Filters.parse(request.args, console.cursor_key)
        page = await list_page(console.database().webhook_events, filters, console.cursor_key)
        now = datetime.now(UTC)
        rows = [
            {
                "svix_id": row["_id"],
                "status": row.get("status") or "-",
                "type": row.get("type") or "-",
                "age": age(row.get("received_at"), now),
                "attempts": row.get("attempts") or 0,
                "handlers": outcomes(row),
                "redacted": row.get("redacted") is True,
            }
            for row in page.rows
        ]
        after = page.next_cursor
        wanted: dict[str, Any] = {**filters.as_args(), "after": after}
        older = url_for(".deliveries", **wanted) if after else None
        return await console.page(
            "deliveries.html", rows=rows, filters=filters, statuses=STATUSES, older=older
        )

    @pages.get("/deliveries/<svix_id>")
    async def delivery(svix_id: str) -> Response:
        db = console.database()
        document = await db.webhook_events.find_one({"_id": svix_id})
        if document is None:
            raise ApiError("no_such_delivery", f"no delivery {svix_id!r} is recorded", status=404)
        found = object_id(document)
        models = console.runtime.models
        return await console.page(
            "delivery.html",
            d=shaped(document, datetime.now(UTC)),
            touched=await touched(db, models, found) if found else [],
            replayed=REPLAYED.get(request.args.get("replayed", "")),
        )

    @pages.post("/deliveries/<svix_id>/replay")
    async def replay(svix_id: str) -> Response:
        form = await request.form
        caller: access.Caller = g.console_caller
        if not access.csrf_valid(console.csrf_key, caller, form.get(access.CSRF_FIELD)):
            refused = ApiError(
                "csrf_invalid", "the form's CSRF token is missing or wrong", status=403
            )
            return await console.refused(refused)
        runtime = console.runtime
        assert runtime.store is not None  # console.database() answered in admit
        result = await replay_one(runtime.receiver, runtime.store.events, svix_id)
        if runtime.writer is not None:
            await runtime.writer.flush()  # the page after shows the outcome, not the queue
        runtime.log.info("console_replay", svix_id=svix_id, result=result["result"], by=caller.who)
        target = url_for(".delivery", svix_id=svix_id, replayed=result["result"])
        return redirect(target, 303)  # type: ignore[return-value]
