"""What a run is asked (`Options`) and what it answers: outcome counts, differences, reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from clerk_sync.plugins import RECONCILABLE

type Outcome = Literal["created", "updated", "unchanged", "tombstoned", "failed"]
type DiffKind = Literal["missing", "older", "differs", "newer-in-db", "deleted-in-db", "gone"]

RESOURCES: tuple[str, ...] = RECONCILABLE
OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "unchanged", "tombstoned", "failed")


def aware(value: Any) -> Any:
    """A datetime read back from MongoDB as UTC (naive ones are UTC); anything else as is."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass
class Difference:
    resource: str
    clerk_id: str
    kind: DiffKind
    clerk_updated_at: datetime | None = None
    db_updated_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "clerk_id": self.clerk_id,
            "kind": self.kind,
            "clerk_updated_at": self.clerk_updated_at,
            "db_updated_at": self.db_updated_at,
        }


@dataclass
class ResourceReport:
    resource: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    complete: bool = False
    #: "kept": re-checked, never tombstoned (`listing.KEPT`)
    tombstoning: Literal["done", "kept", "skipped", "refused", "not-reached"] = "not-reached"
    resumed_from: int | None = None
    pages: int = 0
    listed: int = 0
    error: str | None = None
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.complete and self.counts["failed"] == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "ok": self.ok,
            "counts": self.counts,
            "complete": self.complete,
            "tombstoning": self.tombstoning,
            "resumed_from": self.resumed_from,
            "pages": self.pages,
            "listed": self.listed,
            "error": self.error,
        }


@dataclass
class Report:
    dry_run: bool
    started_at: datetime
    duration_seconds: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    resources: list[ResourceReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.resources)

    @property
    def differences(self) -> list[Difference]:
        return [d for r in self.resources for d in r.differences]

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "started_at": self.started_at,
            "duration_seconds": round(self.duration_seconds, 3),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "resources": [r.as_dict() for r in self.resources],
        }
        if self.dry_run:
            result["differences"] = [d.as_dict() for d in self.differences]
        return result


@dataclass(frozen=True)
class Options:
    resources: tuple[str, ...] = RESOURCES
    since: datetime | None = None
    dry_run: bool = False
    page_size: int = 100
    restart: bool = False
    #: refuse to tombstone more than this fraction of the live documents (a wrong instance key
    #: lists nothing, which must not empty the database); only checked above 20 candidates
    max_tombstone_fraction: float = 0.5
    progress: Callable[[str], None] | None = None


def iter_lines(report: Report) -> Iterable[str]:
    """The human summary: one line per resource, then the differences of a dry run."""
    for r in report.resources:
        counts = " ".join(f"{name}={r.counts[name]}" for name in OUTCOMES)
        state = "ok" if r.ok else ("incomplete" if not r.complete else "failed")
        resumed = f" resumed@{r.resumed_from}" if r.resumed_from is not None else ""
        line = f"{r.resource:<14} {state:<10} {counts} pages={r.pages}{resumed}"
        if r.tombstoning not in ("done", "kept"):
            line += f" tombstoning={r.tombstoning}"
        yield line + (f" error={r.error}" if r.error else "")
    for d in report.differences:
        yield (
            f"  {d.kind:<13} {d.resource:<14} {d.clerk_id}"
            f" clerk={d.clerk_updated_at} db={d.db_updated_at}"
        )
