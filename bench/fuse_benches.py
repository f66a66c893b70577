"""Writing through the FUSE view of the VFS (``agentos/runtime/fusefs.py``) vs on the host.

``fuse_write_1mib_vs_host``  open, write 1 MiB of fresh random bytes (in 128 KiB writes, FUSE's
    largest), close, in a directory of the VFS mounted through FUSE as an agent — each write a
    syscall on the kernel's loop, the close a version cut durable before the reply — vs the same on
    a host directory (page cache, no fsync). Issue 7 names the measure and no target.
Needs root and /dev/fuse (skipped otherwise). The kernel runs on its own loop thread in this process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from bench.harness import Config, Sides, benchmark, time_per_op

MIB = 1 << 20
CHUNK = 128 * 1024


def _write(path: Path) -> None:
    data = os.urandom(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off in range(0, MIB, CHUNK):
            os.write(fd, data[off : off + CHUNK])
    finally:
        os.close(fd)


@benchmark(
    "fuse_write_1mib_vs_host",
    target=None,
    baseline="open/write 1 MiB (128 KiB writes)/close on a host directory, no fsync",
    notes="through the FUSE view as an agent: every write a syscall, the close a version cut, durable first",
)
def write_1mib(cfg: Config) -> Iterator[Sides]:
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        raise RuntimeError("needs /dev/fuse and root")
    from agentos.runtime.fusefs import serve
    from agentos.testing.kernelrig import KernelRig

    n, secs = cfg.n(100, quick=5), cfg.seconds(10, 1)
    root = Path(tempfile.mkdtemp(prefix="agentos-bench-fuse-"))
    (root / "mnt").mkdir()
    (root / "host").mkdir()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    rig = KernelRig(root / "rig")

    async def start():  # noqa: ANN202
        rig.boot()
        agent = rig.agent()
        rig(rig.person, "mkdir", path="/shared/work", mode=0o777)
        return serve(rig.k, agent.pid, str(root / "mnt"), root="/shared/work")

    async def stop() -> None:
        view.stop()
        await rig.k.close(clean=False)

    view = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield Sides(
            baseline=lambda: time_per_op(lambda: _write(root / "host" / "f"), n, warmup=2, max_seconds=secs),
            ours=lambda: time_per_op(lambda: _write(root / "mnt" / "f"), n, warmup=2, max_seconds=secs),
        )
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        shutil.rmtree(root, ignore_errors=True)
