"""The file syscalls (slice 1: mkdir, open, write, read, seek, close, fsync, stat, readdir, unlink,
rmdir, rename) and ``agentos fs``.

In-process first (a kernel booted on a fresh home, driven through ``Kernel.call`` as the runtime
drives it): POSIX semantics and each error code, versions cut at close and fsync and at exit, the
rebuilt state equal to the live one, pending writes surviving a crash, capabilities and the
``file_bytes`` quota. Then a real kernel process: an agent writes a file that ``agentos fs cat``
shows, an acknowledged write survives kill -9 of the kernel, and the CLI's commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agentos import param
from agentos.errors import PermissionDenied
from agentos.kernel.boot import rebuild_state
from agentos.state.world import state_hash
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig

# -- in-process ---------------------------------------------------------------------------------------


class Rig(KernelRig):
    pass


def run(tmp_path: Path, body: Callable[[Rig], Awaitable[None] | None]) -> None:
    run_rig(Rig(tmp_path), body)


def test_first_boot_makes_the_root_and_shared(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        assert r(p, "readdir", path="/") == ["dev", "proc", "shared", "tmp"], "the mount points with it"
        st = r(p, "stat", path="/shared")
        assert (st["kind"], st["mode"], st["nlink"]) == ("dir", 0o1777, 2)
        assert r(p, "stat", path="/")["nlink"] == 3

    run(tmp_path, body)


def test_mkdir_readdir_stat_and_their_errors(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/a")
        r(p, "mkdir", path="/a/b", mode=0o700)
        assert r(p, "readdir", path="/") == ["a", "dev", "proc", "shared", "tmp"]
        assert r(p, "readdir", path="/a/") == ["b"]
        st = r(p, "stat", path="/a/./b/../b")
        assert (st["kind"], st["mode"], st["size"], st["nlink"]) == ("dir", 0o700, 0, 2)
        assert r(p, "stat", path="/a")["nlink"] == 3
        r.fails(p, "EEXIST", "mkdir", path="/a")
        r.fails(p, "ENOENT", "mkdir", path="/x/y")
        r.fails(p, "ENOENT", "stat", path="/nope")
        r.fails(p, "EINVAL", "mkdir", path="/")
        r.fails(p, "EINVAL", "mkdir", path="relative")
        r.fails(p, "EINVAL", "stat", path="/a\x00b")
        r.fails(p, "EINVAL", "stat", path="/" + "x" * param.MAX_PATH)
        r.put(p, "/f", b"x")
        r.fails(p, "ENOTDIR", "mkdir", path="/f/g")
        r.fails(p, "ENOTDIR", "readdir", path="/f")
        r.fails(p, "ENOTDIR", "stat", path="/f/")

    run(tmp_path, body)


def test_open_write_read_seek_close_follow_posix(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        fd = r(p, "open", path="/shared/f", flags=["read", "write", "create"])
        assert fd == 3
        assert r(p, "write", fd=fd, data=b"hello") == 5
        assert r(p, "read", fd=fd, n=10) == b"", "the offset is at the end"
        assert r(p, "seek", fd=fd, offset=0) == 0
        assert r(p, "read", fd=fd, n=3) == b"hel"
        assert r(p, "read", fd=fd, n=10) == b"lo"
        assert r(p, "seek", fd=fd, offset=-2, whence="end") == 3
        assert r(p, "write", fd=fd, data=b"LO!") == 3
        assert r(p, "seek", fd=fd, offset=-6, whence="cur") == 0
        assert r(p, "read", fd=fd, n=100) == b"helLO!"
        st = r(p, "stat", path="/shared/f")
        assert (st["kind"], st["size"], st["mode"], st["version_seq"]) == ("file", 6, 0o644, 0)
        assert r(p, "write", fd=fd, data=b"") == 0
        r(p, "close", fd=fd)
        assert r(p, "stat", path="/shared/f")["version_seq"] > 0, "close cut a version"
        assert r.k.state.world.vfs.inodes[st["ino"]].pending == []
        assert r.cat("/shared/f") == b"helLO!"
        r.fails(p, "EBADF", "read", fd=fd, n=1)
        r.fails(p, "EBADF", "close", fd=fd)
        r.fails(p, "EINVAL", "seek", fd=r(p, "open", path="/shared/f"), offset=-1)

    run(tmp_path, body)


def test_flags_modes_append_truncate_exclusive_and_holes(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/f", b"abc")
        ro = r(p, "open", path="/shared/f")
        wo = r(p, "open", path="/shared/f", flags=["write"])
        assert (ro, wo) == (3, 4), "the lowest free fds"
        r.fails(p, "EBADF", "write", fd=ro, data=b"x")
        r.fails(p, "EBADF", "read", fd=wo, n=1)
        ap = r(p, "open", path="/shared/f", flags=["append"])
        r(p, "write", fd=wo, data=b"X")  # at offset 0
        r(p, "write", fd=ap, data=b"de")  # at the end, wherever the fd's offset is
        assert r(p, "read", fd=ro, n=100) == b"Xbcde", "a reader sees the pending writes"
        for fd in (ro, wo, ap):
            r(p, "close", fd=fd)
        assert r.cat("/shared/f") == b"Xbcde"
        r.fails(p, "EEXIST", "open", path="/shared/f", flags=["write", "create", "exclusive"])
        r.fails(p, "ENOENT", "open", path="/shared/missing")
        r.fails(p, "EISDIR", "open", path="/shared")
        r.fails(p, "EISDIR", "open", path="/shared/new/", flags=["write", "create"])
        r.fails(p, "EINVAL", "open", path="/shared/f", flags=["read", "truncate"])
        r.fails(p, "EINVAL", "open", path="/shared/f", flags=["bogus"])
        fd = r(p, "open", path="/shared/f", flags=["write", "truncate"])
        assert r(p, "stat", path="/shared/f")["size"] == 0
        assert r(p, "seek", fd=fd, offset=4) == 4
        r(p, "write", fd=fd, data=b"z")
        r(p, "close", fd=fd)
        assert r.cat("/shared/f") == b"\0\0\0\0z", "a hole reads as zeros"
        fd = r(p, "open", path="/shared/new", flags=["write", "create"], mode=0o600)
        assert r(p, "stat", path="/shared/new")["mode"] == 0o600
        r(p, "close", fd=fd)
        assert r.cat("/shared/new") == b"", "an empty file"

    run(tmp_path, body)


def test_fsync_cuts_a_version_and_keeps_the_fd(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        fd = r(p, "open", path="/shared/f", flags=["write", "create"])
        r(p, "write", fd=fd, data=b"one")
        r(p, "fsync", fd=fd)
        first = r(p, "stat", path="/shared/f")["version_seq"]
        assert first > 0
        r(p, "fsync", fd=fd)
        assert r(p, "stat", path="/shared/f")["version_seq"] == first, "nothing pending: no version"
        r(p, "write", fd=fd, data=b" two")
        r(p, "close", fd=fd)
        assert r(p, "stat", path="/shared/f")["version_seq"] > first
        assert r.cat("/shared/f") == b"one two"

    run(tmp_path, body)


def test_big_writes_are_chunked_and_read_back_exactly(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        data = os.urandom(300_000)
        fd = r(p, "open", path="/shared/big", flags=["write", "create"])
        r(p, "write", fd=fd, data=data[:200_000])
        r(p, "write", fd=fd, data=data[200_000:])
        r(p, "close", fd=fd)
        fd = r(p, "open", path="/shared/big")
        assert r(p, "seek", fd=fd, offset=123_456) == 123_456
        assert r(p, "read", fd=fd, n=100_000) == data[123_456:223_456]
        assert r.cat("/shared/big") == data

    run(tmp_path, body)


def test_unlink_rmdir_rename_and_their_errors(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/d")
        r(p, "mkdir", path="/d/sub")
        r.put(p, "/d/f", b"F")
        r.put(p, "/g", b"G")
        r.fails(p, "EISDIR", "unlink", path="/d")
        r.fails(p, "ENOENT", "unlink", path="/d/nope")
        r.fails(p, "ENOTDIR", "unlink", path="/g/")
        r.fails(p, "ENOTEMPTY", "rmdir", path="/d")
        r.fails(p, "ENOTDIR", "rmdir", path="/g")
        r.fails(p, "ENOENT", "rmdir", path="/nope")
        r.fails(p, "EINVAL", "rmdir", path="/")
        r.fails(p, "EISDIR", "rename", src="/g", dst="/d/sub")
        r.fails(p, "ENOTDIR", "rename", src="/d/sub", dst="/g")
        r.fails(p, "EINVAL", "rename", src="/d", dst="/d/sub/d")
        r.fails(p, "ENOENT", "rename", src="/nope", dst="/x")
        r.fails(p, "ENOENT", "rename", src="/g", dst="/nope/x")
        r(p, "mkdir", path="/e")
        r(p, "mkdir", path="/e/x")
        r.fails(p, "ENOTEMPTY", "rename", src="/d/sub", dst="/e")
        r(p, "rename", src="/g", dst="/d/f")  # replaces a file
        assert r.cat("/d/f") == b"G"
        assert r(p, "readdir", path="/") == ["d", "dev", "e", "proc", "shared", "tmp"]
        r(p, "rename", src="/d/f", dst="/d/f")  # the same name: nothing
        r(p, "rename", src="/d", dst="/e/x")  # a directory over an empty one
        assert r(p, "readdir", path="/e/x") == ["f", "sub"]
        fd = r(p, "open", path="/e/x/f")
        r(p, "unlink", path="/e/x/f")
        r.fails(p, "ENOENT", "stat", path="/e/x/f")
        assert r(p, "read", fd=fd, n=10) == b"G", "an unlinked file stays readable through its fd"
        r(p, "close", fd=fd)
        r(p, "rmdir", path="/e/x/sub")
        assert r(p, "readdir", path="/e/x") == []
        r(p, "rmdir", path="/e/x")
        assert r(p, "readdir", path="/e") == []

    run(tmp_path, body)


def test_an_exit_closes_the_files_and_cuts_their_versions(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        fd = r(a, "open", path="/shared/out", flags=["write", "create"])
        r(a, "write", fd=fd, data=b"left open")
        r(a, "open", path="/shared/out")  # a second fd on it
        r(a, "exit", status=0)
        fs = r.k.state.world.vfs
        node = fs.inodes[fs.resolve("/shared/out")]
        assert (node.pending, node.opens, a.pid in fs.fds) == ([], 0, False)
        assert node.version_seq > 0 and r.cat("/shared/out") == b"left open"

    run(tmp_path, body)


def test_state_rebuilds_exactly_and_pending_writes_survive_a_crash(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        r.put(p, "/w/done", b"versioned")
        fd = r(p, "open", path="/w/open", flags=["write", "create"])
        r(p, "write", fd=fd, data=b"acknowledged")
        await r.k.committer.durable(r.k.head_seq)
        live, seq = state_hash(r.k.state), r.k.state.seq
        assert state_hash(rebuild_state(r.k.log, until=seq, conn=r.k.reader)) == live
        await r.k.close(clean=False)  # no close of the fd: as a crash
        r.boot()
        assert r.cat("/w/done") == b"versioned"
        assert r.cat("/w/open") == b"acknowledged", "the pending write was an event with its blobs"
        fs = r.k.state.world.vfs
        assert fs.inodes[fs.resolve("/w/open")].version_seq > 0, "the lost session's files were closed"

    run(tmp_path, body)


def test_capabilities_guard_paths_and_fds_keep_their_open_mode(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/data")
        r.put(p, "/data/secret", b"s")
        a = r.agent()  # the default policy: fs:/shared and sys:fd
        for call, args in [
            ("open", {"path": "/data/secret"}),
            ("open", {"path": "/data/x", "flags": ["write", "create"]}),
            ("readdir", {"path": "/data"}),
            ("stat", {"path": "/shared/../data/secret"}),
            ("mkdir", {"path": "/data/d"}),
            ("unlink", {"path": "/data/secret"}),
        ]:
            with pytest.raises(PermissionDenied) as info:
                r.k.call(a, call, args)
            assert info.value.code == "EACCES", call
        r.put(a, "/shared/mine", b"ok")
        assert r(a, "readdir", path="/shared") == ["mine"]
        with pytest.raises(PermissionDenied):
            r.k.call(a, "rename", {"src": "/shared/mine", "dst": "/data/mine"})
        r(a, "rename", src="/shared/mine", dst="/shared/yours")
        reader = r.agent(caps=[{"resource": "fs:/shared", "rights": ["read"]}, {"resource": "sys:fd"}])
        with pytest.raises(PermissionDenied):
            r.k.call(reader, "open", {"path": "/shared/yours", "flags": ["read", "write"]})
        with pytest.raises(PermissionDenied):
            r.k.call(reader, "readdir", {"path": "/shared"})
        fd = r(reader, "open", path="/shared/yours")
        assert r(reader, "read", fd=fd, n=9) == b"ok"
        r.fails(reader, "EBADF", "write", fd=fd, data=b"no")
        r.fails(a, "EBADF", "read", fd=fd, n=1)  # fds are per process

    run(tmp_path, body)


def test_file_bytes_quota_is_checked_before_a_write_and_charged(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        group = r.k.state.world.procs.get(a.pid).group
        r(r.person, "group_limit", group=group, limits={"file_bytes": 10})
        fd = r(a, "open", path="/shared/q", flags=["write", "create"])
        assert r(a, "write", fd=fd, data=b"12345678") == 8
        err = r.fails(a, "EDQUOT", "write", fd=fd, data=b"123")
        assert "file_bytes" in str(err)
        assert r(a, "write", fd=fd, data=b"12") == 2
        used = r.k.state.ledger.usage.used[group]
        assert used["file_bytes"] == 10 and used["stored_bytes"] > 10
        r(a, "close", fd=fd)
        assert r.cat("/shared/q") == b"1234567812"

    run(tmp_path, body)


# -- a real kernel process, agents and the CLI --------------------------------------------------------


def agentos(home: Path, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``agentos fs SUB --home HOME ARGS...``."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "agentos", *argv[:2], "--home", str(home), *argv[2:]],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=env,
        timeout=60,
    )


def ok(home: Path, *argv: str, stdin: bytes | None = None) -> bytes:
    r = agentos(home, *argv, stdin=stdin)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout


WRITER = """
from agentos import sdk

async def main(path, text):
    fd = await sdk.open(path, ["write", "create", "truncate"])
    await sdk.write(fd, text.encode())
    await sdk.close(fd)
    return 0
"""


def test_an_agent_writes_a_file_that_fs_cat_shows(kernel: KernelProcess, agent_file: Any) -> None:
    pid = int(kernel.call("spawn", target=agent_file(WRITER), argv=["/shared/hello.txt", "hello, world\n"]))
    with kernel.client() as c:
        assert c.call("wait", pid=pid, timeout=20)["status"] == 0
    assert ok(kernel.home, "fs", "cat", "/shared/hello.txt") == b"hello, world\n"


HOLDER = """
from agentos import sdk

async def main():
    fd = await sdk.open("/shared/held.txt", ["write", "create"])
    await sdk.write(fd, b"acknowledged\\n")
    await sdk.write_console("wrote\\n")
    await sdk.sleep(60)
    await sdk.close(fd)
"""


def test_an_acknowledged_write_survives_kill_9_before_close(kernel: KernelProcess, agent_file: Any) -> None:
    pid = int(kernel.call("spawn", target=agent_file(HOLDER)))

    def wrote() -> bool:
        with kernel.client() as c:
            return "wrote" in "".join(item["data"] for item in c.stream("logs", pid=pid))

    poll(wrote)
    kernel.kill9()
    kernel.boot()
    assert ok(kernel.home, "fs", "cat", "/shared/held.txt") == b"acknowledged\n", "pending, after replay"
    with kernel.client() as c:
        assert c.call("stat", path="/shared/held.txt")["version_seq"] == 0
        c.call("kill", pid=pid, sig="KILL")
        assert c.call("wait", pid=pid, timeout=20)["status"] == 137
        st = c.call("stat", path="/shared/held.txt")
        assert st["version_seq"] > 0 and st["size"] == 13, "its exit closed the file: a version"
        versions = [e for e in c.call("events", kind="vfs.version", limit=100) if e["payload"]["pid"] == pid]
        assert len(versions) == 1
        wrote_events = c.call("events", kind="vfs.wrote", limit=100)
        assert len(wrote_events) == 1, "the replayed write was answered from the journal, not redone"
    assert ok(kernel.home, "fs", "cat", "/shared/held.txt") == b"acknowledged\n"


DENIED = """
from agentos import sdk
from agentos.errors import AgentOSError

async def main():
    try:
        await sdk.open("/data/x", ["write", "create"])
    except AgentOSError as e:
        await sdk.write_console(e.code + "\\n")
    fd = await sdk.open("/shared/ok", ["read", "write", "create"])
    await sdk.write(fd, b"fine")
    await sdk.seek(fd, 0)
    data = await sdk.read(fd, 100)
    await sdk.close(fd)
    await sdk.write_console(f"{data!r} {await sdk.readdir('/shared')} {(await sdk.stat('/shared/ok'))['size']}\\n")
"""


def test_fs_cli_put_ls_stat_mkdir_rm(kernel: KernelProcess, tmp_path: Path) -> None:
    home = kernel.home
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(700_000))
    ok(home, "fs", "mkdir", "-p", "/data/in")
    assert b"700000 bytes" in ok(home, "fs", "put", str(local), "/data/in/blob")
    ok(home, "fs", "put", "-", "/data/in/note", stdin=b"from stdin\n")
    assert ok(home, "fs", "cat", "/data/in/blob") == local.read_bytes()
    assert ok(home, "fs", "cat", "/data/in/note") == b"from stdin\n"
    listing = ok(home, "fs", "ls", "/data/in").decode()
    assert "blob" in listing and "note" in listing and "700000" in listing
    st = json.loads(ok(home, "fs", "stat", "/data/in/note", "--json"))
    assert (st["kind"], st["size"]) == ("file", 11) and st["version_seq"] > 0
    assert "kind:" in ok(home, "fs", "stat", "/data/in").decode()
    r = agentos(home, "fs", "rm", "/data/in")
    assert r.returncode == 1 and b"EISDIR" in r.stderr
    r = agentos(home, "fs", "cat", "/data/missing")
    assert r.returncode == 1 and b"ENOENT" in r.stderr
    ok(home, "fs", "rm", "/data/in/blob")
    ok(home, "fs", "rm", "/data/in/note")
    ok(home, "fs", "rm", "-d", "/data/in")
    assert ok(home, "fs", "ls", "/data") == b""


def test_an_agent_without_fs_data_is_refused_but_works_in_shared(
    kernel: KernelProcess, agent_file: Any
) -> None:
    ok(kernel.home, "fs", "mkdir", "/data")
    pid = int(kernel.call("spawn", target=agent_file(DENIED)))
    with kernel.client() as c:
        status = c.call("wait", pid=pid, timeout=20)["status"]
        out = "".join(item["data"] for item in c.stream("logs", pid=pid))
        assert status == 0, out
        assert out == "EACCES\nb'fine' ['ok'] 4\n"
    assert ok(kernel.home, "fs", "cat", "/shared/ok") == b"fine"
    assert ok(kernel.home, "fs", "ls", "/data") == b""
