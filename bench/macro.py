"""The end-to-end comparison: clerk-sync and the peer, over HTTP, round by round.

Both servers run for the whole benchmark. In every round each server gets the same signed
deliveries at each concurrency level, one server after the other (the order alternates between
rounds, so drift of a shared machine hits both). Around each phase the kernel's CPU counters of
the server's processes and of its store are read; after each phase the server's collections are
emptied (indexes kept), so every phase starts from the same state.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from bench import servers
from bench.deliveries import make_plan, write_plan
from bench.memstore import MemoryProcess
from bench.monitor import ENV as COUNTS_ENV
from bench.monitor import read_counts
from clerk_sync.storage.embedded import EmbeddedProcess
from clerk_sync.testing import sample, signed_headers

COLLECTIONS = ("webhook_events", "users")
#: seconds to wait after the last answer before reading the command counts: the group commit
#: of successful outcomes follows the answers by up to CLERK_SYNC_OUTCOME_FLUSH_SECONDS (0.25 s
#: by default), and bench/monitor.py rewrites its file every 0.1 s
SETTLE_S = 0.5
NOT_PER_DELIVERY = frozenset({"ping", "endSessions"})


@dataclass(frozen=True, slots=True)
class Phase:
    """One server, one round, one concurrency level."""

    server: str
    round: int
    concurrency: int
    count: int
    wall_s: float
    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_s: float
    store_cpu_s: float
    statuses: dict[str, int]
    problems: list[str]

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / self.count * 1000

    @property
    def store_cpu_ms(self) -> float:
        return self.store_cpu_s / self.count * 1000


@dataclass(slots=True)
class Macro:
    phases: list[Phase] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    store_peak_rss: dict[str, int] = field(default_factory=dict)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "phases": [asdict(p) for p in self.phases],
            "peak_rss": self.peak_rss,
            "store_peak_rss": self.store_peak_rss,
            "commands": self.commands,
        }


def run_phase(
    server: servers.Server,
    plan: Path,
    concurrency: int,
    around: tuple[Callable[[], object], Callable[[], object]] | None = None,
) -> dict[str, Any]:
    """Drive `server` with the plan from a load-generator process; read CPU around the load.

    `around`: two callables run right before and right after the load (e.g. a profiler's
    start and stop)."""
    generator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(server.port),
            "--plan",
            str(plan),
            "--concurrency",
            str(concurrency),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=servers.base_env(),
    )
    assert generator.stdin is not None
    assert generator.stdout is not None
    if generator.stdout.readline().strip() != "ready":
        generator.kill()
        raise RuntimeError(f"load generator did not start against {server.name}")
    if around is not None:
        around[0]()
    before = server.usage()
    generator.stdin.write("go\n")
    generator.stdin.flush()
    line = generator.stdout.readline()
    used = server.usage() - before
    if around is not None:
        around[1]()
    generator.wait(timeout=60)
    result: dict[str, Any] = json.loads(line)
    result["cpu_s"], result["store_cpu_s"] = used.server, used.store
    return result


class Target:
    """A started server and a direct client on its database (to empty it between phases)."""

    def __init__(self, server: servers.Server, mongodb_url: str, database: str) -> None:
        self.server = server
        self.client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
        self.db = self.client[database]

    def clear(self) -> None:
        for name in COLLECTIONS:
            self.db[name].delete_many({})

    def close(self) -> None:
        self.client.close()
        self.server.stop()


def _store_url(server: servers.Server) -> str:
    """The embedded store URL from clerk-sync's `embedded_store` log line."""
    for line in server.log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "embedded_store":
            url: str = record["url"]
            return url
    raise RuntimeError(f"no embedded_store line in {server.log_path}")


def start_pair(
    workdir: Path,
    mongodb_url: str | None,
    counts: dict[str, Path] | None = None,
    *,
    memory: bool = False,
    http_server: str = "granian",
    compare: str | None = None,
) -> dict[str, Target]:
    """clerk-sync and the peer, started, each with a client on its own database; with
    `compare`, also clerk-sync under that HTTP server, as `clerk-sync-<compare>`.

    Stores: BENCH_MONGODB_URL when given; else with `memory` one in-memory store each
    (bench/memstore.py); else the SQLite embedded store (serve starts clerk-sync's own).
    With `counts`, each server counts its MongoDB commands into its file (bench/monitor.py).
    """
    stamp = time.strftime("%Y%m%d%H%M%S")
    databases = {"clerk-sync": "clerk_sync", "peer": "peer"}
    if compare:
        databases[f"clerk-sync-{compare}"] = f"clerk_sync_{compare}"
    if mongodb_url:
        databases = {name: f"bench_{databases[name]}_{stamp}" for name in databases}
    env = {name: {COUNTS_ENV: str(path)} for name, path in (counts or {}).items()}
    stores: dict[str, EmbeddedProcess | None] = dict.fromkeys(databases)
    if memory and not mongodb_url:
        for name in stores:
            stores[name] = MemoryProcess(workdir)
            stores[name].start()
    started = {
        "clerk-sync": servers.clerk_sync(
            workdir / "clerk-sync",
            mongodb_url=mongodb_url,
            database=databases["clerk-sync"],
            store=stores["clerk-sync"],
            http_server=http_server,
            **env.get("clerk-sync", {}),
        ).start(),
        "peer": servers.peer(
            workdir / "peer",
            mongodb_url=mongodb_url,
            database=databases["peer"],
            store=stores["peer"],
            **env.get("peer", {}),
        ).start(),
    }
    if compare:
        other = f"clerk-sync-{compare}"
        started[other] = servers.clerk_sync(
            workdir / f"clerk-sync-{compare}",
            mongodb_url=mongodb_url,
            database=databases[other],
            store=stores[other],
            http_server=compare,
            name=other,
        ).start()
    targets = {}
    for name, server in started.items():
        url = mongodb_url or (server.own_store.url if server.own_store else _store_url(server))
        assert url is not None
        targets[name] = Target(server, url, databases[name])
    return targets


def _drop(targets: dict[str, Target], external: bool) -> None:
    for target in targets.values():
        if external:
            target.client.drop_database(target.db.name)
        target.close()


def run_rounds(
    workdir: Path,
    *,
    rounds: int,
    deliveries: int,
    levels: list[int],
    mongodb_url: str | None,
    memory: bool = False,
    http_server: str = "granian",
    compare: str | None = None,
    progress: Any = print,
) -> Macro:
    """Warm the servers up, then `rounds` interleaved rounds over the concurrency levels."""
    plans = workdir / "plans"
    plans.mkdir(parents=True, exist_ok=True)
    now_ms = int(time.time() * 1000)
    warmup = write_plan(make_plan(200, seed=1, now_ms=now_ms), plans / "warmup.jsonl")
    targets = start_pair(
        workdir, mongodb_url, memory=memory, http_server=http_server, compare=compare
    )
    macro = Macro()
    try:
        for target in targets.values():
            run_phase(target.server, warmup, 16)
            target.clear()
        for round_number in range(1, rounds + 1):
            order = list(targets) if round_number % 2 else list(reversed(targets))
            for level in levels:
                seed = round_number * 1000 + level
                plan = write_plan(make_plan(deliveries, seed=seed, now_ms=now_ms), plans / "p")
                for name in order:
                    result = run_phase(targets[name].server, plan, level)
                    targets[name].clear()
                    phase = _phase(name, round_number, result)
                    macro.phases.append(phase)
                    progress(_describe(phase))
        for name, target in targets.items():
            macro.peak_rss[name] = target.server.peak_rss()
            macro.store_peak_rss[name] = target.server.store_peak_rss()
    finally:
        _drop(targets, external=bool(mongodb_url))
    return macro


def _phase(name: str, round_number: int, result: dict[str, Any]) -> Phase:
    keys = ("count", "wall_s", "rate", "p50_ms", "p95_ms", "p99_ms", "cpu_s", "store_cpu_s")
    return Phase(
        server=name,
        round=round_number,
        concurrency=result["concurrency"],
        statuses=result["statuses"],
        problems=result["problems"],
        **{k: result[k] for k in keys},
    )


def _describe(p: Phase) -> str:
    return (
        f"round {p.round} {p.server:<10} {p.concurrency:>2} senders: {p.rate:7.1f}/s "
        f"p50 {p.p50_ms:7.1f} ms p99 {p.p99_ms:7.1f} ms cpu {p.cpu_ms:5.2f} ms "
        f"store {p.store_cpu_ms:6.2f} ms {p.statuses}"
    )


# MongoDB commands per delivery, counted inside the servers -------------------------------------


def _user_bodies(suffix: str) -> tuple[bytes, bytes]:
    """A user.created and a later user.updated of one new user."""
    created, updated = (json.loads(sample(f"user.{kind}")) for kind in ("created", "updated"))
    clerk_id = f"user_benchcount{suffix}"
    created["data"]["id"] = updated["data"]["id"] = clerk_id
    updated["data"]["updated_at"] = created["data"]["updated_at"] + 1
    return json.dumps(created).encode(), json.dumps(updated).encode()


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    names = set(before) | set(after)
    changed = {n: after.get(n, 0) - before.get(n, 0) for n in names}
    return {n: v for n, v in sorted(changed.items()) if v and n not in NOT_PER_DELIVERY}


def count_commands(
    workdir: Path,
    *,
    deliveries: int,
    mongodb_url: str | None,
    memory: bool = False,
    progress: Any = print,
) -> dict[str, dict[str, Any]]:
    """Start both servers instrumented; count commands for a load and for single deliveries."""
    counts = {name: workdir / f"{name}-commands.json" for name in ("clerk-sync", "peer")}
    plan = write_plan(
        make_plan(deliveries, seed=7, now_ms=int(time.time() * 1000)), workdir / "count.jsonl"
    )
    targets = start_pair(workdir / "counted", mongodb_url, counts, memory=memory)
    found: dict[str, dict[str, Any]] = {}
    try:
        for name, target in targets.items():
            found[name] = _count_one(target, counts[name], plan, deliveries)
            progress(f"commands {name}: {json.dumps(found[name])}")
    finally:
        _drop(targets, external=bool(mongodb_url))
    return found


def _count_one(target: Target, path: Path, plan: Path, deliveries: int) -> dict[str, Any]:
    server = target.server
    start = read_counts(path, after=time.time())
    result = run_phase(server, plan, 16)
    time.sleep(SETTLE_S)
    load = _delta(start, read_counts(path, after=time.time()))
    created, updated = _user_bodies(server.name.replace("-", ""))
    singles: dict[str, Any] = {}
    first = signed_headers(updated)
    again = signed_headers(updated, msg_id=first["svix-id"])
    cases = (
        ("user.created", created, signed_headers(created)),
        ("user.updated", updated, first),
        ("duplicate user.updated", updated, again),
    )
    for label, body, headers in cases:
        before = read_counts(path, after=time.time())
        answer = httpx.post(server.url + "/webhooks/clerk", content=body, headers=headers)
        time.sleep(SETTLE_S)
        after = read_counts(path, after=time.time())
        singles[label] = {
            "status": answer.status_code,
            "answer": answer.json(),
            "commands": _delta(before, after),
        }
    return {
        "load": {"deliveries": deliveries, "statuses": result["statuses"], "commands": load},
        "single": singles,
    }
