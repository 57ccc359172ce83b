"""`make bench` (`python -m bench`): clerk-sync against the tutorial-style peer, on this machine.

    python -m bench                  # everything; writes bench/results/YYYY-MM-DD.{md,json}
    python -m bench --rounds 1 --deliveries 100 --output /tmp/quick.md   # a quick look
    python -m bench profile          # pyinstrument profiles into bench/profiles/
    python -m bench driver           # client CPU per command: motor vs PyMongo async (driver.py)
    python -m bench console          # the console's list over 100,000 deliveries (console.py)

MongoDB: the embedded store that `clerk-sync serve` starts when MONGODB_URL is unset (and one
more for the peer), or the server at BENCH_MONGODB_URL (each server gets its own database,
dropped afterwards). See docs/performance.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import macro, micro, report
from bench.memstore import MemoryProcess
from clerk_sync.storage.embedded import EmbeddedProcess

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULTS = {"rounds": 5, "deliveries": 400, "levels": "1,16,64", "micro": 300, "count": 300}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", nargs="?", choices=("all", "profile", "driver", "console"), default="all"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULTS["rounds"],
        help="interleaved rounds; the CPU ratio is their median (default 5)",
    )
    parser.add_argument("--deliveries", type=int, default=DEFAULTS["deliveries"])
    parser.add_argument("--levels", default=DEFAULTS["levels"], help="sender counts, e.g. 1,16,64")
    parser.add_argument("--micro-deliveries", type=int, default=DEFAULTS["micro"])
    parser.add_argument("--count-deliveries", type=int, default=DEFAULTS["count"])
    parser.add_argument(
        "--store",
        choices=("sqlite", "memory"),
        default="sqlite",
        help="without BENCH_MONGODB_URL: the SQLite embedded store (as serve starts it) or "
        "one in-memory mongoeco store per server",
    )
    parser.add_argument(
        "--clerk-sync-server",
        choices=("granian", "hypercorn", "uvicorn"),
        default="granian",
        help="granian: `clerk-sync serve` as shipped; hypercorn: `serve --server hypercorn`; "
        "uvicorn: the same app under bench/serve_uvicorn.py (uvloop, httptools)",
    )
    parser.add_argument(
        "--compare-server",
        choices=("none", "granian", "hypercorn", "uvicorn"),
        default="hypercorn",
        help="also run clerk-sync under this HTTP server in the same rounds (its latency "
        "target compares with it); none: only clerk-sync and the peer",
    )
    parser.add_argument("--commands", type=int, default=2000, help="driver: per client and round")
    parser.add_argument(
        "--console-deliveries", type=int, default=100_000, help="console: deliveries stored"
    )
    parser.add_argument("--output", type=Path, help="markdown file (default: dated, in results/)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _micro(
    workdir: Path, mongodb_url: str | None, count: int, *, memory: bool
) -> list[micro.Stage]:
    store = None
    if not mongodb_url:
        store = MemoryProcess(workdir) if memory else EmbeddedProcess(workdir / "micro")
        mongodb_url = store.start()
    database = f"bench_micro_{int(time.time())}"
    pid = store.process.pid if store is not None and store.process is not None else None
    try:
        return micro.run(mongodb_url, database, count, workdir, pid)
    finally:
        if store is not None:
            store.stop()
        else:
            from pymongo import MongoClient

            with MongoClient(mongodb_url) as client:
                client.drop_database(database)


def _store_description(mongodb_url: str | None, memory: bool) -> str:
    if mongodb_url:
        return "BENCH_MONGODB_URL (an external server; one database per server)"
    if memory:
        return "one in-memory mongoeco wire server per server (bench/memstore.py)"
    return "the embedded mongoeco wire server over SQLite that `clerk-sync serve` starts (one each)"


def run_all(args: argparse.Namespace, argv: list[str]) -> str:
    mongodb_url = os.environ.get("BENCH_MONGODB_URL") or None
    memory = args.store == "memory" and not mongodb_url
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="clerk-sync-bench-"))
    info = report.machine(os.getloadavg())
    _log(f"work directory {workdir}")
    try:
        result = macro.run_rounds(
            workdir,
            rounds=args.rounds,
            deliveries=args.deliveries,
            levels=levels,
            mongodb_url=mongodb_url,
            memory=memory,
            http_server=args.clerk_sync_server,
            compare=_compared(args),
            progress=_log,
        )
        result.commands = macro.count_commands(
            workdir,
            deliveries=args.count_deliveries,
            mongodb_url=mongodb_url,
            memory=memory,
            progress=_log,
        )
        _log("pipeline micro-benchmark")
        stages = _micro(workdir, mongodb_url, args.micro_deliveries, memory=memory)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    run = report.Run(
        command=shlex.join(["python", "-m", "bench", *argv]),
        store=_store_description(mongodb_url, memory),
        http_server=args.clerk_sync_server,
        compare=_compared(args),
        rounds=args.rounds,
        deliveries=args.deliveries,
        levels=levels,
        macro=result,
        micro=stages,
        micro_deliveries=args.micro_deliveries,
        machine=info,
    )
    date = time.strftime("%Y-%m-%d")
    output: Path = args.output or RESULTS / f"{date}.md"
    text = report.render(run, date, previous_results(output.parent, run))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    results = report.as_dict(run) | {"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    output.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    _log(f"wrote {output} and {output.with_suffix('.json').name}")
    return text


def _console(args: argparse.Namespace, argv: list[str]) -> str:
    """The console benchmark; the in-memory store unless --store sqlite or BENCH_MONGODB_URL."""
    from bench import console

    mongodb_url = os.environ.get("BENCH_MONGODB_URL") or None
    memory = args.store == "memory" or "--store" not in argv
    workdir = Path(tempfile.mkdtemp(prefix="clerk-sync-bench-console-"))
    store = None
    if not mongodb_url:
        store = MemoryProcess(workdir) if memory else EmbeddedProcess(workdir / "console")
        mongodb_url = store.start()
    try:
        text = console.run(mongodb_url, args.console_deliveries, _log)
    finally:
        if store is not None:
            store.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    store_name = _store_description(os.environ.get("BENCH_MONGODB_URL"), memory)
    info = report.machine(os.getloadavg())
    machine = "; ".join(f"{k}: {v}" for k, v in info.items())
    text += f"\nStore: {store_name}.\n\nMachine: {machine}.\n\n"
    text += f"Command: `python -m bench {shlex.join(argv)}`\n"
    path = console.write(text, args.output.parent if args.output else RESULTS)
    _log(f"wrote {path}")
    return text


def _compared(args: argparse.Namespace) -> str | None:
    name: str = args.compare_server
    return None if name in ("none", args.clerk_sync_server) else name


def previous_results(folder: Path, run: report.Run) -> report.Baseline | None:
    """The newest results file in `folder` (the one about to be overwritten included) of the
    same store and HTTP server as `run`, as the baseline of its latency target.

    Newest by the time the run finished, as the file records it (`finished`), or by the date its
    name starts with for files written before that field; a fresh clone gives every file the
    same modification time, so that only breaks ties between older files of one day."""
    newest: tuple[tuple[str, float], report.Baseline] | None = None
    for path in folder.glob("*.json"):
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(results, dict) or (results.get("store"), results.get("http_server")) != (
            run.store,
            run.http_server,
        ):
            continue
        p99 = report.p99_at_16(results)
        if p99 is None:
            continue
        key = (_finished(path, results), path.stat().st_mtime)
        if newest is None or key > newest[0]:
            newest = (key, report.Baseline(path.name, p99))
    return newest[1] if newest else None


def _finished(path: Path, results: dict[str, Any]) -> str:
    """When the run of a results file finished, as an ISO 8601 UTC time that sorts as text."""
    finished = results.get("finished")
    if isinstance(finished, str):
        return finished
    dated = re.match(r"\d{4}-\d{2}-\d{2}", path.name)
    return dated.group(0) if dated else ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _arguments(argv)
    started = time.monotonic()
    if args.what == "driver":
        from bench import driver

        rounds = args.rounds if "--rounds" in argv else 5
        print(
            driver.run(
                os.environ.get("BENCH_MONGODB_URL") or None,
                commands=args.commands,
                rounds=rounds,
                levels=[int(x) for x in args.levels.split(",") if x.strip()]
                if "--levels" in argv
                else [1, 16],
                store=args.store if "--store" in argv else "memory",
            )
        )
    elif args.what == "console":
        print(_console(args, argv))
    elif args.what == "profile":
        from bench import hotpath

        for path in hotpath.write_profiles(HERE / "profiles", progress=_log):
            _log(f"wrote {path}")
    else:
        print(run_all(args, argv))
    _log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
