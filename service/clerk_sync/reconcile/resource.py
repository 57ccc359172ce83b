"""One resource's run: list it page by page, apply every object for each of its reconcilers,
then re-check and tombstone what a complete listing did not contain (only re-check for the
resources `listing.KEPT` names)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from clerk_sync.reconcile.checkpoint import MARKER, Checkpoint
from clerk_sync.reconcile.client import ReconcileError
from clerk_sync.reconcile.listing import KEPT, SETTLED
from clerk_sync.reconcile.report import Difference, ResourceReport, aware
from clerk_sync.storage.projection import tombstone

if TYPE_CHECKING:
    from clerk_sync.plugins import Reconciler
    from clerk_sync.reconcile.apply import Applier
    from clerk_sync.reconcile.listing import Listing

_LIVE = {"deleted": {"$ne": True}}
#: below this many candidates the tombstone fraction is not checked
_FEW = 20


class ResourceRun:
    """Reconcile `resource` for the reconcilers that declared it."""

    def __init__(
        self,
        applier: Applier,
        listing: Listing,
        resource: str,
        reconcilers: Sequence[Reconciler],
        say: Callable[[str], None],
    ) -> None:
        self.applier, self.listing, self.resource = applier, listing, resource
        self.reconcilers, self.say = tuple(reconcilers), say
        self.options, self.db = applier.options, applier.db

    async def run(self) -> ResourceReport:
        report = ResourceReport(self.resource)
        if not self.reconcilers:
            report.error = f"no loaded plugin reconciles {self.resource}"
            return report
        checkpoint = await Checkpoint.open(
            self.db, self.resource, self.options, self.applier.now, report
        )
        if report.resumed_from is not None:
            self.say(
                f"{self.resource}: resuming run {checkpoint.run_id[:8]} at offset "
                f"{checkpoint.offset}"
            )
        seen: set[str] = set()
        try:
            while checkpoint.status == "listing":
                await self._page(checkpoint, seen, report)
            report.complete = True
            await self._tombstone_all(checkpoint.run_id, seen, report)
        except (ReconcileError, PyMongoError) as error:
            report.error = str(error)
            self.say(f"{self.resource}: stopped: {report.error}")
            return report
        await checkpoint.finish(report.counts)
        return report

    async def _page(self, checkpoint: Checkpoint, seen: set[str], report: ResourceReport) -> None:
        """List one page, apply it for every reconciler, mark what it saw, move the checkpoint."""
        limit = self.options.page_size
        listed = await self.listing.page(checkpoint.offset, limit)
        items, total = listed.objects, listed.total
        report.pages += 1
        report.listed += len(items)
        ids = [item["id"] for item in items if isinstance(item.get("id"), str)]
        for rec in self.reconcilers:
            await self._apply_all(rec, items, report)
        for resource, obj in listed.embedded:  # counted with the object that embeds them
            for rec in self.applier.all:
                if rec.resource == resource:
                    await self._apply_all(rec, [obj], report)
        offset = checkpoint.offset + listed.consumed
        done = listed.consumed < limit or (total is not None and offset >= total)
        seen.update(ids)
        if not self.options.dry_run:
            for rec in self.reconcilers:
                marked = {"$set": {MARKER: checkpoint.run_id}}
                await self.db[rec.collection].update_many({"clerk_id": {"$in": ids}}, marked)
        await checkpoint.advance(offset, done, report.counts)
        of = f"/{total}" if total is not None else ""
        self.say(f"{self.resource}: page {report.pages}, {offset}{of} objects")

    async def _apply_all(
        self, rec: Reconciler, items: list[dict[str, Any]], report: ResourceReport
    ) -> None:
        ids = [item["id"] for item in items if isinstance(item.get("id"), str)]
        found = self.db[rec.collection].find({"clerk_id": {"$in": ids}})
        existing = {doc["clerk_id"]: doc async for doc in found}
        for item in items:
            await self.applier.apply(rec, item, existing.get(item.get("id")), report)

    async def _tombstone_all(self, run_id: str, seen: set[str], report: ResourceReport) -> None:
        if self.options.since is not None:
            report.tombstoning = "skipped"  # a --since run does not compare every object
            return
        for rec in self.reconcilers:
            await self._tombstone_gone(rec, run_id, seen, report)
        report.tombstoning = "kept" if self.resource in KEPT else "done"

    async def _tombstone_gone(
        self, rec: Reconciler, run_id: str, seen: set[str], report: ResourceReport
    ) -> None:
        """Live documents the complete listing did not contain: re-check each, then tombstone."""
        candidates = await self._candidates(rec, run_id, seen)
        live_count = await self.db[rec.collection].count_documents(_LIVE)
        fraction = self.options.max_tombstone_fraction
        refuse = len(candidates) > _FEW and len(candidates) > fraction * max(live_count, 1)
        if refuse and self.resource not in KEPT:
            report.tombstoning = "refused"
            raise ReconcileError(
                f"{len(candidates)} of {live_count} live {self.resource} are absent from Clerk: "
                "refusing to tombstone (wrong CLERK_SECRET_KEY instance?)"
            )
        for doc in candidates:
            if isinstance(doc.get("clerk_id"), str):
                await self._recheck(rec, doc, run_id, report)

    async def _candidates(
        self, rec: Reconciler, run_id: str, seen: set[str]
    ) -> list[dict[str, Any]]:
        collection = self.db[rec.collection]
        query: dict[str, Any] = dict(_LIVE)
        if self.resource in SETTLED:
            query["status"] = {"$nin": list(SETTLED[self.resource])}
        if self.options.dry_run:
            return [doc async for doc in collection.find(query) if doc.get("clerk_id") not in seen]
        return [doc async for doc in collection.find({**query, MARKER: {"$ne": run_id}})]

    async def _recheck(
        self, rec: Reconciler, doc: dict[str, Any], run_id: str, report: ResourceReport
    ) -> None:
        """Ask Clerk for one candidate: apply it when it exists, else tombstone it."""
        clerk_id: str = doc["clerk_id"]
        collection = self.db[rec.collection]
        current = await self.listing.current(doc)
        if current is not None:  # the listing missed it (pages shifted) or it is new
            await self.applier.apply(rec, current, doc, report)
            if not self.options.dry_run:
                await collection.update_one({"clerk_id": clerk_id}, {"$set": {MARKER: run_id}})
            return
        if self.resource in KEPT:  # not listed, not found: left as it is
            report.counts["unchanged"] += 1
            return
        if self.options.dry_run:
            db_updated = aware(doc.get("updated_at"))
            report.differences.append(Difference(self.resource, clerk_id, "gone", None, db_updated))
            report.counts["tombstoned"] += 1
            return
        changed = await tombstone(
            collection,
            {"clerk_id": clerk_id, **_LIVE, MARKER: {"$ne": run_id}},
            deleted_at=self.applier.now(),
            cleared=rec.cleared,
        )
        if changed:
            report.counts["tombstoned"] += 1
            await self.applier.cascade(rec, clerk_id)
