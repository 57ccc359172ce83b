"""Per-resource progress in `reconcile_state`, so an interrupted run resumes where it stopped.

A dry run keeps no checkpoint: it lists from the start and writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from clerk_sync.reconcile.report import aware

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection, AsyncIOMotorDatabase

    from clerk_sync.reconcile.report import Options, ResourceReport

    type Database = AsyncIOMotorDatabase[dict[str, Any]]
    type Collection = AsyncIOMotorCollection[dict[str, Any]]

STATE_COLLECTION = "reconcile_state"
#: the id of the last run that saw a document; what a complete listing did not mark is a candidate
MARKER = "last_reconciled_run"
type Status = Literal["listing", "listed", "done"]


@dataclass
class Checkpoint:
    """Where one resource's run stands: its id, the next offset, and whether listing is over."""

    resource: str
    run_id: str
    now: Callable[[], datetime]
    state: Collection | None = None  # None for a dry run
    offset: int = 0
    status: Status = "listing"

    @classmethod
    async def open(
        cls,
        db: Database,
        resource: str,
        options: Options,
        now: Callable[[], datetime],
        report: ResourceReport,
    ) -> Checkpoint:
        """Resume an unfinished run of the same `--since` (counts included), else start one."""
        if options.dry_run:
            return cls(resource, uuid.uuid4().hex, now)
        state = db[STATE_COLLECTION]
        found = await state.find_one({"_id": resource})
        if found is not None and _resumable(found, options):
            checkpoint = cls(resource, found["run_id"], now, state, int(found.get("offset", 0)))
            checkpoint.status = found["status"]
            report.resumed_from = checkpoint.offset
            _restore_counts(report, found.get("counts"))
            return checkpoint
        checkpoint = cls(resource, uuid.uuid4().hex, now, state)
        await checkpoint._start(options.since, report.counts)
        return checkpoint

    async def _start(self, since: datetime | None, counts: Mapping[str, int]) -> None:
        assert self.state is not None
        await self.state.replace_one(
            {"_id": self.resource},
            {
                "resource": self.resource,
                "run_id": self.run_id,
                "status": self.status,
                "offset": 0,
                "since": since,
                "started_at": self.now(),
                "updated_at": self.now(),
                "counts": counts,
            },
            upsert=True,
        )

    async def advance(self, offset: int, done: bool, counts: Mapping[str, int]) -> None:
        """Record a listed page; `done` when it was the last one."""
        self.offset, self.status = offset, "listed" if done else "listing"
        if self.state is None:
            return
        await self.state.update_one(
            {"_id": self.resource},
            {
                "$set": {
                    "offset": offset,
                    "status": self.status,
                    "counts": counts,
                    "updated_at": self.now(),
                }
            },
        )

    async def finish(self, counts: Mapping[str, int]) -> None:
        self.status = "done"
        if self.state is None:
            return
        await self.state.update_one(
            {"_id": self.resource},
            {"$set": {"status": "done", "counts": counts, "finished_at": self.now()}},
        )


def _resumable(found: Mapping[str, Any], options: Options) -> bool:
    return (
        found.get("status") in ("listing", "listed")
        and aware(found.get("since")) == options.since
        and not options.restart
    )


def _restore_counts(report: ResourceReport, counts: object) -> None:
    if not isinstance(counts, dict):
        return
    for name, value in counts.items():
        if name in report.counts and isinstance(value, int):
            report.counts[name] = value
