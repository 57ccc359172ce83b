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
    from motor.motor_asyncio import AsyncIOMotorCollection, AsyncIOMotorDatabase

    from clerk_sync.plugins import Reconciler

    type Database = AsyncIOMotorDatabase[dict[str, Any]]
    type Collection = AsyncIOMotorCollection[dict[str, Any]]


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


def fills(existing: Mapping[str, Any] | None, filled: Mapping[str, Any]) -> bool:
    """Whether a `fill` would change the stored document: a field it names is null or absent
    there (a tombstone is never filled)."""
    if not filled:
        return False
    if existing is None:
        return True
    if existing.get("deleted") is True:
        return False
    return any(
        name not in existing or (existing[name] is None and value is not None)
        for name, value in filled.items()
    )


async def fill_missing(collection: Collection, clerk_id: str, filled: Mapping[str, Any]) -> bool:
    """Set each field of `filled` where the live document has none (null or absent), as the
    webhook handlers do for fields only some events carry; whether the document changed."""
    if not filled:
        return False
    values = {name: {"$ifNull": [f"${name}", {"$literal": v}]} for name, v in filled.items()}
    result = await collection.update_one(
        {"clerk_id": clerk_id, "deleted": {"$ne": True}}, [{"$set": values}]
    )
    return result.modified_count > 0


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
        filled = rec.fill(obj) if rec.fill is not None else {}
        kind = classify(existing, fields, updated_at)
        if kind in (None, "newer-in-db") and fills(existing, filled):
            kind = "differs" if kind is None else kind
            outcome: Outcome = "updated"
        else:
            outcome = _OUTCOME_OF[kind]
        if kind is not None and self.options.dry_run:
            db_updated = aware(existing.get("updated_at")) if existing else None
            report.differences.append(
                Difference(rec.resource, clerk_id, kind, updated_at, db_updated)
            )
        if self.options.dry_run or outcome == "unchanged":
            report.counts[outcome] += 1
            return
        upsert = kind != "newer-in-db"
        written = await self._write(rec, clerk_id, fields, filled, updated_at, upsert=upsert)
        report.counts["failed" if written is None else outcome if written else "unchanged"] += 1

    async def _write(
        self,
        rec: Reconciler,
        clerk_id: str,
        fields: Mapping[str, Any],
        filled: Mapping[str, Any],
        updated_at: datetime | None,
        *,
        upsert: bool,
    ) -> bool | None:
        """Write the object (unless only its `fill` fields are wanted), then fill them; whether
        anything changed, None when a write failed."""
        collection = self.db[rec.collection]
        try:
            applied = upsert and (
                await upsert_if_newer(collection, clerk_id, fields, updated_at) == "applied"
            )
            changed = await fill_missing(collection, clerk_id, filled)
            await self.follow_parents(rec, clerk_id, fields)
        except PyMongoError:
            return None
        # not applied: a webhook stored a newer version (or a tombstone) after we read it
        return applied or changed

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
