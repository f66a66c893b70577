"""The file syscalls of slice 2: dup/dup2, truncate/ftruncate, link/symlink/readlink, chmod and
mode bits, the ``files`` quota, and capability checks on the physical path.

In-process (a kernel booted on a fresh home, driven through ``Kernel.call``): POSIX semantics and
each error code, versions, what a user reads back, the state rebuilt from the log equal to the
live one; a battery of symlink escapes by an agent holding only ``fs:/shared``. Then a real
kernel process: an SDK agent using the new calls, replayed after kill -9 of the kernel.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentos import param
from agentos.kernel.sysfile import MAX_FDS
from agentos.state import events as ev
from agentos.state.vfs import FIRST_FD, FileSystem, PathError
from agentos.state.vfs_apply import VFS_APPLY
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig

SHARED_ONLY = [{"resource": "fs:/shared", "rights": ["read", "write", "list"]}, {"resource": "sys:fd"}]


class Rig(KernelRig):
    """A kernel on a fresh home, a session (the person, who holds root) and agents."""


def run(tmp_path: Path, body: Callable[[Rig], None]) -> None:
    run_rig(Rig(tmp_path), body, check_rebuild=True)


# -- FileSystem.canonical: where resolve goes, with no symlink left ------------------------------------------

NAMES = ["a", "b", "f", "s", "t", ".", "..", "zz"]
TARGETS = ["/", "/a", "a", "..", "../..", "b/..", "/a/b/f", "s", "t/", "a/s", "zz", "/a/../a/b"]


@st.composite
def trees(draw: st.DrawFn) -> FileSystem:
    """/a, /a/b, files /f, /a/f and symlinks s and t in each directory, with drawn targets."""
    fs, ino = FileSystem(), 1
    apply = VFS_APPLY
    apply[ev.VfsMkfs](fs, 1, 0, ev.VfsMkfs(ino=ino))
    dirs = {"/": 1}
    for path, parent, name, kind in [("/a", "/", "a", "dir"), ("/a/b", "/a", "b", "dir")]:
        ino += 1
        apply[ev.VfsCreated](
            fs, ino, 0, ev.VfsCreated(parent=dirs[parent], name=name, ino=ino, kind=kind, mode=0o755, pid=1)
        )
        dirs[path] = ino
    for parent in ("/", "/a", "/a/b"):
        ino += 1
        apply[ev.VfsCreated](
            fs, ino, 0, ev.VfsCreated(parent=dirs[parent], name="f", ino=ino, kind="file", mode=0o644, pid=1)
        )
        for name in ("s", "t"):
            ino += 1
            target = draw(st.sampled_from(TARGETS))
            created = ev.VfsCreated(
                parent=dirs[parent], name=name, ino=ino, kind="symlink", mode=0o777, pid=1, target=target
            )
            apply[ev.VfsCreated](fs, ino, 0, created)
    return fs


@settings(max_examples=300, deadline=None)
@given(
    fs=trees(), parts=st.lists(st.sampled_from(NAMES), max_size=6), slash=st.booleans(), follow=st.booleans()
)
def test_canonical_names_what_resolve_finds_with_no_symlink_in_it(
    fs: FileSystem, parts: list[str], slash: bool, follow: bool
) -> None:
    path = "/" + "/".join(parts) + ("/" if slash and parts else "")
    canon = fs.canonical(path, follow=follow)
    assert canon.startswith("/") and posixpath.normpath(canon) == canon and "//" not in canon
    head, _, name = path.rstrip("/").rpartition("/")
    holder = fs.lookup(head + "/")
    final = fs.inodes[holder].entries.get(name) if holder is not None else None
    if holder is not None and name not in ("", ".", "..") and not slash:
        if not follow or final is None or fs.inodes[final].kind != "symlink":
            assert canon == posixpath.join(fs.canonical(head + "/"), name), (
                "its directory's path, plus the name"
            )
    try:
        ino = fs.resolve(path, follow=follow)
    except PathError:
        return
    assert fs.resolve(canon, follow=False) == ino, (path, canon)
    comps = canon.strip("/").split("/") if canon != "/" else []
    above = [fs.resolve("/" + "/".join(comps[:i]), follow=False) for i in range(1, len(comps))]
    assert all(fs.inodes[n].kind == "dir" for n in above), "no symlink before the last component"
    if fs.inodes[ino].kind == "dir":
        assert canon == fs.path_of(ino), "a directory has one physical path"


# -- dup, dup2 --------------------------------------------------------------------------------------------


def test_dup_shares_the_offset_and_dup2_closes_what_it_replaces(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p, a = r.person, r.agent()
        r.put(p, "/shared/f", b"hello world")
        fd = r(a, "open", path="/shared/f")
        twin = r(a, "dup", fd=fd)
        assert twin == fd + 1, "the lowest free fd"
        assert r(a, "read", fd=fd, n=5) == b"hello"
        assert r(a, "read", fd=twin, n=3) == b" wo", "one offset for both"
        r(a, "seek", fd=twin, offset=0)
        assert r(a, "read", fd=fd, n=2) == b"he"
        r(a, "close", fd=fd)
        assert r(a, "read", fd=twin, n=3) == b"llo", "the other fd stays open"
        # dup2 over an fd open for writing: it is closed as by close, so its pending write is cut
        w = r(a, "open", path="/shared/g", flags=["write", "create"])
        r(a, "write", fd=w, data=b"pending")
        assert r(p, "stat", path="/shared/g")["version_seq"] == 0
        assert r(a, "dup2", fd=twin, new_fd=w) == w
        assert r(p, "stat", path="/shared/g")["version_seq"] > 0 and r.cat("/shared/g") == b"pending"
        assert r(a, "read", fd=w, n=100) == b" world", "w now shares twin's file and offset"
        assert r(a, "dup2", fd=w, new_fd=40) == 40 and r(a, "seek", fd=40, offset=1) == 1
        assert r(a, "read", fd=twin, n=4) == b"ello"
        assert r(a, "dup2", fd=w, new_fd=w) == w, "onto itself: nothing to do"
        r.fails(a, "EBADF", "dup", fd=99)
        r.fails(a, "EBADF", "dup2", fd=99, new_fd=50)
        r.fails(a, "EBADF", "dup2", fd=w, new_fd=FIRST_FD + MAX_FDS)
        r.fails(a, "EBADF", "dup2", fd=w, new_fd=1)
        r.fails(r.agent(), "EBADF", "dup", fd=w)  # fds are per process
        null = r(a, "open", path="/dev/null", flags=["write"])
        assert r(a, "write", fd=r(a, "dup", fd=null), data=b"gone") == 4, "a mounted file's fd, too"

    run(tmp_path, body)


def test_dup_stops_at_the_fd_limit(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        r.put(r.person, "/shared/f", b"x")
        fd = r(a, "open", path="/shared/f")
        for _ in range(MAX_FDS - 1):
            r(a, "dup", fd=fd)
        r.fails(a, "EMFILE", "dup", fd=fd)
        r.fails(a, "EMFILE", "open", path="/shared/f")
        r(a, "close", fd=fd + 7)
        assert r(a, "dup", fd=fd) == fd + 7

    run(tmp_path, body)


# -- truncate, ftruncate ----------------------------------------------------------------------------------


def test_truncate_cuts_a_version_at_once_and_ftruncate_at_close(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p, a = r.person, r.agent()
        r.put(a, "/shared/t", b"abcdef")
        first = r(p, "stat", path="/shared/t")["version_seq"]
        r(a, "truncate", path="/shared/t", size=3)
        st = r(p, "stat", path="/shared/t")
        assert st["size"] == 3 and st["version_seq"] > first and r.cat("/shared/t") == b"abc"
        r(a, "truncate", path="/shared/t", size=6)
        assert r.cat("/shared/t") == b"abc\0\0\0", "growing reads as zeros"
        seq = r.k.state.seq
        r(a, "truncate", path="/shared/t", size=6)
        assert r.k.state.seq == seq, "the same size: no change, no version"
        r(a, "symlink", target="t", path="/shared/lt")
        r(a, "truncate", path="/shared/lt", size=1)
        assert r.cat("/shared/t") == b"a", "through a symlink: its target"
        r(p, "mkdir", path="/shared/dir")
        r.fails(a, "EISDIR", "truncate", path="/shared/dir", size=0)
        r.fails(a, "EFBIG", "truncate", path="/shared/t", size=param.MAX_FILE_BYTES + 1)
        r.fails(a, "ENOENT", "truncate", path="/shared/none", size=0)
        r.fails(a, "EINVAL", "truncate", path="/shared/t", size=-1)
        # ftruncate: pending until close, as a write
        fd = r(a, "open", path="/shared/t", flags=["read", "write", "truncate"])
        r(a, "write", fd=fd, data=b"hello world")
        cut = r(p, "stat", path="/shared/t")["version_seq"]
        r(a, "ftruncate", fd=fd, size=5)
        st = r(p, "stat", path="/shared/t")
        assert st["size"] == 5 and st["version_seq"] == cut, "pending"
        r(a, "seek", fd=fd, offset=0)
        assert r(a, "read", fd=fd, n=100) == b"hello"
        r(a, "ftruncate", fd=fd, size=7)
        r(a, "close", fd=fd)
        assert r(p, "stat", path="/shared/t")["version_seq"] > cut and r.cat("/shared/t") == b"hello\0\0"
        ro = r(a, "open", path="/shared/t")
        r.fails(a, "EBADF", "ftruncate", fd=ro, size=0)
        rw = r(a, "open", path="/shared/t", flags=["write"])
        r.fails(a, "EFBIG", "ftruncate", fd=rw, size=param.MAX_FILE_BYTES + 1)
        r.fails(a, "EBADF", "ftruncate", fd=99, size=0)

    run(tmp_path, body)


def test_truncate_is_charged_to_stored_bytes(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent(limits={"stored_bytes": 4000})
        group = r.k.state.world.procs.get(a.pid).group
        r.put(a, "/shared/q", b"x" * 100)
        before = r.k.state.ledger.usage.used[group]["stored_bytes"]
        r(a, "truncate", path="/shared/q", size=50)
        assert r.k.state.ledger.usage.used[group]["stored_bytes"] > before
        err = r.fails(a, "EDQUOT", "truncate", path="/shared/q", size=10_000_000)
        assert "stored_bytes" in str(err)
        assert r.cat("/shared/q") == b"x" * 50, "refused: nothing changed"

    run(tmp_path, body)


# -- hard links, symlinks ---------------------------------------------------------------------------------


def test_hard_links_name_one_file(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p, a = r.person, r.agent()
        r.put(a, "/shared/a", b"one")
        r(a, "link", src="/shared/a", dst="/shared/b")
        sa, sb = r(p, "stat", path="/shared/a"), r(p, "stat", path="/shared/b")
        assert sa["ino"] == sb["ino"] and sa["nlink"] == sb["nlink"] == 2
        r.put(a, "/shared/b", b"written through b")
        assert r.cat("/shared/a") == b"written through b"
        r(a, "unlink", path="/shared/a")
        assert r(p, "stat", path="/shared/b")["nlink"] == 1
        assert r.cat("/shared/b") == b"written through b", "the other name keeps the file"
        r(p, "mkdir", path="/shared/d")
        r.fails(a, "EPERM", "link", src="/shared/d", dst="/shared/d2")
        r.fails(a, "EEXIST", "link", src="/shared/b", dst="/shared/d")
        r.fails(a, "ENOENT", "link", src="/shared/none", dst="/shared/x")
        r.fails(a, "ENOENT", "link", src="/shared/b", dst="/shared/none/x")
        r.fails(a, "EXDEV", "link", src="/shared/b", dst="/tmp/b")
        r(a, "symlink", target="b", path="/shared/sb")
        r(a, "link", src="/shared/sb", dst="/shared/sb2")
        assert r(p, "stat", path="/shared/sb2", follow=False)["kind"] == "symlink", "link names the link"
        assert r.cat("/shared/sb2") == b"written through b"

    run(tmp_path, body)


def test_link_needs_write_on_both_names(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/ro")
        r.put(p, "/ro/x", b"read only")
        a = r.agent(caps=[*SHARED_ONLY, {"resource": "fs:/ro", "rights": ["read", "list"]}])
        r.put(a, "/shared/mine", b"m")
        r.fails(a, "EACCES", "link", src="/ro/x", dst="/shared/x")
        r.fails(a, "EACCES", "link", src="/shared/mine", dst="/ro/mine")
        assert r(p, "readdir", path="/ro") == ["x"] and r(p, "readdir", path="/shared") == ["mine"]

    run(tmp_path, body)


def test_symlinks_resolve_relative_absolute_dangling_and_loops(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        r(a, "mkdir", path="/shared/d")
        r.put(a, "/shared/d/f", b"F")
        r(a, "symlink", target="d/f", path="/shared/rel")
        r(a, "symlink", target="/shared/d", path="/shared/abs")
        assert r.cat("/shared/rel") == b"F" and r.cat("/shared/abs/f") == b"F"
        assert r(a, "readdir", path="/shared/abs") == ["f"]
        assert "d" in r(a, "readdir", path="/shared/abs/.."), ".. after a symlink: physical (/shared)"
        assert r(a, "readlink", path="/shared/rel") == "d/f"
        st = r(a, "stat", path="/shared/rel", follow=False)
        assert (st["kind"], st["target"], st["size"]) == ("symlink", "d/f", 3)
        assert r(a, "stat", path="/shared/rel")["kind"] == "file"
        assert r(a, "stat", path="/shared/abs/")["kind"] == "dir"
        # dangling: not found, until open(create) makes what it names
        r(a, "symlink", target="made/../made-by-link", path="/shared/dang")
        r.fails(a, "ENOENT", "open", path="/shared/dang")
        r.fails(a, "EEXIST", "open", path="/shared/dang", flags=["write", "create", "exclusive"])
        r(a, "symlink", target="new", path="/shared/dang2")
        fd = r(a, "open", path="/shared/dang2", flags=["write", "create"])
        r(a, "write", fd=fd, data=b"created at the target")
        r(a, "close", fd=fd)
        assert r.cat("/shared/new") == b"created at the target"
        # loops
        r(a, "symlink", target="l2", path="/shared/l1")
        r(a, "symlink", target="l1", path="/shared/l2")
        r.fails(a, "ELOOP", "open", path="/shared/l1")
        r.fails(a, "ELOOP", "stat", path="/shared/l1/x")
        assert r(a, "stat", path="/shared/l1", follow=False)["target"] == "l2"
        # errors
        r.fails(a, "EINVAL", "readlink", path="/shared/d/f")
        r.fails(a, "ENOENT", "readlink", path="/shared/none")
        r.fails(a, "EEXIST", "symlink", target="x", path="/shared/d")
        r.fails(a, "ENOENT", "symlink", target="x", path="/shared/z/")
        r.fails(a, "ENOENT", "symlink", target="x", path="/shared/none/z")
        r.fails(a, "EINVAL", "symlink", target="", path="/shared/empty")
        r.fails(a, "EPERM", "symlink", target="x", path="/tmp/s")
        # unlink removes the link, rename moves it
        r(a, "unlink", path="/shared/abs")
        assert r.cat("/shared/d/f") == b"F" and "abs" not in r(a, "readdir", path="/shared")
        r(a, "symlink", target="/shared/d/f", path="/shared/abs2")
        r(a, "rename", src="/shared/abs2", dst="/shared/d/moved")
        assert r.cat("/shared/d/moved") == b"F" and r(a, "readlink", path="/shared/d/moved") == "/shared/d/f"
        r.fails(a, "ENOTDIR", "rmdir", path="/shared/rel")

    run(tmp_path, body)


# -- chmod and mode bits ----------------------------------------------------------------------------------


def test_mode_bits_bind_agents_not_sessions(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p, a = r.person, r.agent()
        r.put(a, "/shared/m", b"data")
        r(a, "chmod", path="/shared/m", mode=0o444)
        assert r(p, "stat", path="/shared/m")["mode"] == 0o444
        r.fails(a, "EACCES", "open", path="/shared/m", flags=["write"])
        r.fails(a, "EACCES", "truncate", path="/shared/m", size=0)
        assert r(a, "read", fd=r(a, "open", path="/shared/m"), n=9) == b"data"
        r.put(p, "/shared/m", b"session")  # the person holds root: mode bits bind agents only
        r(a, "chmod", path="/shared/m", mode=0o200)
        r.fails(a, "EACCES", "open", path="/shared/m")
        r.fails(a, "EACCES", "open", path="/shared/m", flags=["read", "write"])
        r(a, "write", fd=r(a, "open", path="/shared/m", flags=["append"]), data=b"+")
        r(a, "chmod", path="/shared/m", mode=0o644)  # its owner may always change it back
        # a directory's write bit guards its names, its read bit its listing
        r(a, "mkdir", path="/shared/ro", mode=0o755)
        r.put(a, "/shared/ro/f", b"f")
        r(a, "chmod", path="/shared/ro", mode=0o555)
        for call, args in [
            ("open", {"path": "/shared/ro/new", "flags": ["write", "create"]}),
            ("mkdir", {"path": "/shared/ro/d"}),
            ("symlink", {"target": "x", "path": "/shared/ro/s"}),
            ("link", {"src": "/shared/m", "dst": "/shared/ro/m"}),
            ("unlink", {"path": "/shared/ro/f"}),
            ("rename", {"src": "/shared/ro/f", "dst": "/shared/f"}),
            ("rename", {"src": "/shared/m", "dst": "/shared/ro/m"}),
        ]:
            r.fails(a, "EACCES", call, **args)
        r.put(a, "/shared/ro/f", b"its own bits allow it")  # the file's bits, not the directory's
        r(p, "mkdir", path="/shared/ro/by-person")
        r(a, "chmod", path="/shared/ro", mode=0o300)
        r.fails(a, "EACCES", "readdir", path="/shared/ro")
        assert r(p, "readdir", path="/shared/ro") == ["by-person", "f"]
        # open(create) applies the mode asked for; the new fd may still write (as POSIX)
        fd = r(a, "open", path="/shared/mine", flags=["write", "create"], mode=0o400)
        r(a, "write", fd=fd, data=b"ok")
        assert r(p, "stat", path="/shared/mine")["mode"] == 0o400
        r.fails(a, "EACCES", "open", path="/shared/mine", flags=["write"])
        # chmod itself needs the write right
        reader = r.agent(
            caps=[{"resource": "fs:/shared", "rights": ["read", "list"]}, {"resource": "sys:fd"}]
        )
        r.fails(reader, "EACCES", "chmod", path="/shared/mine", mode=0o644)
        r.fails(a, "ENOENT", "chmod", path="/shared/none", mode=0o644)
        r.fails(a, "EINVAL", "chmod", path="/shared/mine", mode=0o10000)

    run(tmp_path, body)


# -- the files quota --------------------------------------------------------------------------------------


def _files_used(r: Rig, group: str) -> float:
    row = next(g for g in r(r.person, "groups") if g["name"] == group)
    return row["usage"]["files"]


def test_the_files_quota_counts_what_exists_and_is_given_back(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent(limits={"files": 3})
        group = r.k.state.world.procs.get(a.pid).group
        r(a, "mkdir", path="/shared/q")
        r.put(a, "/shared/q/a", b"a")
        r(a, "symlink", target="a", path="/shared/q/s")
        assert _files_used(r, group) == 3
        for call, args in [
            ("open", {"path": "/shared/q/b", "flags": ["write", "create"]}),
            ("mkdir", {"path": "/shared/q/d"}),
            ("symlink", {"target": "a", "path": "/shared/q/s2"}),
            ("fs_transaction", {"ops": [{"op": "mkdir", "path": "/shared/q/t"}]}),
        ]:
            err = r.fails(a, "EDQUOT", call, **args)
            assert "files" in str(err)
        r(a, "link", src="/shared/q/a", dst="/shared/q/b")  # a name, not an inode
        r.put(a, "/shared/q/b", b"rewritten")  # an existing file: nothing created
        r(a, "unlink", path="/shared/q/a")
        assert _files_used(r, group) == 3, "b still names the inode"
        fd = r(a, "open", path="/shared/q/b")
        r(a, "unlink", path="/shared/q/b")
        assert _files_used(r, group) == 3, "an open file exists until its last close"
        r(a, "close", fd=fd)
        assert _files_used(r, group) == 2
        r(a, "mkdir", path="/shared/q/d")
        r(r.person, "unlink", path="/shared/q/s")  # whoever removes it, the group charged gets it back
        r(a, "rmdir", path="/shared/q/d")
        assert _files_used(r, group) == 1
        assert _files_used(r, "/") >= 1, "a group's usage includes its descendants'"
        r.put(r.person, "/shared/by-person", b"p")  # not charged to the agent's group
        assert _files_used(r, group) == 1

    run(tmp_path, body)


# -- symlink escapes --------------------------------------------------------------------------------------


def test_an_agent_cannot_escape_its_capability_through_symlinks(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/secret")
        r(p, "mkdir", path="/secret/dir")
        r.put(p, "/secret/key", b"K")
        a = r.agent(caps=SHARED_ONLY)
        r(a, "mkdir", path="/shared/d")
        r.put(a, "/shared/d/f", b"F")
        r.put(a, "/shared/mine", b"mine")
        # links may be made (a target is only text) ...
        r(a, "symlink", target="/secret", path="/shared/x")
        r(a, "symlink", target="../secret", path="/shared/rel")
        r(a, "symlink", target="/secret/dir", path="/shared/d/up")
        r(a, "symlink", target="/shared/c2", path="/shared/c1")
        r(a, "symlink", target="c3/", path="/shared/c2")
        r(a, "symlink", target="x", path="/shared/c3")
        r(a, "symlink", target="/secret/planted", path="/shared/plant")
        assert r(a, "readlink", path="/shared/x") == "/secret"
        assert r(a, "stat", path="/shared/x", follow=False)["kind"] == "symlink"
        # ... but every use is checked where it leads
        for path in ["/shared/x/key", "/shared/rel/key", "/shared/d/up/../key", "/shared/c1/key"]:
            r.fails(a, "EACCES", "open", path=path)
            r.fails(a, "EACCES", "stat", path=path)
            r.fails(a, "EACCES", "open", path=path, flags=["write"])
            r.fails(a, "EACCES", "truncate", path=path, size=0)
            r.fails(a, "EACCES", "chmod", path=path, mode=0o777)
            r.fails(a, "EACCES", "unlink", path=path)
            r.fails(a, "EACCES", "rename", src=path, dst="/shared/stolen")
            r.fails(a, "EACCES", "link", src=path, dst="/shared/stolen")
        for path in ["/shared/x", "/shared/rel/", "/shared/d/up/..", "/shared/c1", "/shared/x/dir/.."]:
            r.fails(a, "EACCES", "readdir", path=path)
            r.fails(a, "EACCES", "watch", path=path, timeout=0)
        for path in ["/shared/x/new", "/shared/d/up/new", "/shared/plant"]:
            r.fails(a, "EACCES", "open", path=path, flags=["write", "create"])
        r.fails(a, "EACCES", "mkdir", path="/shared/x/d")
        r.fails(a, "EACCES", "symlink", target="/shared", path="/shared/x/back")
        r.fails(a, "EACCES", "rename", src="/shared/mine", dst="/shared/x/mine")
        r.fails(a, "EACCES", "link", src="/shared/mine", dst="/shared/rel/mine")
        r.fails(
            a,
            "EACCES",
            "fs_transaction",
            ops=[
                {"op": "write", "path": "/shared/ok", "data": b"1"},
                {"op": "write", "path": "/shared/x/new", "data": b"2"},
            ],
        )
        r.fails(
            a, "EACCES", "fs_transaction", ops=[{"op": "rename", "src": "/shared/mine", "dst": "/shared/x/m"}]
        )
        # swapping a symlink between calls: each call is checked on where the link leads then
        r(a, "symlink", target="/shared/d", path="/shared/sw")
        fd = r(a, "open", path="/shared/sw/f")
        r(a, "unlink", path="/shared/sw")
        r(a, "symlink", target="/secret", path="/shared/sw")
        r.fails(a, "EACCES", "open", path="/shared/sw/key")
        r(a, "symlink", target="/shared/d", path="/shared/good")
        r(a, "rename", src="/shared/x", dst="/shared/good")  # the bad link over the good one
        r.fails(a, "EACCES", "open", path="/shared/good/key")
        assert r(a, "read", fd=fd, n=9) == b"F", "an fd names the file it opened, not a path"
        # nothing outside was read, made or changed; the agent's own tree works through its links
        assert r.cat("/secret/key") == b"K" and r(p, "readdir", path="/secret") == ["dir", "key"]
        assert r(p, "stat", path="/secret")["mode"] == 0o755
        r(a, "symlink", target="d", path="/shared/ok-link")
        assert r(a, "readdir", path="/shared/ok-link/../d") == ["f", "up"]
        r.put(a, "/shared/ok-link/g", b"through a link that stays inside")
        assert r.cat("/shared/d/g") == b"through a link that stays inside"

    run(tmp_path, body)


def test_a_rooted_agents_absolute_symlink_finds_no_capability_outside(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/proj")
        r(p, "mkdir", path="/secret")
        r.put(p, "/secret/key", b"K")
        a = r.agent(
            root="/proj",
            caps=[{"resource": "fs:/", "rights": ["read", "write", "list"]}, {"resource": "sys:fd"}],
        )
        r(a, "symlink", target="/secret", path="/out")  # its /out is /proj/out; the target is text
        r.fails(a, "EACCES", "open", path="/out/key")
        r(a, "symlink", target="../secret", path="/up")
        r.fails(a, "EACCES", "open", path="/up/key")
        r.put(a, "/mine", b"inside")
        assert r.cat("/proj/mine") == b"inside"

    run(tmp_path, body)


# -- a real kernel: an SDK agent, kill -9, replay ---------------------------------------------------------

LINKER = """
import json
from agentos import sdk
from agentos.errors import AgentOSError

async def main():
    out = {}
    fd = await sdk.open("/shared/a", ["read", "write", "create"])
    await sdk.write(fd, b"hello world")
    twin = await sdk.dup(fd)
    await sdk.seek(twin, 0)
    out["dup"] = (await sdk.read(fd, 5)).decode()
    await sdk.ftruncate(fd, 5)
    await sdk.close(fd)
    await sdk.close(twin)
    await sdk.link("/shared/a", "/shared/b")
    await sdk.symlink("b", "/shared/s")
    out["readlink"] = await sdk.readlink("/shared/s")
    out["lstat"] = (await sdk.stat("/shared/s", follow=False))["kind"]
    await sdk.truncate("/shared/s", 8)
    await sdk.chmod("/shared/b", 0o444)
    try:
        await sdk.open("/shared/a", ["write"])
    except AgentOSError as e:
        out["mode"] = e.code
    await sdk.write_console(json.dumps(out) + "\\n")
    await sdk.sleep(60)
"""


def test_an_sdk_agent_uses_the_calls_and_is_replayed_after_kill_9(
    kernel: KernelProcess, agent_file: Any
) -> None:
    pid = int(kernel.call("spawn", target=agent_file(LINKER)))

    def logged() -> str:
        with kernel.client() as c:
            return "".join(item["data"] for item in c.stream("logs", pid=pid))

    poll(lambda: "mode" in logged())
    expected = {"dup": "hello", "readlink": "b", "lstat": "symlink", "mode": "EACCES"}
    assert json.loads(logged()) == expected
    with kernel.client() as c:
        before = c.call("stat", path="/shared/a")
    kernel.kill9()
    kernel.boot()
    with kernel.client() as c:
        after = c.call("stat", path="/shared/a")
        assert after == before and (after["size"], after["nlink"], after["mode"]) == (8, 2, 0o444)
        fd = c.call("open", path="/shared/s")
        assert c.call("read", fd=fd, n=100) == b"hello\0\0\0"
        c.call("kill", pid=pid, sig="KILL")
        assert c.call("wait", pid=pid, timeout=20)["status"] == 137
    assert json.loads(logged()) == expected, "replayed from its journal: nothing printed twice"
