"""Which earlier results file `make bench` compares its p99 with.

A fresh clone gives every committed results file the same modification time, so the choice must
come from what the files say, not from the file system."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from bench.__main__ import previous_results

STORE = "the embedded mongoeco wire server over SQLite that `clerk-sync serve` starts (one each)"


def write(folder: Path, name: str, p99: float, **extra: object) -> Path:
    path = folder / name
    phase = {"server": "clerk-sync", "concurrency": 16, "p99_ms": p99}
    results = {"store": STORE, "http_server": "hypercorn", "macro": {"phases": [phase]}}
    path.write_text(json.dumps(results | extra))
    return path


def run(http_server: str = "hypercorn") -> SimpleNamespace:
    return SimpleNamespace(store=STORE, http_server=http_server)


def test_newest_by_recorded_finish_time_not_modification_time(tmp_path: Path) -> None:
    newer = write(tmp_path, "2026-12-03.json", 700.0, finished="2026-12-03T13:20:00Z")
    older = write(tmp_path, "2026-12-03-b.json", 900.0, finished="2026-12-03T09:00:00Z")
    os.utime(newer, (1_000, 1_000))
    os.utime(older, (2_000, 2_000))

    baseline = previous_results(tmp_path, run())

    assert baseline is not None
    assert (baseline.name, baseline.p99_ms) == ("2026-12-03.json", 700.0)


def test_files_without_a_finish_time_are_ordered_by_the_date_in_their_name(
    tmp_path: Path,
) -> None:
    old = write(tmp_path, "2026-11-27.json", 606.4)
    new = write(tmp_path, "2026-12-02.json", 699.0)
    os.utime(new, (1_000, 1_000))
    os.utime(old, (2_000, 2_000))

    baseline = previous_results(tmp_path, run())

    assert baseline is not None
    assert baseline.name == "2026-12-02.json"


def test_other_servers_and_files_without_the_figure_are_not_baselines(tmp_path: Path) -> None:
    write(tmp_path, "2026-12-02.json", 699.0)
    (tmp_path / "2026-12-04.json").write_text(json.dumps({"store": STORE}))
    (tmp_path / "2026-12-05.json").write_text("not json")

    assert previous_results(tmp_path, run("uvicorn")) is None
    baseline = previous_results(tmp_path, run())
    assert baseline is not None
    assert baseline.name == "2026-12-02.json"
