"""Smoke test of the kernel's benchmarks (bench/syscall_benches.py, bench/log_benches.py): two measures end to end
through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_kernel_measures_record_positive_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    names = ["syscall_roundtrip_vs_asyncio_queue", "event_append_throughput_vs_bare_inserts"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--runs", "1", "--out", str(out), *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data) == set(names)
    for name in names:
        entry = data[name]
        assert "error" not in entry, entry
        assert entry["runs"] == 1 and entry["quick"] is True
        assert entry["ours_us"] > 0 and entry["baseline_us"] > 0
        assert entry["ours_p99_us"] >= entry["ours_us"]
        assert entry["ratio"] > 0 and isinstance(entry["met"], bool)
        assert entry["notes"]

    syscall = data["syscall_roundtrip_vs_asyncio_queue"]
    assert syscall["ours_samples"] == syscall["calls_per_run"]  # every call the agent made came back
    assert syscall["ours_amortised_us"] > 0
    assert syscall["events_per_call"] < 0.1  # getpid journals only its counter

    append = data["event_append_throughput_vs_bare_inserts"]
    assert append["kind"] == "throughput"
    assert append["ours_per_s"] > 0 and append["baseline_per_s"] > 0 and append["pipelined_per_s"] > 0
    assert abs(append["payload_bytes_ours"] - append["payload_bytes_baseline"]) < 20  # same-sized rows
