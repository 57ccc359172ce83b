"""What the console shows of a stored document: never `private_metadata`, times readable,
payloads pretty-printed. Pure functions; no Quart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from bson import Binary

#: a field the console never shows, at any depth of any document
HIDDEN = "private_metadata"


def without_private(value: Any) -> Any:
    """`value` with every `private_metadata` key removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_private(v) for k, v in value.items() if k != HIDDEN}
    if isinstance(value, list):
        return [without_private(v) for v in value]
    return value


def pretty(value: Any) -> str:
    """JSON, indented, `private_metadata` removed; raw bytes named by their size."""
    if isinstance(value, bytes | Binary):
        return f"(binary, {len(value)} bytes)"
    if isinstance(value, str):
        return value
    shown = without_private(value)
    return orjson.dumps(shown, default=str, option=orjson.OPT_INDENT_2).decode()


def age(moment: object, now: datetime) -> str:
    """`5 s`, `3 min`, `2 h`, `4 d` since `moment`; `-` when there is none."""
    if not isinstance(moment, datetime):
        return "-"
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    seconds = max(0, int((now - aware).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def stamp(moment: object) -> str:
    """An ISO time in UTC to the second, `-` when there is none."""
    if not isinstance(moment, datetime):
        return "-"
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def outcomes(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each handler's outcome (`key`, `status`, `error`, `at`), in key order."""
    handlers = document.get("handlers") or {}
    return [
        {
            "key": key,
            "status": str(outcome.get("status") or "-"),
            "error": outcome.get("error"),
            "at": stamp(outcome.get("at")),
        }
        for key, outcome in sorted(handlers.items())
        if isinstance(outcome, dict)
    ]
