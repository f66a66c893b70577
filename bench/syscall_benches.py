"""The kernel's syscall round trips: an in-kernel SDK agent's syscalls and the socket ABI's calls.

* ``syscall_roundtrip_vs_asyncio_queue`` / ``journaled_syscall_roundtrip_vs_asyncio_queue``: an in-kernel SDK
  agent in a real kernel process (``agentos boot``) awaiting ``sdk.getpid()`` / ``sdk.time()`` N times;
* ``socket_syscall_roundtrip_vs_asyncio_protocol_echo``: the blocking ``Client`` calling ``getpid``.

Each runs interleaved with its ``bench.baselines`` counterpart; each entry's ``notes`` says exactly what is
timed. The event log's measures are in ``bench/log_benches.py``, kill -9 recovery in
``bench/recovery_benches.py``, the helpers they share (the kernel process, agent sources) in
``bench/kernel_support.py``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

from agentos.abi.frames import encode_frame
from agentos.sdk.client import Client
from bench import baselines
from bench.harness import Config, Sides, benchmark, percentile, time_per_op
from bench.kernel_support import kernel_process, write_agent


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


# --------------------------------------------------------------------------------------------------------
# 1. In-kernel syscall round trip
# --------------------------------------------------------------------------------------------------------

TIMED_LOOP_AGENT = '''
"""Benchmark agent: times its own syscalls with the host clock.

It reads time.perf_counter_ns, which the one rule forbids for replayed agents; this one is never
replayed (the kernel is not restarted under it) and the clock decides nothing: it only measures.
"""
import time

from agentos import sdk

CHUNK = 4000


async def main(call, n, warmup):
    fn = getattr(sdk, call)
    n, warmup = int(n), int(warmup)
    for _ in range(warmup):
        await fn()
    clock = time.perf_counter_ns
    samples = []
    append = samples.append
    for _ in range(n):
        t0 = clock()
        await fn()
        append(clock() - t0)
    m0 = await sdk.monotonic()
    for _ in range(n):
        await fn()
    m1 = await sdk.monotonic()
    await sdk.write_console(f"amortised {m1 - m0} {n}\\n")
    for i in range(0, n, CHUNK):
        await sdk.write_console("samples " + ",".join(map(str, samples[i : i + CHUNK])) + "\\n")
    return 0
'''


def _agent_syscall_samples(
    client: Client, agent: str, call: str, n: int, warmup: int, stats: dict[str, list[float]]
) -> list[float]:
    """Spawn the timed-loop agent, wait for it, read its samples (µs) back from its console."""
    seq0 = client.call("status")["seq"]
    pid = client.call("spawn", target=agent, argv=[call, str(n), str(warmup)], name=f"bench-{call}")
    status = client.call("wait", pid=pid, timeout=120.0)
    if status["status"] != 0:
        raise RuntimeError(f"the benchmark agent failed: {status}")
    seq1 = client.call("status")["seq"]
    text = "".join(item["data"] for item in client.call("logs", pid=pid) if item["stream"] == "stdout")
    samples: list[float] = []
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "samples":
            samples.extend(int(v) / 1000.0 for v in rest.split(","))
        elif word == "amortised":
            total_ns, calls = rest.split()
            stats["amortised_us"].append(int(total_ns) / 1000.0 / int(calls))
    if len(samples) != n:
        raise RuntimeError(f"the benchmark agent reported {len(samples)} samples, expected {n}")
    stats["events_per_call"].append((seq1 - seq0) / (warmup + 2 * n))
    return samples


def _agent_syscall_setup(cfg: Config, call: str) -> Iterator[Sides]:
    n = cfg.n(20_000, quick=2_000)
    warmup = 500
    with kernel_process() as kp, kp.client("bench") as client:
        agent = write_agent(kp.home.parent, "timed_loop.py", TIMED_LOOP_AGENT)
        stats: dict[str, list[float]] = {"amortised_us": [], "events_per_call": []}
        extra: dict[str, Any] = {"calls_per_run": n, "syscall": call}

        base_means: list[float] = []

        def baseline() -> list[float]:
            samples = baselines.asyncio_queue_roundtrip(n, max_seconds=cfg.seconds(10, 2))
            base_means.append(statistics.fmean(samples))
            return samples

        def ours() -> list[float]:
            samples = _agent_syscall_samples(client, agent, call, n, warmup, stats)
            extra["ours_amortised_us"] = _median(stats["amortised_us"])
            amortised = statistics.median(stats["amortised_us"])
            extra["amortised_ratio"] = round(amortised / statistics.median(base_means), 3)
            extra["ours_amortised_run_us"] = [round(v, 3) for v in stats["amortised_us"]]
            extra["events_per_call"] = round(statistics.fmean(stats["events_per_call"]), 4)
            return samples

        yield Sides(baseline=baseline, ours=ours, extra=extra)


_AGENT_TIMING = (
    "ours: a real kernel process (python -m agentos boot); an in-kernel SDK agent awaits sdk.{call}() {n} times "
    "(after 500 untimed), timing each call inside the agent with time.perf_counter_ns, the same clock and "
    "per-call method as the baseline; it reports the samples over write_console and the bench reads them back "
    "with the logs call. Included: the trap, the dispatcher's step (console capture, watchdog, CPU accounting), "
    "argument validation and digest, the handler and the journal rule{journal}. Per §4.3 an in-kernel agent "
    "does not wait for the disk, so no durability wait is in the loop (the committer commits between the "
    "agent's steps). Cross-check ours_amortised_us: the same number of calls with no per-call clock read, timed "
    "between two sdk.monotonic() syscalls, divided by the count (it includes the tail: the commits between steps, "
    "loop turns every ms); amortised_ratio = that / the median of the baseline's per-run mean "
    "(its amortised figure). events_per_call: events the agent's whole "
    "run added to the log divided by its syscalls. Baseline: asyncio.Queue request/reply round trip between "
    "two tasks, in the bench process."
)


@benchmark(
    "syscall_roundtrip_vs_asyncio_queue",
    target="<= 3",
    baseline="asyncio.Queue put/get round trip",
    notes=_AGENT_TIMING.format(
        call="getpid",
        n="N (20000; 2000 with --quick)",
        journal=" (getpid journals only its call counter: no event per call)",
    ),
)
def syscall_roundtrip(cfg: Config) -> Iterator[Sides]:
    yield from _agent_syscall_setup(cfg, "getpid")


@benchmark(
    "journaled_syscall_roundtrip_vs_asyncio_queue",
    target="<= 3",
    baseline="asyncio.Queue put/get round trip",
    notes=_AGENT_TIMING.format(
        call="time",
        n="N (20000; 2000 with --quick)",
        journal=" (time journals its result: one sys.done event per call, stamped, hash-chained, applied and "
        "queued for group commit)",
    ),
)
def journaled_syscall_roundtrip(cfg: Config) -> Iterator[Sides]:
    yield from _agent_syscall_setup(cfg, "time")


# --------------------------------------------------------------------------------------------------------
# 2. Socket syscall round trip
# --------------------------------------------------------------------------------------------------------


@benchmark(
    "socket_syscall_roundtrip_vs_asyncio_protocol_echo",
    target="<= 2",
    baseline="Unix socket 128 B length-prefixed echo: blocking client <-> asyncio Protocol server (subprocess)",
    notes="ours: agentos.sdk.client.Client (blocking socket, msgpack frames) calling getpid on a real kernel "
    "process, one persistent session, each call timed with perf_counter_ns (request encode, sendall, frame "
    "read, decode, error check). Kernel side: asyncio Protocol, frame decode, Kernel.call (validation, "
    "rights, handler), reply held until the log is durable up to the kernel's head (getpid adds no event, "
    "so normally nothing to wait for). The getpid frames are smaller than the echo's 128 B (see "
    "request_frame_bytes / reply_frame_bytes). ratio_vs_raw_echo: ours against a blocking-socket echo "
    "server (subprocess), run alongside each baseline run.",
)
def socket_syscall(cfg: Config) -> Iterator[Sides]:
    n = cfg.n(5_000, quick=500)
    secs = cfg.seconds(10, 2)
    with (
        kernel_process() as kp,
        kp.client("bench") as client,
        baselines.EchoServer("asyncio") as aecho,
        baselines.EchoServer("raw") as recho,
    ):
        pooled: dict[str, list[float]] = {"ours": [], "raw": []}
        extra: dict[str, Any] = {
            "frame_bytes": baselines.FRAME_PAYLOAD,
            "request_frame_bytes": len(encode_frame({"id": 1000, "call": "getpid", "args": {}})),
            "reply_frame_bytes": len(encode_frame({"id": 1000, "ok": client.pid, "seq": 100_000})),
            "server": "subprocess",
        }

        def update() -> None:
            raw, ours = _median(pooled["raw"]), _median(pooled["ours"])
            extra["raw_echo_us"] = raw
            extra["raw_echo_p99_us"] = round(percentile(pooled["raw"], 99), 3) if pooled["raw"] else None
            extra["ratio_vs_raw_echo"] = round(ours / raw, 3) if raw and ours else None

        def baseline() -> list[float]:
            pooled["raw"].extend(baselines.echo_roundtrips(recho.path, n, max_seconds=secs))
            update()
            return baselines.echo_roundtrips(aecho.path, n, max_seconds=secs)

        def ours() -> list[float]:
            samples = time_per_op(lambda: client.call("getpid"), n, warmup=200, max_seconds=secs)
            pooled["ours"].extend(samples)
            update()
            return samples

        yield Sides(baseline=baseline, ours=ours, extra=extra)
