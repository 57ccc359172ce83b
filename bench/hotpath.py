"""pyinstrument profiles of the hot path, written as text into bench/profiles/.

    python -m bench profile

- `pipeline.txt`: `Receiver.receive` for fresh deliveries, in process (no HTTP), with the store
  in another process: the pipeline's own Python frames (awaits on MongoDB shown as such).
- `serve.txt`: the main thread of `clerk-sync serve` (via bench/serve_instrumented.py), sampled
  only while 16 senders post deliveries over HTTP: hypercorn, Quart, the pipeline and logging
  together. Time in `epoll.poll` is the event loop waiting; motor's I/O threads are not sampled
  (their CPU shows in the micro-benchmark's figures instead).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from signal import SIGUSR1, SIGUSR2

from pyinstrument import Profiler

from bench import macro, micro, servers
from bench.deliveries import make_plan, write_plan
from bench.memstore import MemoryProcess

PIPELINE_DELIVERIES = 400
SERVE_DELIVERIES = 600


async def _profile_pipeline(url: str, workdir: Path, count: int) -> str:
    runtime = micro.build_runtime(url, "bench_profile", workdir / "profile.log")
    await runtime.start(monitor=False)
    try:
        batch = micro.fresh(count, seed=77)
        profiler = Profiler(interval=0.0002, async_mode="enabled")
        with profiler:
            for delivery, headers in batch:
                await runtime.receiver.receive(delivery.body, headers)
    finally:
        await runtime.stop()
    return render(profiler)


FLAT_LINES = 45


def render(profiler: Profiler) -> str:
    """The call tree (library frames folded), then the functions with the most self time."""
    tree = profiler.output_text(unicode=True, color=False, show_all=False)
    flat = profiler.output_text(unicode=True, color=False, show_all=True, flat=True)
    top = [line for line in flat.splitlines() if line[:1].isdigit()][:FLAT_LINES]
    title = f"Top {FLAT_LINES} functions by self time (seconds, all frames):"
    return "\n".join([tree.rstrip(), "", title, *top, ""])


def _header(title: str, how: str) -> str:
    date = time.strftime("%Y-%m-%d")
    return f"# {title}\n# produced by `python -m bench profile` ({how}), {date}\n\n"


def profile_pipeline(workdir: Path, count: int = PIPELINE_DELIVERIES) -> str:
    store = MemoryProcess(workdir)
    url = store.start()
    try:
        text = asyncio.run(_profile_pipeline(url, workdir, count))
    finally:
        store.stop()
    how = f"{count} fresh deliveries through Receiver.receive, in-memory mongoeco store"
    return _header("clerk-sync pipeline, in process", how) + text


def profile_serve(workdir: Path, count: int = SERVE_DELIVERIES) -> str:
    out = workdir / "serve-profile.txt"
    store = MemoryProcess(workdir)
    store.start()
    server = servers.clerk_sync(
        workdir / "serve",
        mongodb_url=None,
        database="bench_profile",
        store=store,
        BENCH_PROFILE=str(out),
        CLERK_SYNC_BENCH_COMMAND_COUNTS=str(workdir / "serve-commands.json"),
    )
    server.start()
    try:
        warm = write_plan(make_plan(100, seed=79, now_ms=int(time.time() * 1000)), workdir / "w")
        macro.run_phase(server, warm, 16)
        plan = write_plan(make_plan(count, seed=78, now_ms=int(time.time() * 1000)), workdir / "p")
        macro.run_phase(
            server, plan, 16, around=(_signal(server, SIGUSR1), _signal(server, SIGUSR2))
        )
    finally:
        server.stop()
    how = f"{count} deliveries from 16 senders over HTTP, in-memory mongoeco store"
    text = _header("clerk-sync serve, main thread", how) + out.read_text()
    return text


def _signal(server: servers.Server, signum: int) -> Callable[[], None]:
    def send() -> None:
        assert server.process is not None
        server.process.send_signal(signum)
        time.sleep(0.2)  # let the handler run before the load starts / the report is read

    return send


def write_profiles(directory: Path, progress: Callable[[str], object] = print) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="clerk-sync-profile-") as tmp:
        for name, make in (("pipeline", profile_pipeline), ("serve", profile_serve)):
            progress(f"profiling {name}")
            path = directory / f"{name}.txt"
            workdir = Path(tmp) / name
            workdir.mkdir()
            path.write_text(make(workdir))
            written.append(path)
    return written
