"""The console's overview: deliveries per minute by outcome (from one aggregation per chart),
the handlers failing now, and the store's health. Plain async functions; no Quart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from clerk_sync.console.deliveries import EPOCH, STATUSES
from clerk_sync.console.shown import stamp

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

    from clerk_sync.storage.store import Store

    type Collection = AsyncIOMotorCollection[dict[str, Any]]

#: the two charts: (title, span, minutes per bar)
CHARTS = (("Last hour", timedelta(hours=1), 1), ("Last day", timedelta(days=1), 15))
FAILING_LISTED = 20


@dataclass(frozen=True, slots=True)
class Series:
    """Deliveries per minute by outcome in equal bars from `start`, oldest first."""

    title: str
    start: datetime
    minutes: int
    bars: list[dict[str, float]]


def _floor(moment: datetime, minutes: int) -> datetime:
    step = timedelta(minutes=minutes)
    return EPOCH + ((moment - EPOCH) // step) * step


async def series(
    events: Collection, now: datetime, title: str, span: timedelta, minutes: int
) -> Series:
    """Counts by outcome per bar of `minutes` over `span` up to `now`, as rates per minute."""
    count = int(span / timedelta(minutes=minutes))
    start = _floor(now, minutes) - timedelta(minutes=minutes) * (count - 1)
    bucket = {"$dateTrunc": {"date": "$received_at", "unit": "minute", "binSize": minutes}}
    pipeline: list[dict[str, Any]] = [
        {"$match": {"received_at": {"$gte": start}}},
        {"$group": {"_id": {"at": bucket, "status": "$status"}, "n": {"$sum": 1}}},
    ]
    bars: list[dict[str, float]] = [{} for _ in range(count)]
    async for row in events.aggregate(pipeline):
        at = row["_id"]["at"]
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        index = int((at - start) / timedelta(minutes=minutes))
        if 0 <= index < count:
            status = str(row["_id"].get("status"))
            bars[index][status] = bars[index].get(status, 0) + row["n"] / minutes
    return Series(title, start, minutes, bars)


async def failing_handlers(events: Collection, since: datetime) -> list[dict[str, Any]]:
    """Handlers with a failed outcome on a delivery still `failed` since `since`: how many, the
    latest error and when, most recent first."""
    pipeline: list[dict[str, Any]] = [
        {"$match": {"status": "failed", "received_at": {"$gte": since}}},
        {"$project": {"received_at": 1, "handler": {"$objectToArray": "$handlers"}}},
        {"$unwind": "$handler"},
        {"$match": {"handler.v.status": {"$ne": "ok"}}},
        {"$sort": {"received_at": -1}},
        {
            "$group": {
                "_id": "$handler.k",
                "deliveries": {"$sum": 1},
                "error": {"$first": "$handler.v.error"},
                "last": {"$first": "$received_at"},
                "svix_id": {"$first": "$_id"},
            }
        },
        {"$sort": {"last": -1}},
        {"$limit": FAILING_LISTED},
    ]
    rows = [row async for row in events.aggregate(pipeline)]
    return [{**row, "key": row["_id"], "last": stamp(row["last"])} for row in rows]


async def store_health(store: Store | None, indexes_ready: bool, now: datetime) -> dict[str, Any]:
    """Whether MongoDB answers, whether indexes are made, and deliveries by status (each count
    from the status index); stale `processing` ones are those whose lease has expired."""
    if store is None or not await store.ping(within=1.0):
        return {"up": False, "indexes_ready": indexes_ready, "counts": {}, "stale": 0}
    events = store.events.collection
    counts = {s: await events.count_documents({"status": s}) for s in STATUSES}
    stale = await events.count_documents({"status": "processing", "lease_until": {"$lt": now}})
    return {"up": True, "indexes_ready": indexes_ready, "counts": counts, "stale": stale}
