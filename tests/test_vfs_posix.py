"""POSIX semantics of the versioned tree, checked against the host's own file system.

Each case runs the same calls on the VFS (an in-process kernel, driven through ``Kernel.call`` by a
session, which holds root as this test process does) and on a host temp dir, and asserts the same
results and the same error codes — except where ``docs/vfs.md`` ("Where it differs from POSIX")
declares a difference, which is then asserted as documented. ``Pair`` is the harness; here: open
(every flag set, mode bits) and rename. Open files (unlink, readdir order, EOF, seeks, fsync) are in
``test_vfs_posix_io.py``, random sequences in ``test_vfs_posix_machine.py``. Covered elsewhere and
not repeated: dup/dup2 and EMFILE (``test_vfs_links.py``), EBADF after close (``test_vfs_syscalls.py``).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_vfs_syscalls import Rig

from agentos.errors import AgentOSError
from agentos.kernel.boot import rebuild_state
from agentos.kernel.calls import Caller
from agentos.state.world import state_hash

FLAGS = ("read", "write", "append", "create", "exclusive", "truncate")
WHENCE = {"set": os.SEEK_SET, "cur": os.SEEK_CUR, "end": os.SEEK_END}
Outcome = tuple[str, Any]  # ("ok", result) or ("err", "ENOENT")


def host_flags(flags: Any) -> int:
    """The ``os.open`` flags for the VFS's ``open`` flags (``append`` implies writing, as in the VFS)."""
    writing = "write" in flags or "append" in flags
    out = os.O_RDWR if writing and "read" in flags else os.O_WRONLY if writing else os.O_RDONLY
    for name, bit in (("append", os.O_APPEND), ("create", os.O_CREAT), ("exclusive", os.O_EXCL)):
        out |= bit if name in flags else 0
    return out | (os.O_TRUNC if "truncate" in flags else 0)


def declared_open_error(flags: Any) -> str | None:
    """The VFS's documented refusals of flag sets POSIX leaves unspecified (``docs/vfs.md``)."""
    writing = "write" in flags or "append" in flags
    if "truncate" in flags and not writing:
        return "EINVAL"  # O_RDONLY|O_TRUNC: unspecified by POSIX (Linux truncates)
    if "exclusive" in flags and "create" not in flags:
        return "EINVAL"  # O_EXCL without O_CREAT: undefined by POSIX (Linux ignores it)
    return None


class Host:
    """The host side: a temp dir, the same calls through ``os``, errors as their errno names."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def call(self, name: str, **a: Any) -> Outcome:
        try:
            return ("ok", getattr(self, "_" + name)(**a))
        except OSError as e:
            return ("err", errno.errorcode[e.errno])

    def _open(self, path: str, flags: Any, mode: int = 0o644) -> int:
        return os.open(self.path(path), host_flags(flags), mode)

    def _read(self, fd: int, n: int) -> bytes:
        return os.read(fd, n)

    def _write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def _seek(self, fd: int, offset: int, whence: str = "set") -> int:
        return os.lseek(fd, offset, WHENCE[whence])

    def _close(self, fd: int) -> None:
        os.close(fd)

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)

    def _dup(self, fd: int) -> int:
        return os.dup(fd)

    def _ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def _truncate(self, path: str, size: int) -> None:
        os.truncate(self.path(path), size)

    def _mkdir(self, path: str, mode: int = 0o755) -> None:
        os.mkdir(self.path(path), mode)

    def _rmdir(self, path: str) -> None:
        os.rmdir(self.path(path))

    def _unlink(self, path: str) -> None:
        os.unlink(self.path(path))

    def _rename(self, src: str, dst: str) -> None:
        os.rename(self.path(src), self.path(dst))

    def _stat(self, path: str) -> dict[str, Any]:
        st = os.stat(self.path(path))
        kind = "dir" if os.path.isdir(self.path(path)) else "file"
        return {"kind": kind} | ({"size": st.st_size} if kind == "file" else {})

    def _readdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.path(path)))


class Vfs:
    """The VFS side: paths under ``base``, called by ``who`` through the kernel's syscall path."""

    def __init__(self, rig: Rig, who: Caller, base: str) -> None:
        self.rig, self.who, self.base = rig, who, base

    def call(self, name: str, **a: Any) -> Outcome:
        for key in ("path", "src", "dst"):
            if key in a:
                a[key] = f"{self.base}/{a[key]}"
        try:
            out = self.rig(self.who, name, **a)
        except AgentOSError as e:
            return ("err", e.code)
        if name == "stat":
            out = {"kind": out["kind"]} | ({"size": out["size"]} if out["kind"] == "file" else {})
        return ("ok", out)


class Pair:
    """One call on both sides, the outcomes compared. An open file is a pair of fds (vfs, host)."""

    def __init__(self, rig: Rig, who: Caller, base: str, host_root: Path) -> None:
        self.vfs, self.host = Vfs(rig, who, base), Host(host_root)
        rig(who, "mkdir", path=base)

    def same(self, name: str, **a: Any) -> Outcome:
        """A path call on both sides: the same outcome (kind, size of a file, listing, error code)."""
        ours, theirs = self.vfs.call(name, **a), self.host.call(name, **a)
        assert ours == theirs, (name, a, "vfs", ours, "host", theirs)
        return ours

    def on(self, fds: tuple[int, int], name: str, **a: Any) -> Outcome:
        """An fd call on both sides, each on its own fd of the pair."""
        ours, theirs = self.vfs.call(name, fd=fds[0], **a), self.host.call(name, fd=fds[1], **a)
        if name == "dup" and ours[0] == theirs[0] == "ok":
            return ("ok", (ours[1], theirs[1]))
        assert ours == theirs, (name, a, "vfs", ours, "host", theirs)
        return ours

    def open(self, path: str, flags: Any, mode: int = 0o644) -> tuple[int, int] | str:
        """Open on both sides: the fd pair, or the error code both gave (or the VFS's documented one)."""
        declared = declared_open_error(flags)
        ours = self.vfs.call("open", path=path, flags=list(flags), mode=mode)
        if declared is not None:
            assert ours == ("err", declared), (path, flags, ours)
            return declared
        theirs = self.host.call("open", path=path, flags=flags, mode=mode)
        if theirs[0] == "ok" and os.path.isdir(self.host.path(path)):
            os.close(theirs[1])  # POSIX opens a directory to read; the VFS lists it with readdir instead
            assert ours == ("err", "EISDIR"), (path, flags, ours)
            return "EISDIR"
        assert ours[0] == theirs[0] and (ours[0] == "ok" or ours == theirs), (path, flags, ours, theirs)
        return (ours[1], theirs[1]) if ours[0] == "ok" else ours[1]

    def put(self, path: str, data: bytes) -> None:
        fds = self.open(path, ["write", "create", "truncate"])
        assert isinstance(fds, tuple)
        self.on(fds, "write", data=data)
        self.on(fds, "close")

    def cat(self, path: str) -> bytes:
        """A file's bytes, the same on both sides."""
        fds = self.open(path, ["read"])
        assert isinstance(fds, tuple), fds
        data = self.on(fds, "read", n=1 << 16)[1]
        self.on(fds, "close")
        return data


def run_pair(tmp_path: Path, body: Callable[[Rig, Pair], None]) -> None:
    """``body`` with a booted kernel and a pair rooted at ``/w`` and a host dir; then the state
    rebuilt from the log must equal the live one."""

    async def main() -> None:
        rig = Rig(tmp_path)
        rig.boot()
        host = tmp_path / "host"
        host.mkdir()
        try:
            body(rig, Pair(rig, rig.person, "/w", host))
            await rig.k.committer.durable(rig.k.head_seq)
            live, seq = state_hash(rig.k.state), rig.k.state.seq
            assert state_hash(rebuild_state(rig.k.log, until=seq, conn=rig.k.reader)) == live
        finally:
            await rig.k.close(clean=False)

    asyncio.run(main())


# -- open: every flag combination, on every kind of target ---------------------------------------------

SUBSETS = [c for n in range(len(FLAGS) + 1) for c in itertools.combinations(FLAGS, n)]
TARGETS = ("missing", "file", "dir", "missing-parent", "under-a-file")


def test_every_open_flag_combination_behaves_as_on_the_host(tmp_path: Path) -> None:
    """64 flag sets x 5 targets: the same fd-or-error; then what the fd may read and write, and
    the file's bytes after (created, truncated, appended to), the same on both sides."""

    def body(r: Rig, t: Pair) -> None:
        for i, (flags, target) in enumerate(itertools.product(SUBSETS, TARGETS)):
            case = f"c{i}"
            t.same("mkdir", path=case)
            if target == "file":
                t.put(f"{case}/x", b"0123456789")
            elif target == "dir":
                t.same("mkdir", path=f"{case}/x")
            elif target == "under-a-file":
                t.put(f"{case}/f", b"f")
            path = {"missing-parent": f"{case}/no/x", "under-a-file": f"{case}/f/x"}.get(target, f"{case}/x")
            fds = t.open(path, flags)
            if not isinstance(fds, tuple):
                continue
            t.on(fds, "read", n=4)
            t.on(fds, "write", data=b"AB")
            t.on(fds, "seek", offset=0)
            t.on(fds, "read", n=100)
            t.on(fds, "close")
            assert t.same("stat", path=path)[0] == "ok"
            t.cat(path)

    run_pair(tmp_path, body)


def test_open_create_applies_the_mode_and_owner_bits_bind_agents(tmp_path: Path) -> None:
    """EACCES from mode bits, for an agent (POSIX, as a non-root owner): reading needs 0o400,
    writing 0o200, a new name 0o200 on the directory; an existing name needs nothing of it, and
    ``exclusive`` on an existing name is EEXIST before any permission."""

    def body(r: Rig, t: Pair) -> None:
        a = r.agent()
        fd = r(a, "open", path="/shared/new", flags=["write", "create"], mode=0o600)
        assert r(r.person, "stat", path="/shared/new")["mode"] == 0o600
        r(a, "close", fd=fd)
        for mode in (0o000, 0o200, 0o400, 0o600):
            r(a, "chmod", path="/shared/new", mode=mode)
            for flags in SUBSETS:
                if declared_open_error(flags) or "exclusive" in flags:
                    continue
                writing = bool({"write", "append"} & set(flags))
                reading = "read" in flags or not writing
                denied = (reading and not mode & 0o400) or (writing and not mode & 0o200)
                try:
                    r(a, "close", fd=r(a, "open", path="/shared/new", flags=list(flags)))
                    got = "ok"
                except AgentOSError as e:
                    got = e.code
                assert got == ("EACCES" if denied else "ok"), (oct(mode), flags, got)
        r(a, "mkdir", path="/shared/ro")
        r.put(a, "/shared/ro/there", b"x")
        r(a, "chmod", path="/shared/ro", mode=0o500)
        r.fails(a, "EACCES", "open", path="/shared/ro/new", flags=["write", "create"])
        r.fails(a, "EEXIST", "open", path="/shared/ro/there", flags=["write", "create", "exclusive"])
        r(a, "close", fd=r(a, "open", path="/shared/ro/there", flags=["write", "create", "truncate"]))
        assert r.cat("/shared/ro/there") == b"", "an existing name: the directory's bits do not matter"

    run_pair(tmp_path, body)


# -- rename -----------------------------------------------------------------------------------------------


def test_rename_over_an_existing_file_is_atomic_and_its_open_fds_keep_the_old_bytes(tmp_path: Path) -> None:
    def body(r: Rig, t: Pair) -> None:
        t.put("old", b"the old target")
        t.put("new", b"the new content")
        held = t.open("old", ["read", "write"])
        assert isinstance(held, tuple)
        ino_new = r(r.person, "stat", path="/w/new")["ino"]
        t.same("rename", src="new", dst="old")
        assert r(r.person, "stat", path="/w/old")["ino"] == ino_new, "the name now names the moved file"
        assert t.cat("old") == b"the new content", "the old target's content is gone from the name"
        assert t.same("stat", path="new") == ("err", "ENOENT")
        assert t.same("readdir", path="") == ("ok", ["old"])
        assert t.on(held, "read", n=100) == ("ok", b"the old target"), "the fd still reads its file"
        t.on(held, "write", data=b" and more")
        t.on(held, "close")
        assert t.cat("old") == b"the new content", "writing to the replaced file changes nothing named"
        assert t.same("readdir", path="") == ("ok", ["old"])

    run_pair(tmp_path, body)


RENAME_CASES = [  # (what is there first, src, dst) — the outcome must be the host's
    ({"d": "dir", "e": "dir"}, "d", "e"),  # a directory over an empty one
    ({"d": "dir", "e": "dir", "e/x": "file"}, "d", "e"),  # over a non-empty one: ENOTEMPTY
    ({"d": "dir", "d/s": "dir"}, "d", "d/s/d"),  # into its own subdirectory: EINVAL
    ({"d": "dir"}, "d", "d/x"),  # into itself: EINVAL
    ({"d": "dir", "d/s": "dir"}, "d/s", "d"),  # over its own parent: ENOTEMPTY
    ({"f": "file", "d": "dir"}, "f", "d"),  # a file over a directory: EISDIR
    ({"f": "file", "d": "dir"}, "d", "f"),  # a directory over a file: ENOTDIR
    ({"f": "file"}, "f", "f"),  # onto itself: nothing
    ({"d": "dir"}, "d", "d"),
    ({"f": "file"}, "f/", "g"),  # a file named as a directory: ENOTDIR
    ({"f": "file"}, "f", "g/"),
    ({"d": "dir"}, "d/", "e/"),  # a directory may be named with a slash
    ({"f": "file"}, "f", "no/g"),  # a missing parent: ENOENT
    ({"f": "file", "g": "file"}, "f", "g/h"),  # a parent that is a file: ENOTDIR
    ({}, "nothing", "g"),
    ({"f": "file", "d": "dir", "d/x": "file"}, "f", "d/x"),  # across directories, over a file
]


@pytest.mark.parametrize(("tree", "src", "dst"), RENAME_CASES)
def test_rename_of_files_and_directories_behaves_as_on_the_host(
    tmp_path: Path, tree: dict[str, str], src: str, dst: str
) -> None:
    def body(r: Rig, t: Pair) -> None:
        for path, kind in tree.items():
            if kind == "dir":
                t.same("mkdir", path=path)
            else:
                t.put(path, path.encode())
        renamed = t.same("rename", src=src, dst=dst)
        assert renamed[0] == "err" or t.same("stat", path=dst)[0] == "ok", "a rename that succeeded left dst"
        for d in ("", *[p for p, kind in tree.items() if kind == "dir"]):
            t.same("readdir", path=d)
        for p, kind in tree.items():
            if kind == "file" and t.same("stat", path=p)[0] == "ok":
                t.cat(p)
        t.same("stat", path=dst)

    run_pair(tmp_path, body)
