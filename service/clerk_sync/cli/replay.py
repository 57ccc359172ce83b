"""`clerk-sync events replay`: re-run the handlers of recorded deliveries, as Svix would."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from clerk_sync.cli.support import (
    FAILED,
    OK,
    Since,
    echo_json,
    run_or_exit,
    settings_or_exit,
    with_store_or_exit,
)
from clerk_sync.errors import StoreUnavailable
from clerk_sync.webhooks.replaying import REPLAYABLE, replay_one

if TYPE_CHECKING:
    from clerk_sync.runtime import Runtime
    from clerk_sync.settings import Settings

STALE = "stale"
PROGRESS_FROM = 20


@dataclass(slots=True)
class Tally:
    """Replay outcomes: counts and one record per delivery."""

    processed: int = 0
    failed: int = 0
    skipped: int = 0
    refused: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: dict[str, Any]) -> dict[str, Any]:
        """Count one result of `replay_one`."""
        kind = result["result"]
        setattr(self, kind, getattr(self, kind) + 1)
        self.results.append(result)
        return result

    def as_dict(self) -> dict[str, Any]:
        counts = {
            "processed": self.processed,
            "failed": self.failed,
            "skipped": self.skipped,
            "refused": self.refused,
        }
        return {**counts, "deliveries": self.results}


async def _replayable_ids(runtime: Runtime, status: str, since: datetime | None) -> list[str]:
    """The deliveries in `status`, oldest first; `stale`: those left `processing` by an
    attempt whose lease has expired (a crash before its outcome was written)."""
    assert runtime.store is not None
    query: dict[str, Any] = {"status": status}
    if status == STALE:
        query = {"status": "processing", "lease_until": {"$lt": datetime.now(UTC)}}
    if since is not None:
        query["received_at"] = {"$gte": since}
    cursor = runtime.store.events.collection.find(query, {"_id": 1}).sort("received_at", 1)
    return [d["_id"] async for d in cursor]


async def _replay_all(runtime: Runtime, ids: list[str], tally: Tally, progress: bool) -> None:
    """Replay each delivery once, in the order received; failures get their handler errors."""
    assert runtime.store is not None
    bar = click.progressbar(
        length=len(ids), label="replaying", file=sys.stderr, hidden=not progress
    )
    with bar:
        for svix_id in ids:
            tally.add(await replay_one(runtime.receiver, runtime.store.events, svix_id))
            bar.update(1)


async def _replay(
    settings: Settings,
    svix_id: str | None,
    status: str | None,
    since: datetime | None,
    as_json: bool,
) -> Tally:
    from clerk_sync.runtime import Runtime

    runtime = Runtime.build(settings, log_stream=sys.stderr)  # stdout is the command's output
    await runtime.start(monitor=False, group_commit=False)
    try:
        if not runtime.indexes_ready:
            raise StoreUnavailable("MongoDB: no answer (see the log line above)")
        ids = [svix_id] if svix_id else await _replayable_ids(runtime, status or "failed", since)
        progress = not as_json and len(ids) >= PROGRESS_FROM and sys.stderr.isatty()
        tally = Tally()
        await _replay_all(runtime, ids, tally, progress)
        return tally
    finally:
        await runtime.stop()


@click.command("replay")
@click.argument("svix_id", required=False)
@click.option(
    "--status",
    type=click.Choice(REPLAYABLE),
    help="Replay every delivery in this status (`processing` ones only once their lease expired).",
)
@click.option(
    "--stale",
    is_flag=True,
    help="Replay every delivery left `processing` whose lease has expired (a crash).",
)
@click.option(
    "--since", type=Since(), help="With --status or --stale: received at or after this time."
)
@click.option("--json", "as_json", is_flag=True, help="Print counts and results as JSON.")
def replay_events(
    svix_id: str | None, status: str | None, stale: bool, since: datetime | None, as_json: bool
) -> None:
    """Re-run the handlers of SVIX_ID, of every delivery with --status failed, or of every
    delivery a crashed attempt left behind (--stale: `processing` with an expired lease).

    A replay behaves exactly like Svix redelivering the same svix-id: only handlers that have
    not yet succeeded run, and a delivery another process is working on is skipped. Each
    delivery is replayed at most once per run, oldest first. Prints a line per delivery that
    did not end processed, and the counts; a progress bar on a terminal for large sets.
    On a terminal, per-delivery log lines are left out unless LOG_LEVEL is warning or higher.

    Exit status: 0 when no replay failed, 1 when any did, 2 for bad arguments.
    """
    if [svix_id is not None, status is not None, stale].count(True) != 1:
        raise click.UsageError("give one of SVIX_ID, --status failed or --stale")
    if svix_id is not None and since is not None:
        raise click.UsageError("--since only goes with --status or --stale")
    if stale:
        status = STALE
    settings = with_store_or_exit(settings_or_exit())
    if sys.stderr.isatty() and settings.log_level in ("debug", "info"):
        settings = settings.model_copy(update={"log_level": "warning"})
    tally = run_or_exit(_replay(settings, svix_id, status, since, as_json))
    if as_json:
        echo_json(tally.as_dict())
    else:
        _print_tally(tally, single=svix_id is not None)
    sys.exit(FAILED if tally.failed or tally.refused else OK)


def _print_tally(tally: Tally, *, single: bool) -> None:
    if single and tally.refused:  # one line: why, and who can resend it
        result = tally.results[0]
        click.echo(f"{result['svix_id']}: refused: {result['answer']}", err=True)
        return
    for result in tally.results:
        if single or result["result"] != "processed":
            errors = "; ".join(result.get("errors", [])) or result["answer"]
            click.echo(f"{result['svix_id']}: {result['result']} ({result['status']}): {errors}")
    click.echo(
        f"replayed {len(tally.results)}: {tally.processed} processed, "
        f"{tally.failed} failed, {tally.skipped} skipped"
        + (f", {tally.refused} refused (stored redacted)" if tally.refused else "")
    )
