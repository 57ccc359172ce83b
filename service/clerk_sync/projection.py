"""Public path of the order-safe projection writes for plugin authors (`clerk_sync.projection`).

The code lives in `clerk_sync.storage.projection`; this module only keeps the documented import
path valid.
"""

from clerk_sync.storage.projection import (
    Applied,
    applies,
    dict_or_empty,
    int_or_none,
    str_or_none,
    tombstone,
    tombstone_update,
    upsert_if_newer,
)

__all__ = [
    "Applied",
    "applies",
    "dict_or_empty",
    "int_or_none",
    "str_or_none",
    "tombstone",
    "tombstone_update",
    "upsert_if_newer",
]
