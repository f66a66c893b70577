"""Questions asked of a ~1M-event history: ``agentos bisect`` and ``agentos query --at`` (issue 6).

The fixture, the kernel on a copy of it and the timing helpers are ``bench/timetravel_home.py``'s; the
inspect and rewind measures are in ``bench/timetravel_benches.py`` (its docstring lists them all).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

from agentos.kernel import bisect as bisect_mod
from agentos.state.world import State
from bench import baselines
from bench.harness import Config, Sides, benchmark
from bench.query_benches import GROUP_BY, _bare, _rounded
from bench.timetravel_home import EVENTS, QUICK, call, rig_on

FIRST_NOTE_AFTER = 0.6  # bisect looks for a file first made about here in the log


def _target_file(k: Any) -> tuple[str, int]:
    """(path, seq of its vfs.created) of the first note file made after FIRST_NOTE_AFTER of the log:
    notes are never removed, so "it exists" is monotone, as bisect assumes."""
    after = int(k.head_seq * FIRST_NOTE_AFTER)
    seq, name, ino = k.reader.execute(
        "SELECT seq, json_extract(payload, '$.name'), json_extract(payload, '$.ino') FROM events"
        " WHERE kind = 'vfs.created' AND seq > ? AND json_extract(payload, '$.name') LIKE 'note%'"
        " ORDER BY seq LIMIT 1",
        (after,),
    ).fetchall()[0]
    path = k.state.world.vfs.path_of(ino)
    if path is None or not path.endswith(name):
        raise RuntimeError(f"note {name} (ino {ino}) is not where the workload left it: {path}")
    return path, seq


@benchmark(
    "timetravel_bisect_1m",
    target=None,
    baseline="the same question asked of the log directly: min(seq) of the file's vfs.created, in SQL",
    notes="ours: agentos bisect --good 1000 --bad <head> --sql \"SELECT 1 FROM files WHERE path = '<p>'\" "
    "through Kernel.call and the parked-call reply, over the ~1M-event home: the first event at which a "
    "given file exists (one first made ~60% into the log; files is state-backed, so each probe rebuilds "
    "the state there: Past.state_at). µs per bisect; checked against the vfs.created seq. extra: probes, "
    "ms per probe; the Python-predicate form through the API (bisect.bisect on Past.state_at).",
    budget_s=240.0,
    quick_budget_s=30.0,
)
def timetravel_bisect(cfg: Config) -> Iterator[Sides]:
    with rig_on(cfg.n(EVENTS, quick=QUICK)) as (rig, runner, info):
        k = rig.k
        path, made = _target_file(k)
        good, bad = 1000, k.committer.durable_seq
        sql = f"SELECT 1 FROM files WHERE path = '{path}'"
        extra: dict[str, Any] = {**info, "good": good, "bad": bad, "first_bad_expected": made}

        def baseline() -> list[float]:
            name = path.rsplit("/", 1)[1]
            t0 = time.perf_counter_ns()
            got = k.reader.execute(
                "SELECT min(seq) FROM events WHERE kind = 'vfs.created' AND json_extract(payload, '$.name') = ?",
                (name,),
            ).fetchall()[0][0]
            us = (time.perf_counter_ns() - t0) / 1000
            if got != made:
                raise RuntimeError(f"the log says {got}, not {made}")
            return [us]

        def ours() -> list[float]:
            k.past.kept.clear()
            t0 = time.perf_counter_ns()
            out = runner.run(
                call(rig, rig.person, "bisect", {"sql": sql, "good": str(good), "timeout": 60.0})
            )
            us = (time.perf_counter_ns() - t0) / 1000
            if out["first_bad"] != made:
                raise RuntimeError(f"bisect found {out['first_bad']}, not {made}")
            ms = [p["ms"] for p in out["probes"]]
            extra.update(
                probes=len(ms),
                probe_median_ms=round(statistics.median(ms), 2),
                probe_worst_ms=round(max(ms), 2),
                bisect_ms=round(us / 1000, 1),
            )
            k.past.kept.clear()

            def exists(state: State) -> bool:
                fs = state.world.vfs
                try:
                    return fs.lookup(path, follow=False) is not None
                except Exception:  # noqa: BLE001 - ENOENT on the way: not there yet
                    return False

            t0 = time.perf_counter_ns()
            py = bisect_mod.bisect(k, good, bad, exists)
            extra.update(
                python_bisect_ms=round((time.perf_counter_ns() - t0) / 1e6, 1),
                python_probes=len(py.probes),
                python_first_bad_ok=py.first_bad == made,
            )
            return [us]

        yield Sides(baseline=baseline, ours=ours, extra=extra)


@benchmark(
    "timetravel_query_at_1m",
    target=None,
    baseline="the same GROUP BY on a plain SQLite table (WAL, apsw) of the same rows, WHERE seq <= the point",
    notes="ours: agentos query --at <mid> of SELECT pid, name, count(*), avg(duration_ms), max(duration_ms) "
    "FROM syscalls GROUP BY pid, name through Kernel.call and the parked-call reply, over the ~1M-event "
    "home (its sys.done events: syscall_events), the point half-way: a read-only connection, TEMP views "
    "along the lineage, the guard, a worker thread, JSON payloads read with json_extract. Baseline: the "
    "same query on an open connection to a table (seq, ts, pid, name, ok, duration_ms) holding those rows, "
    "columns extracted, WHERE seq <= mid. Answers compared. One sample per run: µs per query. "
    "bench/query_benches.py measures the same on a log of sys.done only.",
    budget_s=240.0,
    quick_budget_s=30.0,
)
def timetravel_query_at(cfg: Config) -> Iterator[Sides]:
    with rig_on(cfg.n(EVENTS, quick=QUICK)) as (rig, runner, info), baselines.short_tempdir("atq") as tmp:
        k = rig.k
        rows = k.reader.execute(
            "SELECT seq, ts, pid, json_extract(payload, '$.call'), json_type(payload, '$.error') IS NULL,"
            " coalesce(json_extract(payload, '$.duration_ns'), 0) / 1e6 FROM events WHERE kind = 'sys.done'"
            " ORDER BY seq"
        ).fetchall()
        mid = k.head_seq // 2
        bare = _bare(tmp / "bare.db", rows)
        sql_at = GROUP_BY.format(f" WHERE seq <= {mid}")
        want = _rounded(bare.execute(sql_at).fetchall())
        extra: dict[str, Any] = {**info, "syscall_events": len(rows), "at": mid}
        live: list[float] = []
        try:

            def baseline() -> list[float]:
                t0 = time.perf_counter_ns()
                bare.execute(sql_at).fetchall()
                return [(time.perf_counter_ns() - t0) / 1000]

            def ours() -> list[float]:
                t0 = time.perf_counter_ns()
                got = runner.run(
                    call(
                        rig,
                        rig.person,
                        "query",
                        {"sql": GROUP_BY.format(""), "at": str(mid), "timeout": 60.0},
                    )
                )
                us = (time.perf_counter_ns() - t0) / 1000
                if _rounded(got["rows"]) != want:
                    raise RuntimeError("query --at answered other rows than the bare table")
                t0 = time.perf_counter_ns()
                runner.run(call(rig, rig.person, "query", {"sql": GROUP_BY.format(""), "timeout": 60.0}))
                live.append((time.perf_counter_ns() - t0) / 1000)
                extra["ours_now_ms"] = round(statistics.median(live) / 1000, 1)
                return [us]

            yield Sides(baseline=baseline, ours=ours, extra=extra)
        finally:
            bare.close()
