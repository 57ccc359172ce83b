"""What a resource's run lists: pages of Backend API objects, and the re-check of one document.

Most resources are one Backend API listing (`ClerkClient.page`). `subscriptions` is not: Clerk
lists no subscriptions, so its "listing" is the payers seen in the subscription items already
in MongoDB (the `subscription_items` resource runs first), and each page asks Clerk for those
payers' subscriptions; the items embedded in a subscription are applied too, with its id.

Absence from a complete listing means deletion only where Clerk deletes: `KEPT` resources are
re-checked like the others, but never tombstoned (docs/reconcile.md, "Tombstones"); documents
in a `SETTLED` state are not even re-checked, as Clerk never changes them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from clerk_sync.reconcile import billing

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorDatabase

    from clerk_sync.plugins import Reconciler
    from clerk_sync.reconcile.client import ClerkClient

    type Database = AsyncIOMotorDatabase[dict[str, Any]]

#: Clerk never deletes these (invitations are revoked, billing objects end, plans are archived
#: with their items ended), or the listing leaves some out (revoked invitations): what a
#: listing lacks is re-checked and applied when found, never tombstoned.
KEPT = frozenset({"invitations", "plans", "subscription_items", "subscriptions"})
#: stored states Clerk never leaves: such documents are not re-checked when unlisted
SETTLED: dict[str, tuple[str, ...]] = {
    "invitations": ("revoked",),
    "subscription_items": ("ended", "abandoned"),
    "subscriptions": ("ended", "abandoned"),
}
#: objects embedded in a listed object: (resource, list field) applied with its reconcilers
EMBEDDED = "subscription_items"


@dataclass
class Listed:
    """One page: its objects, how far it moved the offset, the listing's total when known, and
    objects embedded in them (resource, object) to apply with that resource's reconcilers."""

    objects: list[dict[str, Any]]
    consumed: int
    total: int | None = None
    embedded: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Listing(Protocol):
    async def page(self, offset: int, limit: int) -> Listed: ...

    async def current(self, doc: Mapping[str, Any]) -> dict[str, Any] | None: ...


class ClientListing:
    """A resource Clerk lists itself."""

    def __init__(self, client: ClerkClient, resource: str) -> None:
        self.client, self.resource = client, resource

    async def page(self, offset: int, limit: int) -> Listed:
        items, total = await self.client.page(self.resource, offset=offset, limit=limit)
        return Listed(items, len(items), total)

    async def current(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        return await self.client.current(self.resource, doc)


class PayerListing:
    """`subscriptions`: the subscription of each payer of the stored subscription items, by
    `payer_id`; a payer without a subscription (404) yields none."""

    def __init__(self, client: ClerkClient, db: Database, collections: Iterable[str]) -> None:
        self.client, self.db = client, db
        self.collections = sorted(set(collections))

    async def page(self, offset: int, limit: int) -> Listed:
        payers, total = await self._payers(offset, limit)
        listed = Listed([], len(payers), total)
        for payer in payers:
            found = await billing.subscription(self.client, payer)
            if found is None:
                continue
            listed.objects.append(found)
            listed.embedded.extend((EMBEDDED, item) for item in found[EMBEDDED])
        return listed

    async def _payers(self, offset: int, limit: int) -> tuple[list[billing.Payer], int]:
        """One page of the distinct payers (sorted by `payer_id`) and how many there are."""
        if not self.collections:
            return [], 0
        # with several item reconcilers, the first collection names the payers
        seen = self.db[self.collections[0]].aggregate(
            [
                {"$match": {"deleted": {"$ne": True}, "payer_id": {"$type": "string"}}},
                {
                    "$group": {
                        "_id": "$payer_id",
                        "user_id": {"$max": "$user_id"},
                        "organization_id": {"$max": "$organization_id"},
                    }
                },
                {"$sort": {"_id": 1}},
                {
                    "$facet": {
                        "total": [{"$count": "n"}],
                        "page": [{"$skip": offset}, {"$limit": limit}],
                    }
                },
            ]
        )
        (result,) = await seen.to_list(1)
        total = result["total"][0]["n"] if result["total"] else 0
        payers = [billing.Payer.of({**doc, "payer_id": doc["_id"]}) for doc in result["page"]]
        return payers, total

    async def current(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        found = await billing.subscription(self.client, billing.Payer.of(doc))
        return found if found is not None and found.get("id") == doc["clerk_id"] else None


def listing_for(
    resource: str, client: ClerkClient, db: Database, reconcilers: Iterable[Reconciler]
) -> Listing:
    """How `resource` is listed; `reconcilers` are all the run's (subscriptions read the items'
    collection)."""
    if resource == "subscriptions":
        items = [rec.collection for rec in reconcilers if rec.resource == EMBEDDED]
        return PayerListing(client, db, items)
    return ClientListing(client, resource)
