"""The webhook pipeline without HTTP: verify, record, dispatch, answer (DESIGN.md steps 1-7)."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bson import Binary
from bson.errors import BSONError
from pymongo.errors import OperationFailure

from clerk_sync.errors import DeliveryError, NotConfigured, PayloadTooLarge, StoreUnavailable
from clerk_sync.events import Event, NotAnEnvelope, metric_event_type, parse_envelope
from clerk_sync.plugins import Router
from clerk_sync.storage.claims import claimable
from clerk_sync.storage.redaction import REDACTED, is_secret, redact, secret_body
from clerk_sync.storage.store import TERMINAL
from clerk_sync.webhooks.answers import (
    Answer,
    DeliveryAccepted,
    DeliveryBusy,
    DeliveryFailed,
    DeliveryRejected,
    Error,
    RedactedDelivery,
    Unavailable,
    UnknownDelivery,
)
from clerk_sync.webhooks.dispatch import Delivery, Dispatcher
from clerk_sync.webhooks.outcomes import OutcomeWriter
from clerk_sync.webhooks.verify import HeaderLookup, decode_secret, parse_headers, verify

if TYPE_CHECKING:
    from odmantic import AIOEngine
    from structlog.typing import FilteringBoundLogger

    from clerk_sync.observability.metrics import Metrics
    from clerk_sync.settings import Settings
    from clerk_sync.storage.reach import Reachability
    from clerk_sync.storage.store import DeliveryLog

type Clock = Callable[[], float]
#: MongoDB error codes meaning "this document cannot be stored", as opposed to a server problem:
#: BadValue, Overflow, InvalidBSON, BSONObjectTooLarge, DollarPrefixedFieldName, EmptyFieldName,
#: DottedFieldName, and the nesting-depth limit.
_UNSTORABLE = frozenset({2, 15, 22, 10334, 52, 56, 57, 17419, 17280})


class Receiver:
    """Turns one raw delivery into an Answer. Built once per app; plain async, no Quart."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        log: FilteringBoundLogger,
        metrics: Metrics,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.router = router
        self.log = log
        self.metrics = metrics
        self.clock = clock
        self.keys = tuple(
            decode_secret(s.get_secret_value()) for s in settings.clerk_webhook_signing_secret
        )
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.events: DeliveryLog | None = None
        self.engine: AIOEngine | None = None
        self.writer: OutcomeWriter | None = None
        # the handlers' side; it reads this receiver's clock, which tests and benches may swap
        self.dispatcher = Dispatcher(settings, router, log, metrics, lambda: self.clock())
        # lease tokens: unique per process (random prefix) and per attempt (a counter)
        self._token_prefix = secrets.token_hex(8)
        self._tokens = itertools.count()

    def attach(
        self, events: DeliveryLog, engine: AIOEngine, reach: Reachability, *, group_commit: bool
    ) -> OutcomeWriter | None:
        """Use the started store; with `group_commit` (and a non-zero flush interval) return
        the writer whose `run` the caller keeps running and whose `close` it awaits."""
        self.events, self.engine = events, engine
        interval = self.settings.clerk_sync_outcome_flush_seconds
        if group_commit and interval > 0:
            self.writer = OutcomeWriter(events, interval, self.metrics, self.log)
        dispatcher = self.dispatcher
        dispatcher.events, dispatcher.engine, dispatcher.reach = events, engine, reach
        dispatcher.writer = self.writer
        return self.writer

    async def receive(self, body: bytes, headers: HeaderLookup) -> Answer:
        """Run steps 1-7 of the webhook contract; never raises for bad input."""
        started = time.perf_counter()
        delivery = Delivery(svix_id="")
        try:
            answer = await self._receive(body, headers, delivery)
        except DeliveryError as error:
            answer = Answer.of(error.status, Error(error=str(error)), error.outcome, error.headers)
        except StoreUnavailable as error:
            self.metrics.mongodb_up.set(0)
            self.log.warning("store_unavailable", svix_id=delivery.svix_id, error=str(error))
            answer = Answer.of(
                503,
                Unavailable(error="storage unavailable, retry later", svix_id=delivery.svix_id),
                "unavailable",
                {"Retry-After": "5"},
            )
        except Exception:  # a bug must still answer JSON, and Svix retries a 500
            self.log.exception("webhook_internal_error", svix_id=delivery.svix_id)
            failed = DeliveryFailed(error="internal error", svix_id=delivery.svix_id)
            answer = Answer.of(500, failed, "failed")
        self._observe(answer, delivery, time.perf_counter() - started)
        return answer

    def reject_early(self, error: DeliveryError) -> Answer:
        """Answer and count an error found before the body was read (e.g. 413)."""
        answer = Answer.of(error.status, Error(error=str(error)), error.outcome, error.headers)
        self._observe(answer, Delivery(svix_id=""), 0.0)
        return answer

    async def replay(self, svix_id: str) -> Answer:
        """Re-run a recorded delivery exactly like a redelivery of the same `svix-id` would:
        only handlers that have not succeeded run, and only if the delivery is claimable."""
        d = Delivery(svix_id=svix_id)
        if self.events is None:
            raise StoreUnavailable("storage is not started")
        try:
            stored = await self.events.get(svix_id)
            if stored is None:
                missing = UnknownDelivery(error="no such delivery", svix_id=svix_id)
                return Answer.of(404, missing, "bad_request")
            if stored.get("redacted") is True:
                return Answer.of(410, RedactedDelivery(svix_id=svix_id), "bad_request")
            payload = stored.get("payload")
            if not isinstance(payload, dict):
                return self._existing(stored, d)
            d.event_type = payload.get("type")
            return await self._accept(payload, d, self.clock(), observe_lag=False)
        except StoreUnavailable:
            down = Unavailable(error="storage unavailable", svix_id=svix_id)
            return Answer.of(503, down, "unavailable")

    async def _receive(self, body: bytes, headers: HeaderLookup, d: Delivery) -> Answer:
        if len(body) > self.settings.clerk_sync_max_body_bytes:
            raise PayloadTooLarge("body exceeds CLERK_SYNC_MAX_BODY_BYTES")
        parsed = parse_headers(headers)
        if not self.keys:
            raise NotConfigured("CLERK_WEBHOOK_SIGNING_SECRET is not set")
        now = self.clock()
        verify(body, parsed, self.keys, now)
        d.svix_id = parsed.id
        try:
            envelope = parse_envelope(body)
        except NotAnEnvelope as error:
            return await self._reject(body, d, str(error), now)
        d.event_type = envelope["type"]
        try:
            return await self._accept(envelope, d, now)
        except (BSONError, OverflowError, OperationFailure) as error:
            if isinstance(error, OperationFailure) and error.code not in _UNSTORABLE:
                raise StoreUnavailable(f"MongoDB refused the write: {error.code}") from error
            # signed JSON MongoDB cannot store (integers beyond 64 bits, nesting limits): keep
            # the raw text so nothing is lost, and tell the sender not to retry
            return await self._reject(body, d, f"payload cannot be stored as BSON: {error}", now)

    async def _reject(self, body: bytes, d: Delivery, reason: str, now: float) -> Answer:
        try:
            payload: object = body.decode("utf-8")
        except UnicodeDecodeError:
            payload = Binary(body)
        record = {"payload": payload, "type": d.event_type, "error": reason}
        if is_secret(d.event_type) or secret_body(body):
            record |= {"payload": REDACTED, "redacted": True}
        before = await self._claim(d, "rejected", now, record)
        if before is not None:
            return self._existing(before, d)
        rejected = DeliveryRejected(status="rejected", svix_id=d.svix_id, reason=reason)
        return Answer.of(202, rejected, "rejected")

    async def _accept(
        self, envelope: dict[str, Any], d: Delivery, now: float, *, observe_lag: bool = True
    ) -> Answer:
        event = Event.from_envelope(envelope, d.svix_id)
        if observe_lag and event.timestamp is not None:  # every verified arrival, duplicates too
            self.metrics.delivery_lag.observe(max(0.0, now - event.timestamp.timestamp()))
        if self.writer is not None and self.writer.holds(d.svix_id):
            # its handlers all succeeded and its outcome is queued: done, as far as Svix knows
            return Answer.of(
                200, DeliveryAccepted(status="duplicate", svix_id=d.svix_id), "duplicate"
            )
        subs = self.router.handlers_for(event.type)
        on_insert: dict[str, Any] = {
            "type": event.type,
            "payload": envelope,
            "event_timestamp": event.timestamp,
            "instance_id": event.instance_id,
        }
        if is_secret(event.type):  # the handlers still get the whole event
            on_insert |= {"payload": redact(envelope), "redacted": True}
        if not subs:
            before = await self._claim(d, "ignored", now, on_insert)
            if before is not None:
                return self._existing(before, d)
            return Answer.of(200, DeliveryAccepted(status="ignored", svix_id=d.svix_id), "ignored")
        token = f"{self._token_prefix}{next(self._tokens):x}"
        before = await self._claim(d, "processing", now, on_insert, token)
        done: set[str] = set()
        if before is not None:
            if not self._claimed(before, now):
                return self._existing(before, d)
            done = {k for k, v in (before.get("handlers") or {}).items() if v.get("status") == "ok"}
        pending = [s for s in subs if s.key not in done]
        lease_end = now + self.lease.total_seconds()
        return await self.dispatcher.dispatch(event, pending, d, token, lease_end)

    async def _claim(
        self,
        d: Delivery,
        target: str,
        now: float,
        on_insert: dict[str, Any],
        token: str | None = None,
    ) -> dict[str, Any] | None:
        if self.events is None:
            raise StoreUnavailable("storage is not started")
        at = datetime.fromtimestamp(now, tz=UTC)
        return await self.events.claim(
            d.svix_id,
            target=target,
            token=token or "",
            now=at,
            lease_until=at + self.lease if target == "processing" else None,
            on_insert=on_insert,
        )

    @staticmethod
    def _claimed(before: dict[str, Any], now: float) -> bool:
        """Whether the claim took `before` over: the store's own rule, at this clock reading."""
        return claimable(before, datetime.fromtimestamp(now, tz=UTC))

    def _existing(self, before: dict[str, Any], d: Delivery) -> Answer:
        if before.get("status") in TERMINAL:
            return Answer.of(
                200, DeliveryAccepted(status="duplicate", svix_id=d.svix_id), "duplicate"
            )
        return Answer.of(
            409,
            DeliveryBusy(error="delivery is being processed by another request", svix_id=d.svix_id),
            "in_progress",
        )

    def _observe(self, answer: Answer, d: Delivery, elapsed: float) -> None:
        count, duration = self.metrics.delivery(metric_event_type(d.event_type), answer.outcome)
        count.inc()
        duration.observe(elapsed)
        self.log.info(
            "webhook",
            svix_id=d.svix_id or None,
            event_type=d.event_type,
            outcome=answer.outcome,
            status=answer.status,
            duration_ms=round(elapsed * 1000, 2),
            handlers=d.handlers or None,
        )
