"""Where an appended event's time goes: ``python -m bench.append_floor [RUNS]`` (default 7).

The numbers behind ``event_append_throughput_vs_bare_inserts``'s missed target (``log_benches.py``
says what they mean). Per run, interleaved, the median µs per event over 40 batches of 1000:

* ``B``: the bare insert of the kernel's own rows (``bench.baselines``, the measure's baseline);
* ``B_old_rows``: the bare insert of ``make_event_rows``' rows (5 kinds, 16 pids: the baseline before);
* ``C``: the kernel's commit of the same events already stamped (committer.add, then durable);
* ``E``: ``Kernel.emit`` of them (the time before ``durable``), and ``E+C`` the whole batch;
* ``E_min``: msgspec encode + ``Sequencer.stamp`` (digest, record) + a list append, no kernel.

It prints the medians and the ratios they allow: ``B/(E+C)`` now, ``B/(E_min+C)`` with a kernel
that did nothing but stamp, ``B/C`` with free stamping.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from agentos.state.payload import encode
from agentos.store.events import GENESIS, Sequencer
from bench import baselines
from bench import log_benches as lb

TXNS, PER_TXN, SEED = 40, 1_000, 1


async def _kernel_batches(prestamped: bool) -> tuple[float, float, float]:
    """(E, C, E+C): medians of µs per event per batch, on a fresh kernel."""
    payloads = lb._journal_payloads((TXNS + 1) * PER_TXN, SEED)
    with lb._fresh_home() as home:
        kernel = await lb._booted_kernel(home)
        records = []
        if prestamped:  # the chain goes on from the kernel's head
            seqr, branch = kernel.sequencer, kernel.state.world.branch
            records = [
                seqr.stamp(branch, d.KIND, d.VERSION, lb.BENCH_PID, s, None, time.time_ns(), encode(d))
                for d, s in payloads
            ]
        e, c, clock = [], [], time.perf_counter_ns
        try:
            for t in range(TXNS + 1):
                lo, hi = t * PER_TXN, (t + 1) * PER_TXN
                t0 = clock()
                if prestamped:
                    for record in records[lo:hi]:
                        kernel.committer.add(record)
                    last = records[hi - 1].seq
                else:
                    for done, syscall in payloads[lo:hi]:
                        last = kernel.emit(done, lb.BENCH_PID, syscall=syscall)
                t1 = clock()
                await kernel.committer.durable(last)
                t2 = clock()
                if t:
                    e.append((t1 - t0) / PER_TXN / 1000)
                    c.append((t2 - t1) / PER_TXN / 1000)
        finally:
            await kernel.close(clean=False)
    med = statistics.median
    return med(e), med(c), med([a + b for a, b in zip(e, c, strict=True)])


def _stamp_only() -> float:
    payloads = lb._journal_payloads((TXNS + 1) * PER_TXN, SEED)
    seqr, out, pending = Sequencer(1, GENESIS), [], []
    for t in range(TXNS + 1):
        t0 = time.perf_counter_ns()
        for done, syscall in payloads[t * PER_TXN : (t + 1) * PER_TXN]:
            pending.append(
                seqr.stamp(
                    0, done.KIND, done.VERSION, lb.BENCH_PID, syscall, None, time.time_ns(), encode(done)
                )
            )
        t1 = time.perf_counter_ns()
        pending = []
        if t:
            out.append((t1 - t0) / PER_TXN / 1000)
    return statistics.median(out)


def main(runs: int) -> None:
    r: dict[str, list[float]] = {k: [] for k in ("B", "B_old_rows", "C", "E", "E+C", "E_min")}
    for _ in range(runs):
        rows = lb._bare_rows(lb._journal_payloads((TXNS + 1) * PER_TXN, SEED))
        r["B"].append(statistics.median(baselines.sqlite_wal_batch_insert(TXNS, PER_TXN, rows=rows)))
        r["B_old_rows"].append(statistics.median(baselines.sqlite_wal_batch_insert(TXNS, PER_TXN)))
        r["C"].append(asyncio.run(_kernel_batches(prestamped=True))[1])
        e, _, total = asyncio.run(_kernel_batches(prestamped=False))
        r["E"].append(e)
        r["E+C"].append(total)
        r["E_min"].append(_stamp_only())
    m = {k: statistics.median(v) for k, v in r.items()}
    for k, v in r.items():
        print(f"{k:11} {m[k]:6.2f} µs/event   runs {[round(x, 2) for x in v]}")
    print(
        f"B/(E+C) {m['B'] / m['E+C']:.2f}   B/(E_min+C) {m['B'] / (m['E_min'] + m['C']):.2f}   "
        f"B/C {m['B'] / m['C']:.2f}   0.7 needs E <= {m['B'] / 0.7 - m['C']:.2f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
