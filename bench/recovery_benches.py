"""kill -9 recovery: ``agentos boot`` on a home killed mid-run, until it serves and every live agent resumed.

* ``kill9_recovery``: ``agentos boot`` on a home killed with ~100k events after its last snapshot, until it
  serves and until every live agent has resumed, against a bare interpreter start (``bench.baselines``).

The entry's ``notes`` says exactly what is timed. Agents' sources are written to a short temporary
directory; every home is removed afterwards. The syscall round trips are in ``bench/syscall_benches.py``,
the event log's measures in ``bench/log_benches.py``, the helpers they share in
``bench/kernel_support.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw

from agentos.errors import AgentOSError
from agentos.sdk.client import Client
from agentos.store.home import Home
from bench import baselines
from bench.harness import Config, Sides, benchmark
from bench.kernel_support import write_agent

# --------------------------------------------------------------------------------------------------------
# The workload and the crashed home (untimed setup)
# --------------------------------------------------------------------------------------------------------

WORKLOAD_AGENT = '''
"""Benchmark workload: agents that write to their console, sleep, read the clock, spawn and wait."""
from agentos import sdk


async def chatty(label, iterations):
    pid = await sdk.getpid()
    for i in range(int(iterations)):
        await sdk.write_console(f"[{label} {pid}] step {i}: working on item {i % 97}\\n")
        if i % 4 == 0:
            await sdk.sleep(0.0005)
        if i % 16 == 0:
            await sdk.time()
    await sdk.write_console(f"[{label}] done\\n")
    return 0


async def sleeper(seconds):
    await sdk.write_console(f"sleeping {seconds}s\\n")
    await sdk.sleep(float(seconds))
    return 0


async def parent(children, iterations):
    pids = [await sdk.spawn("workload.py:chatty", f"child-{i}", iterations) for i in range(int(children))]
    await sdk.write_console(f"spawned {pids}\\n")
    for _ in pids:
        await sdk.wait()
    return 0
'''

# Runs the kernel program in this process, as ``agentos boot`` execs it (the home's PYTHONHASHSEED is set
# by the caller, so there is no re-exec), but with snapshots switched off, so that the whole log becomes
# the tail after kill -9.
_NO_SNAPSHOT_KERNEL = (
    "import sys; from pathlib import Path; from agentos import param; "
    "param.SNAPSHOT_EVERY_EVENTS = 10**15; "
    "from agentos.runtime.__main__ import main; "
    "sys.exit(main(['--home', sys.argv[1]]))"
)
_FOREVER = str(10**9)


def _start_quietly(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A kernel (or `agentos boot`) in its own session, output discarded."""
    return subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _connect_when_serving(home: Path, proc: subprocess.Popen[bytes], timeout: float) -> Client:
    """Poll (every ~0.5 ms) until a session opens on the kernel's socket; the first hello reply is 'serving'."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log = home / "kernel.log"
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            raise RuntimeError(f"the kernel exited with {proc.returncode}: " + " | ".join(tail))
        try:
            return Client.connect(home, "bench", timeout=timeout)
        except (AgentOSError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel served on {home} within {timeout}s") from None
            time.sleep(0.0005)


def _kernel_env(pycache: Path) -> dict[str, str]:
    """The environment of the kernels of this measure: as the bench's, but with a bytecode cache of their own.

    A user's ``agentos boot`` has one (pip compiles on install; an editable install writes ``__pycache__`` on
    first import). This sandbox sets ``PYTHONDONTWRITEBYTECODE=1``, which would make every boot compile
    agentos from source; a private ``PYTHONPYCACHEPREFIX`` gives the kernels a cache without touching the
    checkout. ``PYTHONHASHSEED`` is removed, as in a user's shell, so ``agentos boot`` re-execs itself with
    the home's seed.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _build_crashed_home(
    home: Path, agents_dir: Path, tail: int, finished_iterations: int, env: dict[str, str]
) -> dict[str, Any]:
    """Run a workload on a kernel that takes no snapshot until the log holds ``tail`` events; kill -9 it."""
    h = Home(home)
    h.create()
    env = {**env, "PYTHONHASHSEED": str(h.hash_seed())}
    workload = write_agent(agents_dir, "workload.py", WORKLOAD_AGENT)
    proc = _start_quietly([sys.executable, "-c", _NO_SNAPSHOT_KERNEL, str(home)], env)
    try:
        with _connect_when_serving(home, proc, 60.0) as c:
            finished = [
                c.call("spawn", target=f"{workload}:chatty", argv=[f"f{i}", str(finished_iterations)])
                for i in range(3)
            ]
            for i in range(4):
                c.call("spawn", target=f"{workload}:chatty", argv=[f"c{i}", _FOREVER], name=f"chatty-{i}")
            c.call("spawn", target=f"{workload}:parent", argv=["2", _FOREVER], name="parent")
            for i in range(2):
                c.call("spawn", target=f"{workload}:sleeper", argv=["3600"], name=f"sleeper-{i}")
            for pid in finished:
                c.call("wait", pid=pid, timeout=300.0)
            deadline = time.monotonic() + 600
            while c.call("status")["seq"] < tail:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the workload did not reach {tail} events")
                time.sleep(0.01)
            live = [p["pid"] for p in c.call("ps") if p["kind"] == "agent" and p["state"] != "zombie"]
            _kill9(proc)
    finally:
        _kill9(proc)
    return {"live_agents": sorted(live), "finished_agents": len(finished)}


def _inspect_log(home: Path) -> dict[str, Any]:
    """Head, snapshots and event mix of a crashed home, read from a throw-away copy (opening it would
    checkpoint the WAL of the original)."""
    with baselines.short_tempdir("abi") as tmp:
        copy = tmp / "home"
        shutil.copytree(home, copy, ignore=shutil.ignore_patterns("kernel.sock", "kernel.log"))
        wal_bytes = (copy / "log.db-wal").stat().st_size if (copy / "log.db-wal").exists() else 0
        conn = apsw.Connection(str(copy / "log.db"))
        try:
            head = conn.execute("SELECT max(seq) FROM events").fetchall()[0][0]
            snap = conn.execute("SELECT max(seq) FROM snapshots").fetchall()[0][0] or 0
            kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY 2 DESC"))
        finally:
            conn.close()
        db_bytes = (copy / "log.db").stat().st_size
    return {
        "head_seq": head,
        "last_snapshot_seq": snap,
        "tail_events": head - snap,
        "event_mix": kinds,
        "db_bytes": db_bytes,
        "wal_bytes_at_kill": wal_bytes,
    }


# --------------------------------------------------------------------------------------------------------
# Timed recovery
# --------------------------------------------------------------------------------------------------------


def _recover_once(
    pristine: Path, head_seq: int, live: set[int], env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """Copy the crashed home, run ``agentos boot`` on it; time until it serves and until ``live`` resumed."""
    with baselines.short_tempdir("abr") as tmp:
        work = tmp / "home"
        shutil.copytree(pristine, work, ignore=shutil.ignore_patterns("kernel.sock", "kernel.log"))
        clock = time.perf_counter_ns
        t0 = clock()
        proc = _start_quietly([sys.executable, "-m", "agentos", "boot", "--home", str(work)], env)
        try:
            with _connect_when_serving(work, proc, timeout) as c:
                t_serving = clock()
                replayed: dict[int, int] = {}
                for item in c.stream("events", since=head_seq, follow=True, kind="proc.resumed"):
                    replayed[item["payload"]["pid"]] = item["payload"]["replayed_calls"]
                    if live <= replayed.keys():
                        break
                t_resumed = clock()
                status = c.call("status")
                procs = {p["pid"]: p for p in c.call("ps", all=True)}
        finally:
            _kill9(proc)
    broken = [p for pid in live if (p := procs.get(pid)) is None or p["fault"] or p["state"] == "zombie"]
    if broken:
        raise RuntimeError(f"agents did not survive recovery: {broken}")
    return {
        "serving_us": (t_serving - t0) / 1000.0,
        "resumed_us": (t_resumed - t0) / 1000.0,
        "kernel_boot_ms": status["boot_ms"],
        "replayed_calls": sum(replayed.values()),
    }


@benchmark(
    "kill9_recovery",
    target=None,
    baseline='Python interpreter start: subprocess.run([sys.executable, "-c", "pass"])',
    notes="Setup (untimed): a kernel with snapshots switched off (param.SNAPSHOT_EVERY_EVENTS raised in that "
    "kernel process only) runs a workload - 3 chatty agents that finish, 4 chatty agents and a parent with 2 "
    "chatty children that never finish (write_console each step, sleep(0.5 ms) every 4th, time() every 16th), "
    "2 sleepers parked in sleep(3600) - until the log holds tail_events events (100k; 10k with --quick), then "
    "kill -9 mid-run. No snapshot exists, so the whole log is the tail. ours (one sample per run): a fresh "
    "copy of that home, then `python -m agentos boot --home H` (foreground, environment without "
    "PYTHONHASHSEED, so it re-execs itself with the home's seed as a user's boot does); ours_us = µs until "
    "proc.resumed of every live agent has reached a session (events --follow, durable), serving_us = µs "
    "until the first hello reply. Every live agent is checked alive and unfaulted afterwards. The kernels get "
    "a bytecode cache of their own (bytecode_cache); no_bytecode_cache_*: one untimed recovery in the bench's "
    "own environment, where PYTHONDONTWRITEBYTECODE=1 makes both interpreters compile agentos from source. "
    "kernel_boot_ms: the kernel's own Kernel.boot() time (state rebuild) from status. No target in the "
    "issue: ratio = ours / one interpreter start.",
    budget_s=150.0,
    quick_budget_s=8.0,
)
def kill9_recovery(cfg: Config) -> Iterator[Sides]:
    tail = cfg.n(100_000, quick=10_000)
    finished_iterations = cfg.n(1_000, quick=150)
    timeout = 300.0
    with baselines.short_tempdir("abp") as tmp:
        pristine = tmp / "home"
        agents_dir = tmp / "agents"
        agents_dir.mkdir()
        pycache = tmp / "pycache"
        pycache.mkdir()
        env = _kernel_env(pycache)
        gen = _build_crashed_home(pristine, agents_dir, tail, finished_iterations, env)
        info = _inspect_log(pristine)
        live = set(gen["live_agents"])
        # Two untimed recoveries: one in the bench's own environment (here: no bytecode cache for agentos),
        # reported as no_bytecode_cache_*, then one that finishes warming the private cache.
        plain_env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
        cold = _recover_once(pristine, info["head_seq"], live, plain_env, timeout)
        _recover_once(pristine, info["head_seq"], live, env, timeout)
        runs: list[dict[str, Any]] = []
        base: list[float] = []
        extra: dict[str, Any] = {
            **info,
            "live_agents": len(live),
            "finished_agents": gen["finished_agents"],
            "bytecode_cache": "private PYTHONPYCACHEPREFIX, warmed before the timed runs",
            "pythondontwritebytecode_in_bench_env": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "no_bytecode_cache_serving_ms": round(cold["serving_us"] / 1000, 1),
            "no_bytecode_cache_resumed_ms": round(cold["resumed_us"] / 1000, 1),
        }

        def update() -> None:
            if not runs:
                return
            serving = [r["serving_us"] for r in runs]
            resumed = [r["resumed_us"] for r in runs]
            extra["serving_us"] = round(statistics.median(serving), 1)
            extra["serving_run_us"] = [round(v, 1) for v in serving]
            extra["serving_ms"] = round(statistics.median(serving) / 1000, 1)
            extra["resumed_ms"] = round(statistics.median(resumed) / 1000, 1)
            extra["kernel_boot_ms"] = round(statistics.median(r["kernel_boot_ms"] for r in runs), 1)
            extra["replayed_calls"] = runs[-1]["replayed_calls"]
            if base:
                b = statistics.median(base)
                extra["python_startup_ms"] = round(b / 1000, 2)
                extra["serving_ratio"] = round(statistics.median(serving) / b, 3)

        def baseline() -> list[float]:
            samples = baselines.python_startup(cfg.n(10, quick=3), max_seconds=cfg.seconds(10, 2))
            base.extend(samples)
            update()
            return samples

        def ours() -> list[float]:
            runs.append(_recover_once(pristine, info["head_seq"], live, env, timeout))
            update()
            return [runs[-1]["resumed_us"]]

        yield Sides(baseline=baseline, ours=ours, extra=extra)
