"""``agentos query`` over the log against the same query on a bare SQLite table (issue 6).

* ``query_groupby_100k_syscalls_vs_bare_sqlite``: ``SELECT pid, name, count(*), avg(duration_ms),
  max(duration_ms) FROM syscalls GROUP BY pid, name`` with ``--at`` the head, over N ``sys.done`` events
  (N = 100,000; ``AGENTOS_BENCH_QUERY_EVENTS`` for more, e.g. 1000000), against the same GROUP BY on a
  plain table holding the same rows with the columns already extracted. µs per query.

Ours is a kernel booted in this process, driven through ``Kernel.call`` as the socket server drives a
session, the answer awaited as the server awaits a parked call: the point resolved, a fresh read-only
connection opened, the TEMP views made, the guard on, the query run on a worker thread, the answer
back on the loop. The log holds what an agent's calls leave: each ``sys.done`` a JSON payload read by
``json_extract`` in the view, among other events. ``extra`` has the same query without ``--at``, and
with ``--at`` half-way against the baseline's ``WHERE seq <= mid`` (past-point queries scan only the
prefix: the events_kind index is (kind, seq)).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw

from agentos import param
from agentos.kernel.calls import Block, Caller
from agentos.kernel.kernel import Kernel
from agentos.state import events as ev
from agentos.store.home import Home
from bench import baselines
from bench.harness import Config, Sides, benchmark

EVENTS = int(os.environ.get("AGENTOS_BENCH_QUERY_EVENTS", "100000"))
AGENTS = 16
CALLS = ["read", "write", "open", "close", "stat", "time", "sleep", "spawn", "wait", "readdir"]
GROUP_BY = "SELECT pid, name, count(*), avg(duration_ms), max(duration_ms) FROM syscalls{} GROUP BY pid, name"


async def _kernel(home: Path) -> tuple[Kernel, Caller, list[int]]:
    k = Kernel(Home(home))
    k.boot()
    k.start()
    pid = k.state.ledger.next_pid
    k.emit(ev.ProcSpawned(pid=pid, ppid=param.INIT_PID, name="bench", kind="session"), pid)
    k.emit(ev.ProcStarted(pid=pid), pid)
    agents = []
    for _ in range(AGENTS):
        a = k.state.ledger.next_pid
        k.emit(ev.ProcSpawned(pid=a, ppid=pid, name=f"agent{a}", kind="agent"), pid)
        k.emit(ev.ProcStarted(pid=a), a)
        agents.append(a)
    await k.committer.durable(k.head_seq)
    return k, Caller(pid=pid, kind="session"), agents


async def _fill(k: Kernel, agents: list[int], n: int) -> list[tuple[Any, ...]]:
    """``n`` sys.done events as agents' calls leave them (the stepper's emit); the same rows for the
    baseline's table, read back from the log: (seq, ts, pid, name, ok, duration_ms)."""
    rng = random.Random(6)
    counters = dict.fromkeys(agents, 0)
    for i in range(n):
        pid, call = rng.choice(agents), rng.choice(CALLS)
        n_call, counters[pid] = counters[pid], counters[pid] + 1
        failed = rng.random() < 0.02
        duration = int(rng.expovariate(1 / 200_000))  # ~0.2 ms mean, a long tail
        done = ev.SyscallDone(
            pid=pid,
            epoch=0,
            task=0,
            n=n_call,
            call=call,
            args_digest=f"{rng.getrandbits(64):016x}",
            result=None if failed else rng.randrange(1 << 20),
            error={"code": "ENOENT", "category": "not-found", "message": "no such file"} if failed else None,
            duration_ns=duration,
        )
        k.emit(done, pid, syscall=f"{pid}:0:0:{n_call}")
        if i % 5000 == 4999:
            await k.committer.durable(k.head_seq)
    await k.committer.durable(k.head_seq)
    return k.reader.execute(
        "SELECT seq, ts, pid, json_extract(payload, '$.call'), json_type(payload, '$.error') IS NULL,"
        " coalesce(json_extract(payload, '$.duration_ns'), 0) / 1e6 FROM events WHERE kind = 'sys.done' ORDER BY seq"
    ).fetchall()


def _bare(path: Path, rows: list[tuple[Any, ...]]) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode = wal").fetchall()
    conn.execute(
        "CREATE TABLE syscalls(seq INTEGER PRIMARY KEY, ts INTEGER, pid INTEGER, name TEXT, ok INTEGER, duration_ms REAL)"
    )
    with conn:
        conn.executemany("INSERT INTO syscalls VALUES(?,?,?,?,?,?)", rows)
    return conn


async def _query(k: Kernel, c: Caller, **args: Any) -> dict[str, Any]:
    out = k.call(c, "query", args)
    assert isinstance(out, Block)
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def reply(result: Any, exc: BaseException | None) -> None:
        fut.set_exception(exc) if exc is not None else fut.set_result(result)

    k.park(object(), c, out, reply)
    return await fut


def _rounded(rows: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows)


def _us(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1000


@benchmark(
    "query_groupby_100k_syscalls_vs_bare_sqlite",
    target=None,
    baseline="the same GROUP BY on a plain SQLite table (WAL, apsw) holding the same rows, columns extracted",
    notes="ours: agentos query --at <head> of SELECT pid, name, count(*), avg(duration_ms), max(duration_ms) "
    "FROM syscalls GROUP BY pid, name, through Kernel.call and the parked-call reply, over N sys.done events "
    "(16 agents, 10 call names, 2% errors, exponential durations; N = 100k, AGENTOS_BENCH_QUERY_EVENTS for "
    "more) in the kernel's log (synchronous=NORMAL, WAL): a read-only connection per query, TEMP views, the "
    "authorizer and progress handler, a worker thread, JSON payloads read with json_extract. Baseline: the "
    "same query on an already open connection to a table (seq, ts, pid, name, ok, duration_ms) holding the "
    "same rows. One sample per run: µs per query. extra: ours without --at; ours --at half-way against the "
    "baseline's WHERE seq <= mid; the log's events.",
    budget_s=60.0,
    quick_budget_s=10.0,
)
def query_groupby(cfg: Config) -> Iterator[Sides]:
    n = cfg.n(EVENTS, quick=10_000)
    extra: dict[str, Any] = {"syscall_events": n}
    live: list[float] = []
    half_ours: list[float] = []
    half_base: list[float] = []
    with baselines.short_tempdir("abq") as tmp, asyncio.Runner() as runner:
        k, c, agents = runner.run(_kernel(tmp / "home"))
        bare = None
        try:
            rows = runner.run(_fill(k, agents, n))
            bare = _bare(tmp / "bare.db", rows)
            head, mid = str(k.head_seq), rows[len(rows) // 2][0]
            extra["log_events"] = k.head_seq
            want = _rounded(bare.execute(GROUP_BY.format("")).fetchall())

            def baseline() -> list[float]:
                t0 = time.perf_counter_ns()
                bare.execute(GROUP_BY.format("")).fetchall()
                us = _us(t0)
                t0 = time.perf_counter_ns()
                bare.execute(GROUP_BY.format(f" WHERE seq <= {mid}")).fetchall()
                half_base.append(_us(t0))
                extra["baseline_at_half_us"] = round(statistics.median(half_base), 1)
                return [us]

            def ours() -> list[float]:
                t0 = time.perf_counter_ns()
                got = runner.run(_query(k, c, sql=GROUP_BY.format(""), at=head))
                us = _us(t0)
                if _rounded(got["rows"]) != want:
                    diff = set(_rounded(got["rows"])) ^ set(want)
                    raise RuntimeError(
                        f"the query answered other rows than the bare table: {sorted(diff)[:4]}"
                    )
                t0 = time.perf_counter_ns()
                runner.run(_query(k, c, sql=GROUP_BY.format("")))
                live.append(_us(t0))
                t0 = time.perf_counter_ns()
                runner.run(_query(k, c, sql=GROUP_BY.format(""), at=str(mid)))
                half_ours.append(_us(t0))
                extra["ours_now_us"] = round(statistics.median(live), 1)
                extra["ours_at_half_us"] = round(statistics.median(half_ours), 1)
                extra["at_half_ratio"] = round(statistics.median(half_ours) / statistics.median(half_base), 2)
                return [us]

            yield Sides(baseline=baseline, ours=ours, extra=extra)
        finally:
            if bare is not None:
                bare.close()
            runner.run(k.close(clean=False))
