"""Random sequences of file calls on the VFS and on a host temp dir, side by side (hypothesis).

A ``RuleBasedStateMachine`` runs open (any of the 64 flag sets) / write / read / seek / ftruncate /
fsync / dup / close on fds and truncate / mkdir / rmdir / unlink / rename / stat / readdir on paths
drawn from a small tree (names a, b, c, three deep, sometimes with a trailing slash), through the
kernel's syscall path as a session (root, as this test process) and through ``os`` on the host.
After every call: the same result or the same error code (``test_vfs_posix.Pair``, which also
holds the differences ``docs/vfs.md`` declares), the VFS's fd the lowest free one; after every step:
the same tree with the same bytes. One kernel serves all examples (each gets its own session and
directory); at the end the state rebuilt from its log equals the live one.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from test_vfs_posix import SUBSETS, Host, Pair, Vfs
from test_vfs_syscalls import Rig

from agentos import param
from agentos.kernel.boot import rebuild_state
from agentos.kernel.calls import Caller
from agentos.state import events as ev
from agentos.state.vfs import FIRST_FD
from agentos.state.world import state_hash

NAMES = ("a", "b", "c")
PATHS = st.builds(
    lambda parts, slash: "/".join(parts) + slash,
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
    st.sampled_from(["", "", "", "/"]),
)
FD = st.integers(0, 15)  # an index into the open fds
BIG = 100_000  # past a few chunks (chunks.MAX_SIZE is 32 KiB), so versions merge chunk lists
SIZES = st.one_of(st.integers(0, 40), st.integers(0, BIG))


def big_bytes(seed: int, n: int) -> bytes:
    """``n`` bytes from ``seed``: random, or a short pattern repeated (cut where the content says)."""
    rng = random.Random(seed)
    if seed % 2:
        return rng.randbytes(n)
    return (rng.randbytes(rng.randrange(1, 64)) * (n // 2 + 1))[:n]


def walk(vfs: Vfs, host: Host, rel: str = "") -> int:
    """The same tree below ``rel`` on both sides (names, kinds, every file's bytes); its file count."""
    names = vfs.call("readdir", path=rel)
    assert names == host.call("readdir", path=rel), rel
    files = 0
    for name in names[1]:
        path = f"{rel}/{name}" if rel else name
        kind = vfs.call("stat", path=path)
        assert kind == host.call("stat", path=path), path
        if kind[1]["kind"] == "dir":
            files += walk(vfs, host, path)
            continue
        fd = vfs.call("open", path=path, flags=["read"])[1]
        data = b""
        while piece := vfs.call("read", fd=fd, n=param.MAX_ARG_BYTES)[1]:
            data += piece
        vfs.call("close", fd=fd)
        assert data == Path(host.path(path)).read_bytes(), path
        files += 1
    return files


class PosixMachine(RuleBasedStateMachine):
    """One example: a fresh session, a fresh ``/wN`` in the VFS and a fresh host directory."""

    rig: Rig  # the kernel, set by the test
    host_base: Path
    prefix = "/w"  # where each example's directory is: "/w" the versioned tree, "/tmp/w" the tmpfs
    examples = 0

    def __init__(self) -> None:
        super().__init__()
        PosixMachine.examples += 1
        r = self.rig
        pid = r.k.state.ledger.next_pid
        r.k.emit(ev.ProcSpawned(pid=pid, ppid=param.INIT_PID, name="posix", kind="session"), pid)
        r.k.emit(ev.ProcStarted(pid=pid), pid)
        self.who = Caller(pid=pid, kind="session")
        host = Path(tempfile.mkdtemp(dir=self.host_base))
        self.pair = Pair(r, self.who, f"{self.prefix}{self.examples}", host)
        self.fds: list[tuple[int, int, bool]] = []  # (vfs fd, host fd, open for writing)

    def _fd(self, i: int) -> tuple[int, int, bool]:
        return self.fds[i % len(self.fds)]

    # -- paths ----------------------------------------------------------------------------------------

    @rule(path=PATHS, flags=st.sampled_from(SUBSETS))
    def open(self, path: str, flags: tuple[str, ...]) -> None:
        got = self.pair.open(path, flags)
        if isinstance(got, tuple):
            used = {fd for fd, _, _ in self.fds}
            assert got[0] == min(set(range(FIRST_FD, FIRST_FD + len(used) + 1)) - used), "the lowest free fd"
            self.fds.append((*got, bool({"write", "append"} & set(flags))))

    @rule(path=PATHS)
    def mkdir(self, path: str) -> None:
        self.pair.same("mkdir", path=path)

    @rule(path=PATHS)
    def rmdir(self, path: str) -> None:
        self.pair.same("rmdir", path=path)

    @rule(path=PATHS)
    def unlink(self, path: str) -> None:
        self.pair.same("unlink", path=path)

    @rule(src=PATHS, dst=PATHS)
    def rename(self, src: str, dst: str) -> None:
        self.pair.same("rename", src=src, dst=dst)

    @rule(path=PATHS, size=SIZES)
    def truncate(self, path: str, size: int) -> None:
        if self.prefix.startswith("/tmp"):  # documented: truncate acts on the versioned tree only
            assert self.pair.vfs.call("truncate", path=path, size=size) == ("err", "EPERM")
            return
        self.pair.same("truncate", path=path, size=size)

    @rule(path=PATHS)
    def stat(self, path: str) -> None:
        self.pair.same("stat", path=path)

    @rule(path=st.one_of(st.just(""), PATHS))
    def readdir(self, path: str) -> None:
        self.pair.same("readdir", path=path)

    # -- fds ------------------------------------------------------------------------------------------

    @precondition(lambda self: self.fds)
    @rule(i=FD, data=st.binary(max_size=12))
    def write(self, i: int, data: bytes) -> None:
        self.pair.on(self._fd(i)[:2], "write", data=data)

    @precondition(lambda self: self.fds)
    @rule(i=FD, seed=st.integers(0, 2**32), n=st.integers(0, BIG))
    def write_big(self, i: int, seed: int, n: int) -> None:
        self.pair.on(self._fd(i)[:2], "write", data=big_bytes(seed, n))

    @precondition(lambda self: self.fds)
    @rule(i=FD, n=st.one_of(st.integers(0, 40), st.integers(0, 2 * BIG)))
    def read(self, i: int, n: int) -> None:
        self.pair.on(self._fd(i)[:2], "read", n=n)

    @precondition(lambda self: self.fds)
    @rule(
        i=FD,
        offset=st.one_of(st.integers(-4, 40), st.integers(-BIG, BIG)),
        whence=st.sampled_from(["set", "cur", "end"]),
    )
    def seek(self, i: int, offset: int, whence: str) -> None:
        self.pair.on(self._fd(i)[:2], "seek", offset=offset, whence=whence)

    @precondition(lambda self: self.fds)
    @rule(i=FD, size=SIZES)
    def ftruncate(self, i: int, size: int) -> None:
        ours, theirs, writing = self._fd(i)
        if self.prefix.startswith("/tmp"):  # documented: not on a mounted file system
            assert self.pair.vfs.call("ftruncate", fd=ours, size=size) == ("err", "EINVAL")
        elif writing:
            self.pair.on((ours, theirs), "ftruncate", size=size)
        else:  # documented: EBADF for an fd not open for writing (Linux says EINVAL)
            assert self.pair.vfs.call("ftruncate", fd=ours, size=size) == ("err", "EBADF")
            assert self.pair.host.call("ftruncate", fd=theirs, size=size) == ("err", "EINVAL")

    @precondition(lambda self: self.fds)
    @rule(i=FD)
    def fsync(self, i: int) -> None:
        self.pair.on(self._fd(i)[:2], "fsync")

    @precondition(lambda self: self.fds)
    @rule(i=FD)
    def dup(self, i: int) -> None:
        ours, theirs, writing = self._fd(i)
        got = self.pair.on((ours, theirs), "dup")[1]
        self.fds.append((*got, writing))

    @precondition(lambda self: self.fds)
    @rule(i=FD)
    def close(self, i: int) -> None:
        fds = self.fds.pop(i % len(self.fds))
        self.pair.on(fds[:2], "close")

    # -- after every step -----------------------------------------------------------------------------

    @invariant()
    def same_tree(self) -> None:
        walk(self.pair.vfs, self.pair.host)
        table = self.rig.k.state.world.vfs.fds.get(self.who.pid, {})
        assert sorted(table) == sorted(fd for fd, _, _ in self.fds), "the fd table is the open fds"

    def teardown(self) -> None:
        for ours, theirs, _ in self.fds:
            self.pair.on((ours, theirs), "close")
        self.fds = []


def run_machine(tmp_path: Path, prefix: str = "/w", **limits: Any) -> int:
    """Run the machine; the number of examples it ran (each compared step by step with the host)."""

    async def main() -> None:
        rig = Rig(tmp_path)
        rig.boot()
        PosixMachine.rig, PosixMachine.host_base, PosixMachine.examples = rig, tmp_path, 0
        PosixMachine.prefix = prefix
        try:
            run_state_machine_as_test(PosixMachine, settings=settings(deadline=None, **limits))
            await rig.k.committer.durable(rig.k.head_seq)
            live, seq = state_hash(rig.k.state), rig.k.state.seq
            assert state_hash(rebuild_state(rig.k.log, until=seq, conn=rig.k.reader)) == live
        finally:
            await rig.k.close(clean=False)

    asyncio.run(main())
    return PosixMachine.examples


TREES = pytest.mark.parametrize("prefix", ["/w", "/tmp/w"], ids=["versioned", "tmpfs"])


@TREES
def test_random_file_calls_behave_as_on_the_host(tmp_path: Path, prefix: str) -> None:
    assert run_machine(tmp_path, prefix, max_examples=50, stateful_step_count=40) > 0


@pytest.mark.soak
@pytest.mark.timeout(3 * 3600)
@TREES
def test_random_file_calls_behave_as_on_the_host_soak(tmp_path: Path, prefix: str) -> None:
    examples = int(os.environ.get("AGENTOS_POSIX_EXAMPLES", "3000"))
    assert run_machine(tmp_path, prefix, max_examples=examples, stateful_step_count=100) > 0
