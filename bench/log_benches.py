"""The event log's measures: durable append throughput and single-event acknowledgement latency.

* ``event_append_throughput_vs_bare_inserts`` and ``single_event_ack_latency``: ``Kernel.emit`` then
  ``committer.durable`` in this process (the kernel's own pipeline, no kernel process), against bare apsw
  inserts (``bench.baselines``): for the throughput, of the very rows the kernel writes (same payload
  bytes, kind, pid, syscall ids and sha256 chain), stamped before the clock.

Each entry's ``notes`` says exactly what is timed; each kernel gets a home of its own, removed afterwards.

Why the throughput target (>= 0.7) is missed (2-vCPU box; ``python -m bench.append_floor``, medians of 7
interleaved runs, µs per event): the bare insert of our rows B = 5.5; the kernel's commit of the same
rows already stamped C = 6.5 (its checkpoints, head row and loop included: B/C = 0.84 is the ceiling
with free stamping); Kernel.emit E = 8.1, so B/(E+C) = 0.35. E is the kernel's CPython work per event,
done before the insert (the measure waits for each batch, so nothing overlaps it): msgspec encode 0.33,
sha256 of ~330 B 0.73 (0.5 of it OpenSSL 3's per-call setup: 10 B cost 0.5), the digest's input and
the record 0.9, apply 0.7, queueing 0.2, measured hot; in a loop over distinct payloads encode + stamp
alone take E_min = 4.9, which caps the ratio at 0.48. 0.7 needs E <= B/0.7 - C = 1.3. (The insert
cannot overlap E: a writer *thread* binds rows under the GIL, which apsw drops around each row's step,
so a busy loop convoys it; a writer *process* fed over a pipe was prototyped at 0.53 against the old
rows; and on this box a C thread busy beside the loop slows the loop's Python 1.3-2.4x.) Reaching 0.7
needs emit's stamp (encode, digest, record) and apply in native code; a chain hashed once per commit
instead of per event (a format change) would save only the ~1.6 µs of the digest and its input.
The syscall round trips are in ``bench/syscall_benches.py``, kill -9 recovery in
``bench/recovery_benches.py``, the helpers they share in ``bench/kernel_support.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msgspec.structs import astuple

from agentos.kernel.kernel import Kernel
from agentos.state import events as ev
from agentos.store.events import GENESIS, Sequencer
from agentos.store.home import Home
from bench import baselines
from bench.harness import Config, Sides, benchmark

# --------------------------------------------------------------------------------------------------------
# Shared: sys.done payloads and a kernel booted in this process
# --------------------------------------------------------------------------------------------------------

RANDOM_RESULT_BYTES = 48  # sys.done of sdk.random(48): a ~205 B payload, the size of the baseline's rows
BENCH_PID = 2


def _journal_payloads(n: int, seed: int | None = None) -> list[tuple[ev.SyscallDone, str]]:
    """``n`` sys.done records of ``sdk.random(48)`` calls by one agent, with their syscall ids (the
    same bytes for the same ``seed``)."""
    randbytes = os.urandom if seed is None else random.Random(seed).randbytes
    out = []
    for i in range(n):
        result = base64.b64encode(randbytes(RANDOM_RESULT_BYTES)).decode()
        digest = f"v1:{i:032x}"
        done = ev.SyscallDone(
            pid=BENCH_PID,
            epoch=0,
            task=0,
            n=i,
            call="random",
            args_digest=digest,
            result=result,
            result_bytes=True,
        )
        out.append((done, f"{BENCH_PID}:0:0:{i}"))
    return out


def _bare_rows(payloads: list[tuple[ev.SyscallDone, str]]) -> list[baselines.EventRow]:
    """The rows the kernel writes for ``payloads`` (same kind, pid, syscall ids, canonical payload text
    and sha256 chain), as a bare insert binds them: the baseline stores exactly our bytes."""
    seqr, ts = Sequencer(1, GENESIS), time.time_ns()
    rows = []
    for i, (done, syscall) in enumerate(payloads):
        r = seqr.stamp(0, done.KIND, done.VERSION, BENCH_PID, syscall, None, ts + i, ev.encode(done))
        rows.append((*astuple(r)[:8], r.payload.decode(), r.prev_digest, r.digest))
    return rows


async def _booted_kernel(home: Path) -> Kernel:
    """A kernel on a fresh home, started in the running loop, with one agent process in its table."""
    kernel = Kernel(Home(home))
    kernel.boot()
    kernel.start()
    kernel.emit(ev.ProcSpawned(pid=BENCH_PID, ppid=1, name="bench", kind="agent"), BENCH_PID)
    await kernel.committer.durable(kernel.emit(ev.ProcStarted(pid=BENCH_PID), BENCH_PID))
    return kernel


@contextlib.contextmanager
def _fresh_home() -> Iterator[Path]:
    with baselines.short_tempdir("abe") as tmp:
        yield tmp / "home"


# --------------------------------------------------------------------------------------------------------
# 1. Durable event append throughput
# --------------------------------------------------------------------------------------------------------


async def _append_batches(
    txns: int, per_txn: int, payloads: list[tuple[ev.SyscallDone, str]], warmup_txns: int = 1
) -> list[float]:
    """Emit ``per_txn`` events then await their durability, ``txns`` times; µs per event, one per batch."""
    with _fresh_home() as home:
        kernel = await _booted_kernel(home)
        emit, clock = kernel.emit, time.perf_counter_ns
        samples: list[float] = []
        try:
            for t in range(warmup_txns + txns):
                batch = payloads[t * per_txn : (t + 1) * per_txn]
                t0 = clock()
                last = 0
                for done, syscall in batch:
                    last = emit(done, BENCH_PID, syscall=syscall)
                await kernel.committer.durable(last)
                t1 = clock()
                if t >= warmup_txns:
                    samples.append((t1 - t0) / 1000.0 / per_txn)
        finally:
            await kernel.close(clean=False)
    return samples


async def _append_pipelined(
    n: int, burst: int, payloads: list[tuple[ev.SyscallDone, str]]
) -> tuple[float, int]:
    """Emit ``n`` events in bursts, yielding to the loop between bursts, then await the last: (µs/event, batches)."""
    with _fresh_home() as home:
        kernel = await _booted_kernel(home)
        batches0 = kernel.committer.batches
        try:
            t0 = time.perf_counter_ns()
            last = 0
            for i in range(0, n, burst):
                for done, syscall in payloads[i : i + burst]:
                    last = kernel.emit(done, BENCH_PID, syscall=syscall)
                await asyncio.sleep(0)
            await kernel.committer.durable(last)
            elapsed = time.perf_counter_ns() - t0
            batches = kernel.committer.batches - batches0
        finally:
            await kernel.close(clean=False)
    return elapsed / 1000.0 / n, batches


def _row_bytes(seq_syscall_payload: list[tuple[str | None, str | None, str]]) -> float:
    return statistics.fmean(sum(len(x or "") for x in row) + 8 * 5 + 64 for row in seq_syscall_payload)


@benchmark(
    "event_append_throughput_vs_bare_inserts",
    target=">= 0.7",
    baseline="apsw executemany into events (WAL, synchronous=NORMAL), 1000 rows per transaction",
    kind="throughput",
    unit="event",
    notes="ours: the kernel's own pipeline in this process: Kernel(Home(tmp)).boot(), start() in an asyncio "
    "loop, then per batch 1000 x Kernel.emit(sys.done payload, pid, syscall=id) (JSON encode, sequence "
    "number, sha256 chain digest, apply to live state, hand to the group committer) and await "
    "committer.durable(last seq) (executemany + signed head meta row, one transaction, on the loop "
    "thread); "
    "µs per event per batch, 40 batches on a fresh home (plus 1 warm-up), snapshots every 20000 events as "
    "the kernel takes them, WAL checkpoints on the kernel's checkpoint thread. Payloads: sys.done of "
    "sdk.random(48), ~200 B of JSON each; the payload structs are built before the clock, as the "
    "baseline builds its rows. Baseline: the very rows the kernel writes for those payloads (same "
    "payload bytes, kind, pid, syscall ids, sha256 chain; stamped before the clock) into the events "
    "table with its pid and kind indexes (not the kernel's two partial file-change indexes), "
    "synchronous=NORMAL, WAL (SQLite's own checkpoints, inside COMMIT), 1000 per BEGIN "
    "IMMEDIATE/executemany/COMMIT. "
    "pipelined_*: the same events emitted in bursts of 1000 with a loop turn between bursts and one "
    "durability wait at the end (the committer batches as it likes): end-to-end µs per event.",
)
def event_append(cfg: Config) -> Iterator[Sides]:
    txns, per_txn = cfg.n(40, quick=5), 1_000
    secs = cfg.seconds(15, 3)
    pipelined: list[float] = []
    batches: list[int] = []
    n, seed = (txns + 1) * per_txn, 1  # one warm-up batch
    # both sides get the same bytes, made afresh before each run (as a handler makes its payloads
    # just before emitting them; held over from run to run they would sit cold in memory)
    payloads = _journal_payloads(1000, seed)  # the first 1000 of each run's, for the sizes below
    base_rows = _bare_rows(payloads)
    extra: dict[str, Any] = {
        "rows_per_txn": per_txn,
        "payload_bytes_ours": round(statistics.fmean(len(ev.encode(d)) for d, _ in payloads), 1),
        "payload_bytes_baseline": round(statistics.fmean(len(r[8]) for r in base_rows), 1),
        "row_bytes_ours": round(_row_bytes([("sys.done", s, ev.encode(d).decode()) for d, s in payloads]), 1),
        "row_bytes_baseline": round(_row_bytes([(r[2], r[5], (r[6] or "") + r[8]) for r in base_rows]), 1),
    }

    def ours() -> list[float]:
        samples = asyncio.run(_append_batches(txns, per_txn, _journal_payloads(n, seed)))
        us, nb = asyncio.run(_append_pipelined(txns * per_txn, per_txn, _journal_payloads(n, seed)))
        pipelined.append(us)
        batches.append(nb)
        med = statistics.median(pipelined)
        extra["pipelined_us"] = round(med, 3)
        extra["pipelined_per_s"] = round(1e6 / med, 1)
        extra["pipelined_commit_batches"] = batches
        return samples

    yield Sides(
        baseline=lambda: baselines.sqlite_wal_batch_insert(
            txns, per_txn, max_seconds=secs, rows=_bare_rows(_journal_payloads(n, seed))
        ),
        ours=ours,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------------------
# 2. Single-event acknowledgement latency
# --------------------------------------------------------------------------------------------------------


async def _single_acks(n: int, warmup: int, max_seconds: float) -> list[float]:
    payloads = _journal_payloads(warmup + n)
    deadline = time.perf_counter_ns() + int(max_seconds * 1e9)
    with _fresh_home() as home:
        kernel = await _booted_kernel(home)
        clock = time.perf_counter_ns
        samples: list[float] = []
        try:
            for i, (done, syscall) in enumerate(payloads):
                t0 = clock()
                await kernel.committer.durable(kernel.emit(done, BENCH_PID, syscall=syscall))
                t1 = clock()
                if i >= warmup:
                    samples.append((t1 - t0) / 1000.0)
                if t1 > deadline:
                    break
        finally:
            await kernel.close(clean=False)
    return samples


@benchmark(
    "single_event_ack_latency",
    target=None,  # the issue asks for p50/p99, with no target
    baseline="apsw one autocommit INSERT per transaction into events (WAL, synchronous=NORMAL)",
    notes="ours: one Kernel.emit of a ~205 B sys.done payload, then await committer.durable(seq), in an "
    "asyncio loop in this process (the group committer wakes and commits a batch this small on the loop "
    "thread: one transaction holding the event and the HMAC-signed chain head, then resolves the waiter); per-event µs, p50 = ours_us, p99 = ours_p99_us. Baseline: one autocommit INSERT of "
    "a same-sized row, synchronously, in the calling thread.",
)
def single_event_ack(cfg: Config) -> Sides:
    n = cfg.n(3_000, quick=300)
    secs = cfg.seconds(10, 2)
    return Sides(
        baseline=lambda: baselines.sqlite_wal_single_commit(n, max_seconds=secs),
        ours=lambda: asyncio.run(_single_acks(n, 50, secs)),
    )
