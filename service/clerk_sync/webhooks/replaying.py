"""Replaying one recorded delivery, as `clerk-sync events replay` and the console both do.

The replay itself is `Receiver.replay` (a redelivery of the same svix-id: only handlers that have
not succeeded run, and only while the delivery is claimable); here is what a caller makes of its
answer: `processed`, `skipped`, `refused` (stored redacted) or `failed` with the handlers' errors.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clerk_sync.storage.store import DeliveryLog
    from clerk_sync.webhooks.answers import Answer
    from clerk_sync.webhooks.pipeline import Receiver

#: the statuses a replay is for (`processing` only once its lease has expired)
REPLAYABLE = ("failed", "processing")
#: what `Receiver.replay` answers for a delivery stored redacted
REFUSED_STATUS = 410


def handler_errors(document: dict[str, Any]) -> list[str]:
    """One line per handler of a delivery record that did not succeed."""
    handlers = document.get("handlers") or {}
    return [
        f"{key}: {outcome.get('status')}: {outcome.get('error') or '-'}"
        for key, outcome in handlers.items()
        if isinstance(outcome, dict) and outcome.get("status") != "ok"
    ]


def classify(answer: Answer) -> str:
    """`processed`; `skipped` when there was nothing to do (done, ignored, busy); `refused` for a
    delivery stored redacted (only Svix can resend it); else `failed`."""
    if answer.status == REFUSED_STATUS:
        return "refused"
    if answer.outcome == "processed":
        return "processed"
    if answer.outcome in ("duplicate", "ignored", "in_progress"):
        return "skipped"
    return "failed"


def replayable(document: dict[str, Any], now: datetime) -> bool:
    """Whether a stored delivery is one to replay: `failed`, or `processing` with an expired
    lease (an attempt that crashed before writing its outcome), and not stored redacted."""
    if document.get("redacted") is True:
        return False
    if document.get("status") == "failed":
        return True
    lease = document.get("lease_until")
    return document.get("status") == "processing" and isinstance(lease, datetime) and lease < now


async def replay_one(receiver: Receiver, events: DeliveryLog, svix_id: str) -> dict[str, Any]:
    """Replay `svix_id` once: `{svix_id, result, status, answer}`, and `errors` (one line per
    handler that did not succeed) when handlers failed."""
    answer = await receiver.replay(svix_id)
    result: dict[str, Any] = {"svix_id": svix_id, "result": classify(answer)}
    result["status"] = answer.status
    result["answer"] = answer.body.get("status") or answer.body.get("error")
    if result["result"] == "failed" and answer.status == 500:
        result["errors"] = handler_errors(await events.get(svix_id) or {})
    return result
