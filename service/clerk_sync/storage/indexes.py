"""The query indexes of `webhook_events` (besides `_id` and the TTL index on `received_at`).

Each ends in (`received_at`, `_id`), the order of the console's deliveries list, newest first
(keyset pagination: a page starts after the last delivery of the one before), so a page of one
filter is read from its index in order, with no sort: `status` and `type` (the replay and the
sweeper find `failed` and stale `processing` deliveries by the first), a time range alone, and
the object ids that `q` looks up, partial so that events without the field cost nothing.
docs/console.md lists which filter uses which.
"""

from __future__ import annotations

from pymongo import IndexModel

#: the order of the deliveries list, and the tail of every index below
ORDER = (("received_at", -1), ("_id", -1))
#: the object ids of a delivery that `q` matches, besides its svix-id (`_id`)
OBJECT_IDS = ("payload.data.id", "payload.data.user_id", "payload.data.organization_id")
#: names of earlier versions' indexes that an index below replaces (a prefix of it)
REPLACED = ("status_received_at", "type_received_at")


def _ordered(name: str, *prefix: str, partial: bool = False) -> IndexModel:
    keys = [(field, 1) for field in prefix] + [("received_at", 1), ("_id", 1)]
    if not partial:
        return IndexModel(keys, name=name)
    present = {field: {"$exists": True} for field in prefix}
    return IndexModel(keys, name=name, partialFilterExpression=present)


def query_indexes() -> list[IndexModel]:
    """The indexes `DeliveryLog.ensure_indexes` creates beside the TTL index."""
    return [
        _ordered("received_at_id"),
        _ordered("status_received_at_id", "status"),
        _ordered("type_received_at_id", "type"),
        *(
            _ordered(f"{field.replace('.', '_')}_received_at", field, partial=True)
            for field in OBJECT_IDS
        ),
    ]
