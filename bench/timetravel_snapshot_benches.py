"""What snapshots cost at ~1M events, and the interval trade-off: bytes per event against latency (issue 6).

* ``timetravel_snapshots_1m``: ``to_pieces`` of the state at the head of the ~1M-event home (what the
  kernel pays on its loop every ``param.SNAPSHOT_EVERY_EVENTS`` events), against encoding the same
  state as one msgpack blob. ``extra``:

  - as built: snapshots, their bytes (manifests plus every piece any of them names, each piece once:
    pieces are shared) per event of the log; the log file's bytes per event at 100k and at 1M events
    (storage grows linearly when the two are alike);
  - ``tradeoff``: for several intervals, the snapshot bytes per event the kernel would have written,
    measured by folding the log once and taking ``to_pieces`` at every multiple of the interval (a
    piece counts once, when first made, as the blob store keeps it); and the latency of a past state
    at that interval *derived* (not measured) from costs measured here: loading the snapshot at the
    head (``load_ms``) plus the tail replayed at ``replay_us_per_event``, median tail = interval / 2,
    worst = interval. The measured latencies at the configured interval are in ``timetravel_at_1m``.

The fixture is ``bench/timetravel_home.py``'s (its docstring says what it holds).
"""

from __future__ import annotations

import gc
import hashlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import msgspec

from agentos import param
from agentos.kernel.boot import lineage_at, load_state
from agentos.state import events as ev
from agentos.state.snapshot import from_pieces, piece_hashes, to_pieces
from agentos.state.world import State, apply
from agentos.store.log import EventLog
from bench.harness import Config, Sides, benchmark
from bench.timetravel_home import EVENTS, QUICK, QUICK_SMALL, SMALL, built_home

INTERVALS = (1000, 2000, 5000, 10_000, 20_000)


def as_built(home: Path) -> dict[str, Any]:
    """Snapshots in the home and their bytes; the log file's bytes (after a WAL checkpoint)."""
    conn = apsw.Connection(str(home / "log.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        events = conn.execute("SELECT max(seq) FROM events").fetchall()[0][0]
        manifests = [bytes(m) for (m,) in conn.execute("SELECT manifest FROM snapshots")]
        hashes = sorted({h for m in manifests for h in piece_hashes(m)})
        pieces = 0
        for i in range(0, len(hashes), 500):
            batch = hashes[i : i + 500]
            marks = ",".join("?" * len(batch))
            pieces += conn.execute(f"SELECT sum(size) FROM blobs WHERE hash IN ({marks})", batch).fetchall()[
                0
            ][0]
        page = (
            conn.execute("PRAGMA page_size").fetchall()[0][0]
            * conn.execute("PRAGMA page_count").fetchall()[0][0]
        )
    finally:
        conn.close()
    snap_bytes = pieces + sum(map(len, manifests))
    return {
        "events": events,
        "snapshots": len(manifests),
        "snapshot_bytes": snap_bytes,
        "snapshot_bytes_per_event": round(snap_bytes / events, 1),
        "log_bytes": page,
        "log_bytes_per_event": round(page / events, 1),
    }


def tradeoff(home: Path, intervals: tuple[int, ...] = INTERVALS) -> dict[str, Any]:
    """Fold the log once; snapshot bytes per event per interval, and the costs the latency model uses."""
    log = EventLog(home / "log.db")
    conn = log.reader()
    try:
        lineage = lineage_at(log, conn)
        step = min(intervals)
        seen: dict[int, set[str]] = {i: set() for i in intervals}
        written = dict.fromkeys(intervals, 0)
        state, encode_cpu, n = State(), 0.0, 0
        for seq, branch, kind, version, ts, payload in log.read_folds(0, None, conn):
            apply(state, seq, ts, ev.decode(kind, version, payload), lineage.contains(branch, seq))
            if seq % step:
                continue
            c0 = time.process_time()
            manifest, pieces = to_pieces(state)
            encode_cpu, n = encode_cpu + time.process_time() - c0, n + 1
            for i in intervals:
                if seq % i == 0:
                    written[i] += len(manifest) + sum(len(d) for h, d in pieces.items() if h not in seen[i])
                    seen[i].update(pieces)
        events = state.seq
        manifest, pieces = to_pieces(state)
        load_ms, replay_us = _load_and_replay(log, conn, manifest, pieces, lineage)
    finally:
        conn.close()
        log.close()
    rows = []
    for i in intervals:
        rows.append(
            {
                "interval": i,
                "snapshot_bytes_per_event": round(written[i] / events, 1),
                "derived_median_ms": round(load_ms + i / 2 * replay_us / 1000, 1),
                "derived_worst_ms": round(load_ms + i * replay_us / 1000, 1),
                "snapshot_encode_us_per_event": round(encode_cpu / n * 1e6 / i, 2),
            }
        )
    return {
        "tradeoff": rows,
        "load_ms": round(load_ms, 1),
        "replay_us_per_event": round(replay_us, 2),
        "to_pieces_cpu_ms_mean_over_history": round(encode_cpu / n * 1000, 1),
    }


def _load_and_replay(
    log: EventLog, conn: apsw.Connection, manifest: bytes, pieces: dict[str, bytes], lineage: Any
) -> tuple[float, float]:
    """CPU ms to load the head's snapshot (pieces in memory), CPU µs per event of a 20k-event tail."""
    gc.disable()
    try:
        loads = []
        for _ in range(5):
            c0 = time.process_time()
            from_pieces(manifest, pieces.get)
            loads.append((time.process_time() - c0) * 1000)
        head = log.head()[0]
        since = max(0, head // 2 - 10_000)
        state = State()  # folded to the middle of the log, then 20k events timed (the cost is per event)
        for seq, branch, kind, version, ts, payload in log.read_folds(0, since, conn):
            apply(state, seq, ts, ev.decode(kind, version, payload), lineage.contains(branch, seq))
        c0 = time.process_time()
        n = 0
        for seq, branch, kind, version, ts, payload in log.read_folds(since, since + 20_000, conn):
            apply(state, seq, ts, ev.decode(kind, version, payload), lineage.contains(branch, seq))
            n += 1
        replay_us = (time.process_time() - c0) / n * 1e6
    finally:
        gc.enable()
    return statistics.median(loads), replay_us


@benchmark(
    "timetravel_snapshots_1m",
    target=None,
    baseline="the same state encoded as one msgpack blob (msgspec), one sha256",
    notes="ours: to_pieces(state) at the head of the ~1M-event home (paged pieces, each hashed), µs per "
    "snapshot, as the kernel takes one every snapshot_every_events events on its loop. extra: the home's "
    "snapshots as built (bytes per event), the log's bytes per event at 100k and 1M events (linear growth: "
    "alike), and the interval trade-off (snapshot bytes per event measured per interval by folding the "
    "log once; latency derived from the measured load_ms and replay_us_per_event, CPU time).",
    budget_s=600.0,
    quick_budget_s=60.0,
)
def timetravel_snapshots(cfg: Config) -> Iterator[Sides]:
    events = cfg.n(EVENTS, quick=QUICK)
    home, built = built_home(events)
    small, _ = built_home(cfg.n(SMALL, quick=QUICK_SMALL))
    extra: dict[str, Any] = {
        "snapshot_every_events": param.SNAPSHOT_EVERY_EVENTS,
        "fixture_reused": built["reused"],
        "as_built": as_built(home),
        "as_built_small": as_built(small),
    }
    extra.update(tradeoff(home))
    log = EventLog(home / "log.db")
    try:
        state, _ = load_state(log)
    finally:
        log.close()

    def baseline() -> list[float]:
        out = []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            hashlib.sha256(msgspec.msgpack.encode(state)).hexdigest()
            out.append((time.perf_counter_ns() - t0) / 1000)
        return out

    def ours() -> list[float]:
        out = []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            to_pieces(state)
            out.append((time.perf_counter_ns() - t0) / 1000)
        return out

    yield Sides(baseline=baseline, ours=ours, extra=extra)
