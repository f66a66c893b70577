"""Baseline-only entries: the reference numbers of ``bench.baselines``, recorded on every ``python -m bench``.

They carry no "ours" side and no target (``ratio``, ``ours_us``, ``target`` and ``met`` are ``null``); the
kernel's comparative measures (``bench/syscall_benches.py``, ``bench/log_benches.py``,
``bench/recovery_benches.py``) measure the same baselines again, interleaved with their own runs, and are
the ones that state targets.
"""

from __future__ import annotations

from collections.abc import Iterator

from bench import baselines
from bench.harness import Config, Sides, baseline_only


@baseline_only("baseline_asyncio_queue_roundtrip", baseline="asyncio.Queue put/get round trip")
def asyncio_queue(cfg: Config) -> Sides:
    n = cfg.n(20_000, quick=2_000)
    return Sides(baseline=lambda: baselines.asyncio_queue_roundtrip(n, max_seconds=cfg.seconds(10, 2)))


@baseline_only(
    "baseline_unix_echo_asyncio",
    baseline="Unix socket 128 B length-prefixed echo: blocking client <-> asyncio Protocol server (subprocess)",
)
def unix_echo_asyncio(cfg: Config) -> Iterator[Sides]:
    n = cfg.n(5_000, quick=500)
    with baselines.EchoServer("asyncio") as server:
        yield Sides(
            baseline=lambda: baselines.echo_roundtrips(server.path, n, max_seconds=cfg.seconds(10, 2)),
            extra={"frame_bytes": baselines.FRAME_PAYLOAD, "server": "subprocess"},
        )


@baseline_only(
    "baseline_unix_echo_raw",
    baseline="Unix socket 128 B length-prefixed echo: blocking client <-> blocking socket server (subprocess)",
)
def unix_echo_raw(cfg: Config) -> Iterator[Sides]:
    n = cfg.n(5_000, quick=500)
    with baselines.EchoServer("raw") as server:
        yield Sides(
            baseline=lambda: baselines.echo_roundtrips(server.path, n, max_seconds=cfg.seconds(10, 2)),
            extra={"frame_bytes": baselines.FRAME_PAYLOAD, "server": "subprocess"},
        )


@baseline_only(
    "baseline_sqlite_wal_batch_insert",
    baseline="apsw executemany into events (WAL, synchronous=NORMAL), 1000 rows per transaction",
    kind="throughput",
    unit="row",
)
def sqlite_batch(cfg: Config) -> Sides:
    txns = cfg.n(40, quick=5)
    return Sides(
        baseline=lambda: baselines.sqlite_wal_batch_insert(txns, 1_000, max_seconds=cfg.seconds(15, 3)),
        extra={"rows_per_txn": 1_000},
    )


@baseline_only(
    "baseline_sqlite_wal_single_commit",
    baseline="apsw one autocommit INSERT per transaction into events (WAL, synchronous=NORMAL)",
)
def sqlite_single(cfg: Config) -> Sides:
    n = cfg.n(3_000, quick=300)
    return Sides(baseline=lambda: baselines.sqlite_wal_single_commit(n, max_seconds=cfg.seconds(10, 2)))


@baseline_only("baseline_subprocess_spawn", baseline='subprocess.run(["/bin/true"]) spawn + wait')
def subprocess_spawn(cfg: Config) -> Sides:
    n = cfg.n(300, quick=30)
    return Sides(baseline=lambda: baselines.subprocess_spawn(n, max_seconds=cfg.seconds(10, 2)))
