"""POSIX semantics of open files against the host's file system: unlink of an open file, readdir
order (across a restart), EOF, seeks and holes, ftruncate, fsync cutting a version a crash keeps.

The harness (``Pair``: each call on the VFS and on a host temp dir, outcomes compared, documented
differences asserted as documented) and open/rename are in ``test_vfs_posix.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_vfs_posix import Pair, run_pair
from test_vfs_syscalls import Rig

# -- unlink of an open file -------------------------------------------------------------------------------


def test_an_unlinked_open_file_is_read_and_written_through_its_fd_and_stays_gone(tmp_path: Path) -> None:
    def body(r: Rig, t: Pair) -> None:
        t.put("f", b"before")
        fds = t.open("f", ["read", "write"])
        assert isinstance(fds, tuple)
        ino = r(r.person, "stat", path="/w/f")["ino"]
        t.same("unlink", path="f")
        assert t.same("stat", path="f") == ("err", "ENOENT")
        assert t.same("readdir", path="") == ("ok", [])
        assert t.on(fds, "read", n=3) == ("ok", b"bef")
        t.on(fds, "write", data=b"-AFTER")
        t.on(fds, "seek", offset=0)
        assert t.on(fds, "read", n=100) == ("ok", b"bef-AFTER")
        twin = t.on(fds, "dup")[1]
        t.on(fds, "fsync")
        t.on(fds, "close")
        assert t.on(twin, "read", n=1) == ("ok", b""), "the dup shares the offset, at the end"
        t.on(twin, "close")
        assert t.same("stat", path="f") == ("err", "ENOENT"), "closing does not bring the name back"
        assert ino not in r.k.state.world.vfs.inodes, "the last close freed the inode"
        t.put("f", b"a new file")
        assert r(r.person, "stat", path="/w/f")["ino"] != ino
        assert t.cat("f") == b"a new file"

    run_pair(tmp_path, body)


def test_an_unlinked_open_file_is_freed_by_a_restart(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/f", b"x")
        fd = r(p, "open", path="/shared/f", flags=["write"])
        r(p, "write", fd=fd, data=b"pending")
        ino = r(p, "stat", path="/shared/f")["ino"]
        r(p, "unlink", path="/shared/f")
        assert ino in r.k.state.world.vfs.inodes, "held by its fd"
        await r.k.committer.durable(r.k.head_seq)
        await r.k.close(clean=False)  # the session is gone with the kernel: its fds are closed at boot
        r.boot()
        assert ino not in r.k.state.world.vfs.inodes
        r.fails(r.person, "ENOENT", "stat", path="/shared/f")
        assert r(r.person, "readdir", path="/shared") == []

    async def main() -> None:
        rig = Rig(tmp_path)
        rig.boot()
        try:
            await body(rig)
        finally:
            await rig.k.close(clean=False)

    asyncio.run(main())


# -- readdir order ----------------------------------------------------------------------------------------


def test_readdir_is_sorted_by_code_point_across_calls_changes_and_a_restart(tmp_path: Path) -> None:
    names = ["zeta", "Alpha", "beta", "_x", "b", "é", "a.txt", "a", "10", "9", "ß"]

    async def main() -> None:
        r = Rig(tmp_path)
        r.boot()
        try:
            p = r.person
            r(p, "mkdir", path="/d")
            for name in names:  # created in this (unsorted) order
                if name.startswith("a"):
                    r(p, "mkdir", path=f"/d/{name}")
                else:
                    r.put(p, f"/d/{name}", name.encode())
            want = sorted(names)
            assert r(p, "readdir", path="/d") == want == r(p, "readdir", path="/d/")
            r(p, "rename", src="/d/zeta", dst="/d/0")
            r(p, "unlink", path="/d/b")
            want = sorted({*names, "0"} - {"zeta", "b"})
            assert r(p, "readdir", path="/d") == want
            await r.k.committer.durable(r.k.head_seq)
            await r.k.close(clean=False)
            r.boot()
            assert r(r.person, "readdir", path="/d") == want, "the same order after a restart"
        finally:
            await r.k.close(clean=False)

    asyncio.run(main())


# -- EOF, seeks, holes ------------------------------------------------------------------------------------


def test_eof_seeks_and_holes_behave_as_on_the_host(tmp_path: Path) -> None:
    def body(r: Rig, t: Pair) -> None:
        fds = t.open("f", ["read", "write", "create"])
        assert isinstance(fds, tuple)
        assert t.on(fds, "read", n=10) == ("ok", b""), "an empty file: EOF at once"
        t.on(fds, "write", data=b"abcdef")
        assert t.on(fds, "read", n=10) == ("ok", b""), "at the end: EOF"
        assert t.on(fds, "read", n=0) == ("ok", b"")
        assert t.on(fds, "seek", offset=-2, whence="end") == ("ok", 4)
        assert t.on(fds, "read", n=10) == ("ok", b"ef")
        assert t.on(fds, "seek", offset=-3, whence="cur") == ("ok", 3)
        assert t.on(fds, "seek", offset=2, whence="cur") == ("ok", 5)
        for whence, offset in (("set", -1), ("cur", -6), ("end", -7)):
            assert t.on(fds, "seek", offset=offset, whence=whence) == ("err", "EINVAL"), whence
        assert t.on(fds, "read", n=10) == ("ok", b"f"), "a refused seek leaves the offset"
        assert t.on(fds, "seek", offset=10, whence="end") == ("ok", 16)
        assert t.on(fds, "read", n=10) == ("ok", b""), "past the end: EOF, and no growth"
        assert t.same("stat", path="f") == ("ok", {"kind": "file", "size": 6})
        t.on(fds, "write", data=b"Z")
        assert t.same("stat", path="f") == ("ok", {"kind": "file", "size": 17})
        t.on(fds, "seek", offset=0)
        assert t.on(fds, "read", n=100) == ("ok", b"abcdef" + bytes(10) + b"Z"), "a hole of zeros"
        t.on(fds, "ftruncate", size=3)
        assert t.on(fds, "read", n=10) == ("ok", b""), "the offset is past the new end"
        t.on(fds, "ftruncate", size=8)
        t.on(fds, "seek", offset=0)
        assert t.on(fds, "read", n=100) == ("ok", b"abc" + bytes(5)), "growing reads as zeros"
        t.on(fds, "close")
        t.same("truncate", path="f", size=20)
        assert t.cat("f") == b"abc" + bytes(17)
        app = t.open("f", ["read", "append"])
        assert isinstance(app, tuple)
        t.on(app, "seek", offset=0)
        t.on(app, "write", data=b"!")  # append: at the end, wherever the offset was
        assert t.on(app, "seek", offset=0, whence="cur") == ("ok", 21)
        t.on(app, "close")
        assert t.cat("f") == b"abc" + bytes(17) + b"!"

    run_pair(tmp_path, body)


def test_ftruncate_of_a_read_only_fd_is_ebadf_as_documented(tmp_path: Path) -> None:
    def body(r: Rig, t: Pair) -> None:
        t.put("f", b"abc")
        fds = t.open("f", ["read"])
        assert isinstance(fds, tuple)
        assert t.vfs.call("ftruncate", fd=fds[0], size=0) == ("err", "EBADF")
        assert t.host.call("ftruncate", fd=fds[1], size=0) == ("err", "EINVAL"), "Linux's code"
        t.on(fds, "close")
        assert t.cat("f") == b"abc"

    run_pair(tmp_path, body)


# -- fsync ------------------------------------------------------------------------------------------------


def test_fsync_cuts_a_version_that_a_crash_keeps(tmp_path: Path) -> None:
    async def main() -> None:
        r = Rig(tmp_path)
        r.boot()
        try:
            p = r.person
            fd = r(p, "open", path="/shared/f", flags=["write", "create"])
            r(p, "write", fd=fd, data=b"synced")
            r(p, "fsync", fd=fd)
            seq = r(p, "stat", path="/shared/f")["version_seq"]
            r(p, "write", fd=fd, data=b" then pending")
            rows = r(p, "fs_history", path="/shared/f")["versions"]
            assert [(row["op"], row.get("cut")) for row in rows if row["seq"] == seq] == [
                ("version", "fsync")
            ]
            await r.k.committer.durable(r.k.head_seq)
            await r.k.close(clean=False)
            r.boot()
            got = r(r.person, "fs_read_version", path="/shared/f", seq=seq, exact=True)
            assert (got["data"], got["seq"]) == (b"synced", seq), "the fsync'd version, as it was"
            assert r.cat("/shared/f") == b"synced then pending", "and the writes after it"
        finally:
            await r.k.close(clean=False)

    asyncio.run(main())
