"""Where the group committer does its work, and the WAL checkpoints it takes over from SQLite.

apsw releases the GIL around every row's step, so rows inserted on a writer thread while the
loop thread is busy wait a switch interval each (measured: ~1 ms per row). The committer
therefore binds rows on the loop thread and sends only the COMMIT to a thread, and only where it
is an fsync (synchronous=FULL). Checkpoints run on a thread and connection of their own.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from agentos.kernel.kernel import Kernel
from agentos.state import events as ev
from agentos.store.home import Home
from agentos.store.log import EventLog


def _record_threads(k: Kernel, names: dict[str, set[str]]) -> None:
    for method in ("write_events", "commit"):
        original = getattr(k.log, method)

        def traced(*args: object, _original=original, _method=method) -> object:
            names.setdefault(_method, set()).add(threading.current_thread().name)
            return _original(*args)

        setattr(k.log, method, traced)


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_rows_are_bound_on_the_loop_thread_and_only_an_fsyncing_commit_leaves_it(
    tmp_path: Path, durability: str
) -> None:
    names: dict[str, set[str]] = {}

    async def scenario() -> None:
        k = Kernel(Home(tmp_path / "home"), durability=durability)
        k.boot()
        k.start()
        await k.committer.durable(k.head_seq)
        assert k.log.pragma("synchronous") == {"normal": 1, "full": 2}[durability]
        _record_threads(k, names)
        for burst in (1, 40, 2000):  # sizes the old committer sent to a thread or not
            last = 0
            for i in range(burst):
                last = k.emit(ev.CpuCharged(pid=1, ns=i + 1))
            await k.committer.durable(last)
        await k.close(clean=True)

    asyncio.run(scenario())
    loop_thread = threading.current_thread().name
    assert names["write_events"] == {loop_thread}
    expected_commit = {loop_thread} if durability == "normal" else {"agentos-commit_0"}
    assert names["commit"] == expected_commit
    log = EventLog(tmp_path / "home" / "log.db", hmac_key=Home(tmp_path / "home").hmac_key())
    try:
        assert log.verify_chain()[0]
    finally:
        log.close()


def test_the_kernel_checkpoints_the_wal_on_a_thread_of_its_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    seen: list[str] = []
    copied: list[int] = []
    wal_sizes: list[int] = []

    async def scenario() -> None:
        k = Kernel(Home(home))
        k.boot()
        k.start()
        original = k.log.checkpoint

        def traced() -> tuple[int, int]:
            seen.append(threading.current_thread().name)
            frames = original()
            copied.append(frames[1])
            return frames

        k.log.checkpoint = traced  # type: ignore[method-assign]
        last = 0
        for _ in range(12):  # ~12 MB of log: several times SQLite's 1000-page threshold
            for i in range(5000):
                last = k.emit(ev.CpuCharged(pid=1, ns=i + 1))
            await k.committer.durable(last)
            wal_sizes.append((home / "log.db-wal").stat().st_size)
            await asyncio.sleep(0.01)  # let a checkpoint in flight finish now and then
        for _ in range(500):
            if k.committer.checkpoints >= 2:
                break
            await asyncio.sleep(0.01)
        assert k.committer.checkpoints >= 2
        await k.close(clean=False)

    asyncio.run(scenario())
    assert seen and all(name.startswith("agentos-checkpoint") for name in seen)
    # the thread's checkpoints did the copying (a connection that never read says (-1, -1) and
    # copies nothing), and the WAL restarted instead of growing with the log (~12 MB written)
    assert sum(n for n in copied if n > 0) >= 2000, copied
    assert max(wal_sizes) < 9 * 1024 * 1024, wal_sizes
    # the frames were copied into the database file itself, not only left in the WAL
    assert (home / "log.db").stat().st_size > 4 * 1024 * 1024
    log = EventLog(home / "log.db", hmac_key=Home(home).hmac_key())
    try:
        assert log.verify_chain()[0]
        assert log.head()[0] >= 60_000
    finally:
        log.close()
