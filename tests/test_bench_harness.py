"""Smoke tests of the benchmark harness (bench/): the CLI end to end on two baselines, and the entry maths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not an installed package; plain `pytest` does not add the root
    sys.path.insert(0, str(ROOT))

from bench.harness import Config, Measure, RunSamples, make_entry, target_met, write_results  # noqa: E402


def test_cli_quick_writes_baseline_entries(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"keep_me": {"ratio": 1.0}}))
    names = ["baseline_asyncio_queue_roundtrip", "baseline_sqlite_wal_batch_insert"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--runs", "2", "--out", str(out), *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"keep_me", *names}  # merged, not overwritten
    for name in names:
        entry = data[name]
        for key in (
            "ratio",
            "target",
            "ours_us",
            "baseline",
            "baseline_us",
            "baseline_p99_us",
            "runs",
            "met",
        ):
            assert key in entry, (name, key)
        assert entry["ratio"] is None and entry["met"] is None and entry["ours_us"] is None
        assert entry["runs"] == 2
        assert entry["baseline_us"] > 0 and entry["baseline_p99_us"] >= entry["baseline_us"]
        assert entry["quick"] is True
    assert data["baseline_sqlite_wal_batch_insert"]["baseline_per_s"] > 0
    assert "baseline_asyncio_queue_roundtrip" in proc.stdout  # the table


def test_cli_rejects_unknown_name(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path / "r.json"), "no_such_bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert not (tmp_path / "r.json").exists()


def _measure(kind: str, target: str) -> Measure:
    return Measure(name="m", setup=lambda cfg: None, baseline="b", target=target, kind=kind)  # type: ignore[arg-type]


def test_latency_entry_ratio_overhead_and_target() -> None:
    samples = RunSamples(baseline=[[10.0, 10.0, 10.0]] * 2, ours=[[25.0, 25.0, 25.0]] * 2)
    entry = make_entry(_measure("latency", "<= 3"), samples, Config())
    assert entry["ratio"] == 2.5 and entry["overhead_us"] == 15.0 and entry["met"] is True
    assert entry["ours_us"] == 25.0 and entry["baseline_us"] == 10.0 and entry["runs"] == 2


def test_throughput_entry_ratio_is_ours_rate_over_baseline_rate() -> None:
    samples = RunSamples(baseline=[[2.0, 2.0]], ours=[[4.0, 4.0]])  # µs per row: ours is half as fast
    entry = make_entry(_measure("throughput", ">= 0.7"), samples, Config())
    assert entry["ratio"] == 0.5 and entry["met"] is False
    assert entry["baseline_per_s"] == 500_000.0 and entry["ours_per_s"] == 250_000.0
    assert "overhead_us" not in entry


def test_target_parsing_and_merge(tmp_path: Path) -> None:
    assert target_met("<= 3", 3.0) is True and target_met("< 3", 3.0) is False
    assert target_met(">= 0.7", 0.69) is False and target_met(None, 1.0) is None
    path = tmp_path / "r.json"
    write_results(path, {"a": {"x": 1}, "b": {"x": 2}})
    merged = write_results(path, {"b": {"x": 3}})
    assert merged == {"a": {"x": 1}, "b": {"x": 3}} == json.loads(path.read_text())
