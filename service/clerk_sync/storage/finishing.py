"""How an attempt's outcome is written: its handlers' results and the final status, only while
the attempt still holds the delivery's lease.

The usual form is a plain operator update whose filter carries the lease token, `$set` of the
status and of one dotted path per handler (`handlers.<plugin>:<handler>`), so results of
handlers that succeeded in an earlier attempt stay as they are. MongoDB applies it without
evaluating an expression, and the embedded development store spends about a third less CPU on
it than on the update pipeline (docs/performance.md), which matters because the group commit
writes many at once. A handler key that cannot be a dotted path (it holds a `.` or starts with
`$`, possible for a handler registered as a callable object) takes the pipeline form instead:
keyed by `_id` alone, the lease check inside one `$cond` per field, the handlers merged.
Either way an attempt that lost its lease changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

type Filter = dict[str, Any]
type Update = dict[str, Any] | list[dict[str, Any]]


def finish_update(
    svix_id: str, token: str, status: str, outcomes: Mapping[str, Mapping[str, Any]]
) -> tuple[Filter, Update]:
    """The filter and the update that write this attempt's outcome under its lease."""
    if all(_dottable(key) for key in outcomes):
        values: dict[str, Any] = {"status": status, "lease_until": None}
        values |= {f"handlers.{key}": dict(result) for key, result in outcomes.items()}
        return {"_id": svix_id, "lease_token": token}, {"$set": values}
    return {"_id": svix_id}, [{"$set": _guarded_stage(token, status, outcomes)}]


def _dottable(key: str) -> bool:
    return bool(key) and "." not in key and not key.startswith("$")


def _guarded_stage(
    token: str, status: str, outcomes: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The `$set` stage writing an attempt's outcome only while it holds the lease."""
    owned = {"$eq": ["$lease_token", {"$literal": token}]}
    merged = {"$mergeObjects": [{"$ifNull": ["$handlers", {}]}, {"$literal": dict(outcomes)}]}
    return {
        "status": {"$cond": [owned, {"$literal": status}, "$status"]},
        "lease_until": {"$cond": [owned, None, "$lease_until"]},
        "handlers": {"$cond": [owned, merged, "$handlers"]},
    }
