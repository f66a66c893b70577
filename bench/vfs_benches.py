"""The virtual file system against plain host file I/O (issue 5): big sequential files and many small ones.

* ``vfs_sequential_64mib_vs_host_file``: write then read back 64 MiB through the file syscalls, against
  the same bytes through Python's own file objects on the host. µs per MiB of the round trip.
* ``vfs_10k_small_files_vs_host_tmpfs``: 10 000 files of 1 KiB each created, written and closed through
  the file syscalls, against the same on the host's tmpfs (``/dev/shm``). µs per file.

Ours is a kernel booted in this process and driven through ``Kernel.call`` as the socket server drives
it for a session (``agentos fs put`` is such a client), with a durability wait at the end of every
write phase (the output-commit rule: the person's reply would wait for it). The stored-bytes measure
of issue 5 (100 versions of a 1 MiB file) is ``versioned_storage_100_edits_vs_100_copies`` in
``bench/chunk_benches.py``.

Where the sequential measure's time goes: the kernel reads a file's chunks in one query per read
(``EventLog.get_blobs``) through a cache of decoded manifests and recent chunks, and cuts a version by
merging the writes' chunk lists (``docs/vfs.md``, "How bytes are read and versions cut"). Left, CPU
per MiB on a 2-core box (process time, all threads): the writes ~3.5 ms (FastCDC + sha256 of every
chunk, and one query for which are stored), the close ~1.5 ms (chunks cut again around the 128
seams), the reads ~5 ms (~2.3 ms in SQLite, then each chunk read from disk checked against its hash).
Both measures write fresh random bytes every run (made outside the clock), so every chunk is new and
the commit inserts it (~7 ms/MiB of CPU, and the WAL's disk writes): the cost of a new file's content.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentos import param
from agentos.kernel.calls import Caller
from agentos.kernel.kernel import Kernel
from agentos.state import events as ev
from agentos.store.home import Home
from bench import baselines
from bench.harness import Config, Sides, benchmark

MiB = 1 << 20
BIG = 64 * MiB
CHUNK = param.MAX_ARG_BYTES // 2  # bytes per write/read call, as `agentos fs put`/`cat` use
SMALL_FILES = 10_000
SMALL_BYTES = 1024


async def _kernel(home: Path) -> tuple[Kernel, Caller]:
    """A kernel booted on ``home`` in the running loop, and a session process to call it as."""
    k = Kernel(Home(home))
    k.boot()
    k.start()
    pid = k.state.ledger.next_pid
    k.emit(ev.ProcSpawned(pid=pid, ppid=param.INIT_PID, name="bench", kind="session"), pid)
    await k.committer.durable(k.emit(ev.ProcStarted(pid=pid), pid))
    return k, Caller(pid=pid, kind="session")


def _call(k: Kernel, c: Caller, name: str, **args: Any) -> Any:
    return k.call(c, name, args).result


# --------------------------------------------------------------------------------------------------------
# 1. Sequential write + read of 64 MiB
# --------------------------------------------------------------------------------------------------------


async def _vfs_sequential(
    k: Kernel, c: Caller, path: str, data: bytes, split: dict[str, list[float]]
) -> float:
    """Write ``data`` to ``path`` (truncate, CHUNK-sized writes, close: a version), wait until durable,
    read it all back; µs per MiB of the whole."""
    t0 = time.perf_counter_ns()
    fd = _call(k, c, "open", path=path, flags=["write", "create", "truncate"])
    for i in range(0, len(data), CHUNK):
        _call(k, c, "write", fd=fd, data=data[i : i + CHUNK])
    _call(k, c, "close", fd=fd)
    await k.committer.durable(k.head_seq)
    t1 = time.perf_counter_ns()
    fd = _call(k, c, "open", path=path)
    got = []
    while block := _call(k, c, "read", fd=fd, n=CHUNK):
        got.append(block)
    _call(k, c, "close", fd=fd)
    await k.committer.durable(k.head_seq)  # the reads moved the offset: events too
    t2 = time.perf_counter_ns()
    if b"".join(got) != data:
        raise RuntimeError("the VFS read back other bytes")
    split["write"].append((t1 - t0) / 1000 / (len(data) / MiB))
    split["read"].append((t2 - t1) / 1000 / (len(data) / MiB))
    return (t2 - t0) / 1000 / (len(data) / MiB)


def _host_sequential(path: Path, data: bytes, *, fsync: bool) -> float:
    """The same bytes through a Python file object: CHUNK-sized writes, close (``fsync``: and fsync
    first), then CHUNK-sized reads; µs per MiB of the whole."""
    t0 = time.perf_counter_ns()
    with open(path, "wb") as f:
        for i in range(0, len(data), CHUNK):
            f.write(data[i : i + CHUNK])
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    got = []
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            got.append(block)
    t1 = time.perf_counter_ns()
    if b"".join(got) != data:
        raise RuntimeError("the host read back other bytes")
    return (t1 - t0) / 1000 / (len(data) / MiB)


@benchmark(
    "vfs_sequential_64mib_vs_host_file",
    target=None,
    baseline="Python open()/write()/close() then read() of the same 64 MiB in a host directory on disk, no fsync",
    kind="throughput",
    unit="MiB",
    notes="ours: a kernel booted in this process (synchronous=NORMAL, WAL), a session caller, Kernel.call: "
    "open(write, create, truncate), 128 writes of 512 KiB (param.MAX_ARG_BYTES/2, each chunked and "
    "stored as blobs with its vfs.wrote event), close (cuts a version: the writes' chunk lists merged, "
    "chunks cut again around their seams), await the committer's durability of the head; then open, "
    "reads of 512 KiB until EOF, close, durability wait (reads move the offset: events). 64 MiB of "
    "os.urandom, a fresh path per run in one kernel; the bytes read back are checked. Baseline: the same "
    "bytes and call sizes through Python file objects in a directory beside the kernel's home (same disk), "
    "write + close then read, no fsync: the kernel's NORMAL commits do not fsync either. µs per MiB of "
    "the round trip; extra has write and read split, the slowdown (ours / baseline) and the host with fsync "
    "before close. Fresh random bytes every run (generated outside the clock): every chunk is new and "
    "inserted, as for a new file's content.",
    budget_s=30.0,
    quick_budget_s=8.0,
)
def vfs_sequential(cfg: Config) -> Iterator[Sides]:
    data = os.urandom(BIG if not cfg.quick else 8 * MiB)
    split: dict[str, list[float]] = {"write": [], "read": []}
    fsynced: list[float] = []
    plain: list[float] = []
    pooled: list[float] = []
    extra: dict[str, Any] = {"bytes": len(data), "call_bytes": CHUNK, "durability": "normal"}
    runs = itertools.count()
    with baselines.short_tempdir("abv") as tmp, asyncio.Runner() as runner:
        k, c = runner.run(_kernel(tmp / "home"))
        host = tmp / "host.bin"
        try:
            _call(k, c, "mkdir", path="/bench")

            def baseline() -> list[float]:
                fsynced.append(_host_sequential(host, data, fsync=True))
                extra["host_fsync_us_per_mib"] = round(statistics.median(fsynced), 1)
                plain.append(_host_sequential(host, data, fsync=False))
                return [plain[-1]]

            def ours() -> list[float]:
                fresh = os.urandom(len(data))  # bytes never stored: every chunk is new, as a new file's
                us = runner.run(_vfs_sequential(k, c, f"/bench/big{next(runs)}", fresh, split))
                pooled.append(us)
                extra["ours_write_us_per_mib"] = round(statistics.median(split["write"]), 1)
                extra["ours_read_us_per_mib"] = round(statistics.median(split["read"]), 1)
                extra["slowdown_vs_host"] = round(statistics.median(pooled) / statistics.median(plain), 1)
                return [us]

            yield Sides(baseline=baseline, ours=ours, extra=extra)
        finally:
            runner.run(k.close(clean=False))


# --------------------------------------------------------------------------------------------------------
# 2. 10k small files
# --------------------------------------------------------------------------------------------------------


def _content(body: bytes, i: int) -> bytes:
    return body + b"%16d" % i  # each file's own bytes: no chunk is shared


async def _vfs_small_files(k: Kernel, c: Caller, directory: str, n: int, body: bytes) -> float:
    _call(k, c, "mkdir", path=directory)
    t0 = time.perf_counter_ns()
    for i in range(n):
        fd = _call(k, c, "open", path=f"{directory}/f{i}", flags=["write", "create", "exclusive"])
        _call(k, c, "write", fd=fd, data=_content(body, i))
        _call(k, c, "close", fd=fd)
    await k.committer.durable(k.head_seq)
    return (time.perf_counter_ns() - t0) / 1000 / n


def _host_small_files(directory: Path, n: int, body: bytes) -> float:
    directory.mkdir()
    t0 = time.perf_counter_ns()
    for i in range(n):
        with open(directory / f"f{i}", "xb") as f:
            f.write(_content(body, i))
    us = (time.perf_counter_ns() - t0) / 1000 / n
    shutil.rmtree(directory)
    return us


@benchmark(
    "vfs_10k_small_files_vs_host_tmpfs",
    target=None,
    baseline="Python open(x)/write()/close() of 10000 files of 1 KiB on the host's tmpfs (/dev/shm)",
    unit="file",
    notes="ours: a kernel booted in this process (synchronous=NORMAL, WAL), a session caller, Kernel.call: "
    "per file open(write, create, exclusive), one write of 1 KiB (chunks and manifest stored as blobs "
    "with its vfs.wrote event), close (cuts a version); one durability wait after the 10000 (the "
    "output-commit rule for the last reply); a fresh directory per run in one kernel, so the tree grows "
    "run by run (snapshots come as the kernel takes them). Each file's bytes differ (its number in "
    "them), so no chunk is shared within a run, and each run's contents are fresh random bytes, so every "
    "blob is inserted. Baseline: the same files and bytes with Python file objects in a "
    "fresh directory of /dev/shm (removed after the run, outside the clock). One sample per run: µs per file.",
    budget_s=30.0,
    quick_budget_s=8.0,
)
def vfs_small_files(cfg: Config) -> Iterator[Sides]:
    n = cfg.n(SMALL_FILES, quick=1_000)
    body = os.urandom(SMALL_BYTES - 16)
    extra: dict[str, Any] = {"files": n, "file_bytes": SMALL_BYTES, "host_dir": "/dev/shm"}
    runs = itertools.count()
    with (
        baselines.short_tempdir("abs") as tmp,
        asyncio.Runner() as runner,
    ):
        shm = Path(tempfile.mkdtemp(prefix="abs", dir="/dev/shm"))
        k, c = runner.run(_kernel(tmp / "home"))
        try:
            _call(k, c, "mkdir", path="/bench")

            def baseline() -> list[float]:
                return [_host_small_files(shm / f"run{next(runs)}", n, body)]

            def ours() -> list[float]:
                fresh = os.urandom(len(body))  # contents never stored before: every blob is inserted
                us = runner.run(_vfs_small_files(k, c, f"/bench/run{next(runs)}", n, fresh))
                extra["events"] = k.head_seq
                return [us]

            yield Sides(baseline=baseline, ours=ours, extra=extra)
        finally:
            runner.run(k.close(clean=False))
            shutil.rmtree(shm, ignore_errors=True)
