"""How one Backend API object is applied: compared with its document, written as a webhook would.

Every write goes through the same order-safe `upsert_if_newer` as a webhook, so a reconcile
racing a webhook never leaves the older version behind, and tombstones stay final.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from clerk_sync.events import timestamp_from_clerk
from clerk_sync.reconcile.report import (
    Difference,
    DiffKind,
    Options,
    Outcome,
    ResourceReport,
    aware,
)
from clerk_sync.storage.projection import tombstone, upsert_if_newer

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from clerk_sync.plugins import Reconciler

    type Database = AsyncIOMotorDatabase[dict[str, Any]]


def classify(
    existing: Mapping[str, Any] | None, fields: Mapping[str, Any], updated_at: datetime | None
) -> DiffKind | None:
    """How the stored document differs from Clerk's object; None when it matches."""
    if existing is None:
        return "missing"
    if existing.get("deleted") is True:
        return "deleted-in-db"
    stored = aware(existing.get("updated_at"))
    if stored is not None and updated_at is not None and stored > updated_at:
        return "newer-in-db"
    if updated_at is not None and (stored is None or stored < updated_at):
        return "older"
    if any(aware(existing.get(name)) != value for name, value in fields.items()):
        return "differs"
    return None


_OUTCOME_OF: dict[DiffKind | None, Outcome] = {
    None: "unchanged",
    "missing": "created",
    "older": "updated",
    "differs": "updated",
    "newer-in-db": "unchanged",
    "deleted-in-db": "unchanged",
}


class Applier:
    """Applies objects for every loaded reconciler; `all` is needed to follow deletions."""

    def __init__(
        self,
        db: Database,
        options: Options,
        now: Callable[[], datetime],
        reconcilers: Iterable[Reconciler],
    ) -> None:
        self.db, self.options, self.now = db, options, now
        self.all = tuple(reconcilers)

    async def apply(
        self,
        rec: Reconciler,
        obj: dict[str, Any],
        existing: Mapping[str, Any] | None,
        report: ResourceReport,
    ) -> None:
        """Compare one Clerk object with its document and write it the way a webhook would."""
        clerk_id = obj.get("id")
        if not isinstance(clerk_id, str):
            report.counts["failed"] += 1
            return
        updated_at = timestamp_from_clerk(obj.get("updated_at"))
        since = self.options.since
        if since is not None and updated_at is not None and updated_at < since:
            report.counts["unchanged"] += 1
            return
        fields = rec.project(obj)
        kind = classify(existing, fields, updated_at)
        outcome = _OUTCOME_OF[kind]
        if kind is not None and self.options.dry_run:
            db_updated = aware(existing.get("updated_at")) if existing else None
            report.differences.append(
                Difference(rec.resource, clerk_id, kind, updated_at, db_updated)
            )
        if self.options.dry_run or outcome == "unchanged":
            report.counts[outcome] += 1
            return
        report.counts[await self._write(rec, clerk_id, fields, updated_at, outcome)] += 1

    async def _write(
        self,
        rec: Reconciler,
        clerk_id: str,
        fields: Mapping[str, Any],
        updated_at: datetime | None,
        outcome: Outcome,
    ) -> Outcome:
        try:
            applied = await upsert_if_newer(self.db[rec.collection], clerk_id, fields, updated_at)
            await self.follow_parents(rec, clerk_id, fields)
        except PyMongoError:
            return "failed"
        # "stale": a webhook stored a newer version (or a tombstone) after we read the document
        return outcome if applied == "applied" else "unchanged"

    async def follow_parents(
        self, rec: Reconciler, clerk_id: str, fields: Mapping[str, Any]
    ) -> None:
        """As the webhook handlers do: a document whose parent is deleted is deleted too."""
        for field, collection in rec.parents.items():
            parent_id = fields.get(field)
            if not isinstance(parent_id, str):
                continue
            parent = await self.db[collection].find_one({"clerk_id": parent_id, "deleted": True})
            if parent is not None:
                await tombstone(
                    self.db[rec.collection],
                    {"clerk_id": clerk_id},
                    deleted_at=parent.get("deleted_at"),
                    cleared=rec.cleared,
                )

    async def cascade(self, rec: Reconciler, clerk_id: str) -> None:
        """Like the webhook handlers: a tombstoned parent takes its children with it (a deleted
        organization or user its memberships), wherever a reconciler names it as a parent."""
        for child in self.all:
            for field, collection in child.parents.items():
                if collection != rec.collection:
                    continue
                await tombstone(
                    self.db[child.collection],
                    {field: clerk_id},
                    deleted_at=self.now(),
                    cleared=child.cleared,
                    many=True,
                )
