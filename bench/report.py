"""The results as a dated markdown table (bench/results/YYYY-MM-DD.md), medians over rounds."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.macro import Macro, Phase
from bench.micro import Stage

SERVERS = ("clerk-sync", "peer")
PACKAGES = (
    "quart",
    "granian",
    "hypercorn",
    "uvicorn",
    "motor",
    "pymongo",
    "mongoeco",
    "svix",
    "structlog",
    "prometheus-client",
)
RSS_LIMIT = 150 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Run:
    """What one `python -m bench` run measured, and how it was started."""

    command: str
    store: str
    rounds: int
    deliveries: int
    levels: list[int]
    macro: Macro
    micro: list[Stage]
    micro_deliveries: int
    machine: dict[str, str]
    http_server: str = "granian"
    #: the HTTP server of the third contestant (`clerk-sync-<compare>`), if one ran
    compare: str | None = None


def machine(load: tuple[float, float, float]) -> dict[str, str]:
    """The facts about this machine that the figures depend on."""
    model = "unknown"
    memory = "unknown"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(x.split(":", 1)[1].strip() for x in cpuinfo.splitlines() if "model name" in x)
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": f"{os.cpu_count()} x {model}",
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "load_before": " ".join(f"{x:.2f}" for x in load),
    }


def _median(values: Iterable[float]) -> float:
    found = list(values)
    return statistics.median(found) if found else float("nan")


def _phases(macro: Macro, server: str, level: int | None = None) -> list[Phase]:
    return [
        p for p in macro.phases if p.server == server and (level is None or p.concurrency == level)
    ]


def cpu_per_round(macro: Macro, server: str, attribute: str = "cpu_s") -> dict[int, float]:
    """Milliseconds of CPU per delivery in each round, over all its concurrency levels."""
    rounds: dict[int, list[Phase]] = {}
    for phase in _phases(macro, server):
        rounds.setdefault(phase.round, []).append(phase)
    return {
        r: sum(getattr(p, attribute) for p in ps) / sum(p.count for p in ps) * 1000
        for r, ps in sorted(rounds.items())
    }


def cpu_ratio(macro: Macro) -> float:
    """Median over rounds of clerk-sync's CPU per delivery divided by the peer's."""
    ours, theirs = cpu_per_round(macro, "clerk-sync"), cpu_per_round(macro, "peer")
    return _median(ours[r] / theirs[r] for r in ours if r in theirs)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def _mb(value: int) -> str:
    return f"{value / 1024 / 1024:.0f} MiB"


def _throughput(run: Run) -> list[str]:
    rows = []
    for level in run.levels:
        ours, theirs = _phases(run.macro, "clerk-sync", level), _phases(run.macro, "peer", level)
        rate = (_median(p.rate for p in ours), _median(p.rate for p in theirs))
        rows.append(
            [
                level,
                f"{rate[0]:.0f}",
                f"{rate[1]:.0f}",
                f"{rate[0] / rate[1]:.2f}",
                " / ".join(f"{_median(getattr(p, k) for p in ours):.1f}" for k in _LATENCY),
                " / ".join(f"{_median(getattr(p, k) for p in theirs):.1f}" for k in _LATENCY),
            ]
        )
    head = [
        "senders",
        "clerk-sync deliveries/s",
        "peer deliveries/s",
        "ratio",
        "clerk-sync p50 / p95 / p99 ms",
        "peer p50 / p95 / p99 ms",
    ]
    return _table(head, rows)


_LATENCY = ("p50_ms", "p95_ms", "p99_ms")


def _cpu(run: Run) -> list[str]:
    ours, theirs = cpu_per_round(run.macro, "clerk-sync"), cpu_per_round(run.macro, "peer")
    store_ours = cpu_per_round(run.macro, "clerk-sync", "store_cpu_s")
    store_theirs = cpu_per_round(run.macro, "peer", "store_cpu_s")
    rows: list[list[object]] = [
        [
            f"round {r}",
            f"{ours[r]:.2f}",
            f"{theirs[r]:.2f}",
            f"{ours[r] / theirs[r]:.2f}",
            f"{store_ours[r]:.2f}",
            f"{store_theirs[r]:.2f}",
        ]
        for r in ours
        if r in theirs
    ]
    rows.append(
        [
            "**median**",
            f"**{_median(ours.values()):.2f}**",
            f"**{_median(theirs.values()):.2f}**",
            f"**{cpu_ratio(run.macro):.2f}**",
            f"{_median(store_ours.values()):.2f}",
            f"{_median(store_theirs.values()):.2f}",
        ]
    )
    for level in run.levels:
        a = _median(p.cpu_ms for p in _phases(run.macro, "clerk-sync", level))
        b = _median(p.cpu_ms for p in _phases(run.macro, "peer", level))
        sa = _median(p.store_cpu_ms for p in _phases(run.macro, "clerk-sync", level))
        sb = _median(p.store_cpu_ms for p in _phases(run.macro, "peer", level))
        rows.append(
            [f"{level} senders", f"{a:.2f}", f"{b:.2f}", f"{a / b:.2f}", f"{sa:.2f}", f"{sb:.2f}"]
        )
    head = [
        "",
        "clerk-sync server CPU ms/delivery",
        "peer server CPU ms/delivery",
        "ratio",
        "clerk-sync store CPU ms/delivery",
        "peer store CPU ms/delivery",
    ]
    return _table(head, rows)


def _commands_text(commands: dict[str, int]) -> str:
    total = sum(commands.values())
    detail = ", ".join(f"{name} {n}" for name, n in commands.items())
    return f"{total} ({detail})" if detail else "0"


def command_totals(run: Run, server: str) -> dict[str, float]:
    found = run.macro.commands.get(server, {})
    load = found.get("load", {})
    per = sum(load.get("commands", {}).values()) / max(1, load.get("deliveries", 1))
    singles = {k: sum(v["commands"].values()) for k, v in found.get("single", {}).items()}
    return {"load": per, **singles}


def _commands(run: Run) -> list[str]:
    rows: list[list[object]] = []
    load = {s: run.macro.commands.get(s, {}).get("load", {}) for s in SERVERS}
    rows.append(
        [
            f"per delivery, {load['clerk-sync'].get('deliveries', 0)} deliveries at 16 senders",
            *(
                f"{command_totals(run, s)['load']:.2f} "
                f"({_commands_text(load[s].get('commands', {}))})"
                for s in SERVERS
            ),
        ]
    )
    labels = list(run.macro.commands.get("clerk-sync", {}).get("single", {}))
    for label in labels:
        cells = []
        for server in SERVERS:
            single = run.macro.commands.get(server, {}).get("single", {}).get(label, {})
            status = single.get("answer", {}).get("status", single.get("status"))
            cells.append(f"{_commands_text(single.get('commands', {}))}, answer {status}")
        rows.append([f"one {label}", *cells])
    return _table(["MongoDB commands (ping excluded)", *SERVERS], rows)


def _memory(run: Run) -> list[str]:
    rss, store = run.macro.peak_rss, run.macro.store_peak_rss
    names = [*SERVERS, *([f"clerk-sync-{run.compare}"] if run.compare else [])]
    rows = [
        ["peak RSS of the serving process", *(_mb(rss.get(s, 0)) for s in names)],
        ["peak RSS of its store process", *(_mb(store.get(s, 0)) for s in names)],
    ]
    return _table(["memory (whole run, 64 senders included)", *names], rows)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _micro(run: Run) -> list[str]:
    rows = [[s.name, _us(s.cpu_us), _us(s.store_cpu_us), _us(s.wall_us), s.what] for s in run.micro]
    by_name = {s.name: s for s in run.micro}
    whole = by_name.get("receive (new delivery)")
    if whole is not None:
        # with group commit `receive` does not pay a `finish` per delivery: its share of the
        # batched write is in the rest
        parts = [s for s in run.micro if not s.name.startswith(("receive", "record: finish"))]
        rest = whole.cpu_us - sum(s.cpu_us for s in parts)
        what = (
            "receive minus the stages above but finish: metrics, ids, dates, timeout, Context, "
            "and its share of the group commit"
        )
        rows.insert(len(parts), ["rest of receive", _us(rest), "-", "-", what])
    head = ["pipeline stage", "CPU µs/delivery", "store CPU µs", "wall µs", "what"]
    return _table(head, rows)


#: issue 33's targets: CPU ratio overall and under load, commands per delivery under load
RATIO_OVERALL = 1.0
RATIO_UNDER_LOAD = 0.8
COMMANDS_PER_DELIVERY = 0.8


def p99_at_16(results: Mapping[str, Any], server: str = "clerk-sync") -> float | None:
    """`server`'s median p99 at 16 senders in a results `.json` (`as_dict`); None if absent."""
    phases = results.get("macro", {}).get("phases", [])
    found = [
        float(p["p99_ms"])
        for p in phases
        if p.get("server") == server and p.get("concurrency") == 16 and "p99_ms" in p
    ]
    return statistics.median(found) if found else None


def level_ratio(macro: Macro, level: int, server: str = "clerk-sync") -> float:
    """`server`'s median CPU per delivery at `level` senders ÷ the peer's (the CPU table's)."""
    ours = _median(p.cpu_ms for p in _phases(macro, server, level))
    return ours / _median(p.cpu_ms for p in _phases(macro, "peer", level))


def targets(run: Run, baseline: Baseline | None = None) -> list[tuple[str, str, bool | None]]:
    """Each acceptance target of issue 33: what it asks, what was measured, whether it holds
    (None: nothing to compare with). The p99 at 16 senders is compared with clerk-sync under
    `run.compare` in the same rounds when that ran, else with `baseline`, the previous results
    file of the same store and server."""
    ratio = cpu_ratio(run.macro)
    ours = command_totals(run, "clerk-sync")
    load = ours.get("load", float("nan"))
    duplicate = ours.get("duplicate user.updated", float("nan"))
    rss = run.macro.peak_rss.get("clerk-sync", 0)
    p99 = _median(p.p99_ms for p in _phases(run.macro, "clerk-sync", 16))
    loaded = [lv for lv in run.levels if lv >= 16]
    under_load = {lv: level_ratio(run.macro, lv) for lv in loaded}
    found: list[tuple[str, str, bool | None]] = [
        (
            f"server CPU per delivery, clerk-sync ÷ peer, median of {run.rounds} interleaved "
            f"rounds ≤ {RATIO_OVERALL}",
            f"ratio {ratio:.2f}",
            ratio <= RATIO_OVERALL,
        ),
        (
            f"the same at {' and '.join(map(str, loaded))} senders ≤ {RATIO_UNDER_LOAD}",
            " / ".join(f"{r:.2f}" for r in under_load.values()),
            all(r <= RATIO_UNDER_LOAD for r in under_load.values()),
        ),
    ]
    if 1 in run.levels:
        found.append(("the same at 1 sender (printed)", f"{level_ratio(run.macro, 1):.2f}", None))
    return [
        *found,
        (
            f"MongoDB commands per single-handler delivery at 16 senders ≤ {COMMANDS_PER_DELIVERY}",
            f"{load:.2f}",
            load <= COMMANDS_PER_DELIVERY,
        ),
        ("a duplicate: 1 MongoDB command", f"{duplicate:.0f}", duplicate <= 1),
        ("peak RSS of one server process at 64 senders < 150 MiB", _mb(rss), 0 < rss < RSS_LIMIT),
        _latency_target(run, p99, baseline),
    ]


@dataclass(frozen=True, slots=True)
class Baseline:
    """The previous results file a run is compared with, and its p99 at 16 senders."""

    name: str
    p99_ms: float


def _latency_target(
    run: Run, p99: float, baseline: Baseline | None
) -> tuple[str, str, bool | None]:
    other = f"clerk-sync-{run.compare}"
    theirs = _median(p.p99_ms for p in _phases(run.macro, other, 16))
    if run.compare and theirs == theirs:  # not NaN: it ran
        return (
            f"p99 latency at 16 senders no worse than {run.compare}'s in the same rounds",
            f"{p99:.1f} ms against {theirs:.1f} ms",
            p99 <= theirs,
        )
    if baseline is None:
        return (
            "p99 latency at 16 senders no worse than the previous run's",
            f"{p99:.1f} ms (no earlier results file of this store to compare with)",
            None,
        )
    return (
        f"p99 latency at 16 senders no worse than the previous run's ({baseline.name})",
        f"{p99:.1f} ms against {baseline.p99_ms:.1f} ms",
        p99 <= baseline.p99_ms,
    )


def _holds(ok: bool | None) -> str:
    return "not compared" if ok is None else "yes" if ok else "**no**"


def _server_description(http_server: str) -> str:
    if http_server == "uvicorn":
        return "its app under uvicorn with uvloop and httptools (bench/serve_uvicorn.py)"
    if http_server == "hypercorn":
        return "`clerk-sync serve --server hypercorn`, default settings, one worker"
    return "`clerk-sync serve` (granian, the default), default settings, one worker"


def _compared(run: Run) -> list[str]:
    """clerk-sync under the other HTTP server, in the same rounds: its figures beside the
    default's, per sender level (medians over rounds)."""
    other = f"clerk-sync-{run.compare}"
    rows = []
    for level in run.levels:
        ours, theirs = _phases(run.macro, "clerk-sync", level), _phases(run.macro, other, level)
        rows.append(
            [
                level,
                f"{_median(p.cpu_ms for p in ours):.2f}",
                f"{_median(p.cpu_ms for p in theirs):.2f}",
                f"{level_ratio(run.macro, level, other):.2f}",
                f"{_median(p.rate for p in theirs):.0f}",
                " / ".join(f"{_median(getattr(p, k) for p in theirs):.1f}" for k in _LATENCY),
            ]
        )
    head = [
        "senders",
        f"clerk-sync ({run.http_server}) CPU ms/delivery",
        f"clerk-sync ({run.compare}) CPU ms/delivery",
        f"{run.compare} ÷ peer",
        f"{run.compare} deliveries/s",
        f"{run.compare} p50 / p95 / p99 ms",
    ]
    return _table(head, rows)


def render(run: Run, date: str, baseline: Baseline | None = None) -> str:
    m = run.machine
    lines = [
        f"# clerk-sync benchmark, {date}",
        "",
        f"Produced by `{run.command}`"
        + (" (what `make bench` runs)" if run.command == "python -m bench" else "")
        + "; how to read it: docs/performance.md.",
        "",
        f"- machine: {m['cpu']}, {m['memory']}, {m['os']}, Python {m['python']}; "
        f"load average before the run {m['load_before']}, after {m.get('load_after', '?')} "
        "(the machine is shared)",
        f"- packages: {m['packages']}",
        f"- MongoDB: {run.store}",
        f"- clerk-sync: {_server_description(run.http_server)}; the peer: bench/peer.py under "
        "the `hypercorn` command"
        + (f"; also {_server_description(run.compare)}" if run.compare else ""),
        f"- load: {run.rounds} interleaved rounds x senders {run.levels} x {run.deliveries} "
        "signed deliveries per server (user.created / user.updated, 5 % duplicates); each "
        "phase starts from empty collections",
        "",
        "## Acceptance targets",
        "",
        *_table(
            ["target", "measured", "holds"],
            [(t, v, _holds(ok)) for t, v, ok in targets(run, baseline)],
        ),
        "",
        "## Throughput and latency (median over rounds)",
        "",
        *_throughput(run),
        "",
        "## Server-side CPU per delivery (kernel accounting; store process apart)",
        "",
        *_cpu(run),
        "",
        *(
            [
                f"## clerk-sync under {run.compare}, in the same rounds",
                "",
                *_compared(run),
                "",
            ]
            if run.compare
            else []
        ),
        "## MongoDB commands (counted by pymongo command monitoring inside each server)",
        "",
        *_commands(run),
        "",
        "## Memory",
        "",
        *_memory(run),
        "",
        f"## Pipeline micro-benchmark (in process, no HTTP, {run.micro_deliveries} deliveries)",
        "",
        *_micro(run),
        "",
    ]
    return "\n".join(lines)


def as_dict(run: Run) -> dict[str, Any]:
    return {
        "command": run.command,
        "store": run.store,
        "http_server": run.http_server,
        "compare": run.compare,
        "machine": run.machine,
        "macro": run.macro.as_dict(),
        "micro": [
            {
                "name": s.name,
                "cpu_us": s.cpu_us,
                "store_cpu_us": s.store_cpu_us,
                "wall_us": s.wall_us,
                "what": s.what,
            }
            for s in run.micro
        ],
    }
