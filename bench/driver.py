"""Client CPU per MongoDB command: motor against PyMongo's native async client (issue 14).

    python -m bench driver [--commands 2000] [--rounds 5] [--concurrency 1,16] [--store memory]

Both clients run in this process against one store in another process (the in-memory mongoeco
server by default, the SQLite one with `--store sqlite`, or BENCH_MONGODB_URL), so this process's
CPU time (`time.process_time`: every thread, motor's executor threads included) is the client's
own cost. Each command is the shape of the delivery log's claim: `find_one_and_update` with
`upsert` on a fresh `_id`, returning the document before. Rounds interleave the two clients and
the median round is reported, as `python -m bench` does for the servers.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient, ReturnDocument

from bench.memstore import MemoryProcess
from clerk_sync.storage.embedded import EmbeddedProcess

type Claim = Callable[[str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Figure:
    """One client at one concurrency: median CPU and wall time per command, in microseconds."""

    client: str
    concurrency: int
    cpu_us: float
    wall_us: float
    rounds: list[float]


def _update(at: float) -> dict[str, Any]:
    return {
        "$setOnInsert": {"status": "processing", "received_at": at},
        "$inc": {"attempts": 1},
    }


async def _timed(claim: Claim, commands: int, concurrency: int) -> tuple[float, float]:
    ids = [f"msg_{uuid.uuid4().hex}" for _ in range(commands)]
    queue = iter(ids)

    async def sender() -> None:
        for svix_id in queue:
            await claim(svix_id)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / commands * 1e6, wall / commands * 1e6


async def measure(url: str, commands: int, rounds: int, levels: list[int]) -> list[Figure]:
    """Interleaved rounds of both clients at each concurrency level."""
    motor: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(url)
    native: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    database = f"bench_driver_{int(time.time())}"
    motor_events = motor[database]["webhook_events"]
    native_events = native[database]["webhook_events"]

    def claim_in(events: Any) -> Claim:  # a motor or a pymongo async collection
        async def claim(svix_id: str) -> object:
            return await events.find_one_and_update(
                {"_id": svix_id},
                _update(time.time()),
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )

        return claim

    clients = {"motor 3.7": claim_in(motor_events), "pymongo async": claim_in(native_events)}
    try:
        for claim in clients.values():  # connect both pools and warm both paths
            await _timed(claim, 200, max(levels))
        samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for level in levels:
                for name, claim in clients.items():
                    await native_events.drop()  # mongoeco slows as a collection grows
                    samples.setdefault((name, level), []).append(
                        await _timed(claim, commands, level)
                    )
        await native_events.drop()
    finally:
        motor.close()
        await native.close()
    return [
        Figure(
            client=name,
            concurrency=level,
            cpu_us=statistics.median(c for c, _ in found),
            wall_us=statistics.median(w for _, w in found),
            rounds=[round(c, 1) for c, _ in found],
        )
        for (name, level), found in samples.items()
    ]


def render(figures: list[Figure], store: str, commands: int) -> str:
    lines = [
        f"Store: {store}; {commands} commands per client per round; load average after: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "",
        "| client | concurrent | client CPU/command (us) | wall/command (us) | rounds (CPU us) |",
        "|---|---:|---:|---:|---|",
    ]
    for f in sorted(figures, key=lambda f: (f.concurrency, f.client)):
        rounds = ", ".join(f"{r:g}" for r in f.rounds)
        lines.append(
            f"| {f.client} | {f.concurrency} | {f.cpu_us:.0f} | {f.wall_us:.0f} | {rounds} |"
        )
    by = {(f.client, f.concurrency): f.cpu_us for f in figures}
    for level in sorted({f.concurrency for f in figures}):
        ratio = by[("pymongo async", level)] / by[("motor 3.7", level)]
        lines.append(f"\nAt {level} concurrent: pymongo async / motor CPU = {ratio:.2f}")
    return "\n".join(lines)


def run(
    mongodb_url: str | None, *, commands: int, rounds: int, levels: list[int], store: str
) -> str:
    server: EmbeddedProcess | None = None
    if not mongodb_url:
        workdir = Path(tempfile.mkdtemp(prefix="clerk-sync-bench-driver-"))
        server = MemoryProcess(workdir) if store == "memory" else EmbeddedProcess(workdir)
        mongodb_url = server.start()
        described = (
            "in-memory mongoeco (bench/memstore.py)"
            if store == "memory"
            else "mongoeco over SQLite (as `clerk-sync serve` starts it)"
        )
    else:
        described = "BENCH_MONGODB_URL"
    try:
        figures = asyncio.run(measure(mongodb_url, commands, rounds, levels))
    finally:
        if server is not None:
            server.stop()
    return render(figures, described, commands)
