"""What authorisation costs: the capability check's share of a ``getpid`` round trip.

* ``capability_check_share_of_getpid``: ours = ``Kernel.check_call`` (the authority's decision for
  ``sys:proc``/``self`` from the per-process cache, plus the resource-group quota check) as the
  dispatcher runs it before every handler, in a kernel booted in this process, for an agent holding
  the default policy's capabilities; baseline = the whole ``sdk.getpid()`` round trip of an in-kernel
  agent in a real kernel process (the same measure as ``syscall_roundtrip_vs_asyncio_queue``, which
  includes that check). ratio = check / round trip: the check's share. Extra: the same check while
  another process's capabilities are being revoked every ``REVOKE_EVERY`` checks (each revocation
  empties every decision cache), with the cache hit rate over that run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentos.abi.syscalls import decode_args
from agentos.kernel.calls import Caller
from agentos.kernel.kernel import Kernel
from agentos.kernel.syscall import SYSCALLS
from agentos.state import events as ev
from agentos.store.home import Home
from bench import baselines
from bench.harness import Config, Sides, benchmark
from bench.kernel_support import kernel_process, write_agent
from bench.syscall_benches import TIMED_LOOP_AGENT, _agent_syscall_samples

BATCH = 200  # checks per timed sample: one check (~1 µs) is too short for the clock alone
REVOKE_EVERY = 1_000


async def _check_samples(home: Path, n: int, extra: dict[str, Any]) -> list[float]:
    kernel = Kernel(Home(home))
    kernel.boot()
    kernel.start()
    try:
        agent = home.parent / "idle.py"
        agent.write_text("async def main(*argv):\n    return 0\n")
        session = kernel.state.ledger.next_pid  # a session process, as a client's connection makes one
        kernel.emit(ev.ProcSpawned(pid=session, ppid=1, name="bench", kind="session"), session)
        kernel.emit(ev.ProcStarted(pid=session), session)
        person = Caller(session, "session")
        pid = kernel.call(person, "spawn", {"target": str(agent)}).result
        other = kernel.call(person, "spawn", {"target": str(agent)}).result
        caller = Caller(pid, "agent")
        row = SYSCALLS["getpid"]
        args = decode_args(row.schema, {})
        check, clock = kernel.check_call, time.perf_counter_ns
        for _ in range(1000):
            check(caller, row, args)
        samples: list[float] = []
        for _ in range(n // BATCH):
            t0 = clock()
            for _ in range(BATCH):
                check(caller, row, args)
            samples.append((clock() - t0) / 1000.0 / BATCH)

        # the same checks while another process's capabilities are revoked, one per REVOKE_EVERY
        hits0, misses0 = kernel.authority.hits, kernel.authority.misses
        churn: list[float] = []
        spec = {"to": other, "spec": {"resource": "sys:random", "rights": ["read"]}}
        for i in range(n // BATCH):
            if i % (REVOKE_EVERY // BATCH) == 0:
                granted = kernel.call(person, "cap_delegate", spec).result["cap"]
                kernel.call(person, "cap_revoke", {"cap": granted})
            t0 = clock()
            for _ in range(BATCH):
                check(caller, row, args)
            churn.append((clock() - t0) / 1000.0 / BATCH)
        hits, misses = kernel.authority.hits - hits0, kernel.authority.misses - misses0
        extra["churn_check_us"] = round(sorted(churn)[len(churn) // 2], 4)
        extra["churn_hit_rate"] = round(hits / max(1, hits + misses), 5)
        extra["churn_revocations"] = (n // BATCH) // (REVOKE_EVERY // BATCH)
        return samples
    finally:
        await kernel.close(clean=False)


@benchmark(
    "capability_check_share_of_getpid",
    target="<= 0.15",
    baseline="in-kernel sdk.getpid() round trip in a real kernel process (check included)",
    notes=__doc__.split("* ", 1)[1].split("\n\n")[0].replace("\n  ", " "),
)
def cap_check_share(cfg: Config) -> Iterator[Sides]:
    n = cfg.n(20_000, quick=2_000)
    with kernel_process() as kp, kp.client("bench") as client, baselines.short_tempdir("cap") as tmp:
        loop_agent = write_agent(kp.home.parent, "timed_loop.py", TIMED_LOOP_AGENT)
        stats: dict[str, list[float]] = {"amortised_us": [], "events_per_call": []}
        extra: dict[str, Any] = {"checks_per_sample": BATCH, "revoke_every": REVOKE_EVERY}
        runs = iter(range(1_000_000))

        def ours() -> list[float]:
            return asyncio.run(_check_samples(tmp / f"home{next(runs)}", n, extra))

        def baseline() -> list[float]:
            return _agent_syscall_samples(client, loop_agent, "getpid", n, 500, stats)

        yield Sides(baseline=baseline, ours=ours, extra=extra)
