"""Named leases in MongoDB: at most one holder at a time across every replica of one database.

A lease is one document of the `leases` collection (`_id` its name, `holder`, `until`). Taking it
succeeds for its current holder (a renewal) or once `until` has passed; an upsert that finds the
lease held by another replica fails on the duplicate `_id`, which means "not yours".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from clerk_sync.errors import StoreUnavailable

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

LEASES = "leases"


class Lease:
    """One named lease, taken and renewed by one holder (a process of one replica)."""

    def __init__(
        self, collection: AsyncIOMotorCollection[dict[str, Any]], name: str, holder: str
    ) -> None:
        self.collection, self.name, self.holder = collection, name, holder

    async def take(self, now: datetime, length: timedelta) -> bool:
        """Hold the lease until `now + length` if it is free, expired or already ours."""
        free = {"_id": self.name, "$or": [{"until": {"$lt": now}}, {"holder": self.holder}]}
        try:
            await self.collection.find_one_and_update(
                free,
                {"$set": {"holder": self.holder, "until": now + length}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False  # held by another holder, not expired
        except PyMongoError as error:
            raise StoreUnavailable("MongoDB is unavailable") from error
        return True

    async def release(self) -> None:
        """Give the lease up (at shut-down), so another replica need not wait for it to expire."""
        try:
            await self.collection.delete_one({"_id": self.name, "holder": self.holder})
        except PyMongoError:
            return  # it expires by itself
