"""The file system's projected state: the tree, fd tables, pending writes and versions, built by applying
vfs.* events; apply is deterministic and survives a snapshot round trip."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.state import events as ev
from agentos.state.snapshot import from_pieces, to_pieces
from agentos.state.vfs import (
    APPEND,
    DIR,
    FILE,
    FIRST_FD,
    READ,
    ROOT_INO,
    SYMLINK,
    WRITE,
    FileSystem,
    NoEntry,
    NotADirectory,
    PathError,
    PendingWrite,
    SymlinkLoop,
)
from agentos.state.world import State, apply, state_hash

PID = 2


class Machine:
    """Applies events as the kernel would, with tiny stand-ins for the (unbuilt) handlers."""

    def __init__(self, mkfs: bool = True) -> None:
        self.state = State()
        self.events: list[ev.Payload] = []
        for pid in range(2, 8):  # agents to hold fds (and be reaped)
            self.emit(ev.ProcSpawned(pid=pid, ppid=1, name=f"p{pid}", kind="agent", group="/g"))
        if mkfs:
            self.emit(ev.VfsMkfs(ino=self.state.ledger.next_ino))

    @property
    def fs(self) -> FileSystem:
        return self.state.world.vfs

    def emit(self, *payloads: ev.Payload) -> None:
        for p in payloads:
            seq = self.state.seq + 1
            apply(self.state, seq, 1000 * seq, p)
            self.events.append(p)

    def create(self, path: str, kind: str = FILE, target: str = "", pid: int = PID) -> int:
        parent, name = self.fs.parent_of(path)
        ino = self.state.ledger.next_ino
        mode = 0o755 if kind == DIR else 0o644
        self.emit(
            ev.VfsCreated(parent=parent, name=name, ino=ino, kind=kind, mode=mode, pid=pid, target=target)
        )
        return ino

    def open(self, path: str, flags: int = READ | WRITE, pid: int = PID) -> int:
        fd = self.fs.lowest_free_fd(pid)
        self.emit(ev.VfsOpened(pid=pid, fd=fd, ino=self.fs.resolve(path), flags=flags))
        return fd

    def write(self, fd: int, length: int, data: str = "", pid: int = PID) -> None:
        f = self.fs.open_file(pid, fd)
        assert f is not None
        node = self.fs.inodes[f.ino]
        at = node.pending_size if f.flags & APPEND else f.offset
        size = max(node.pending_size, at + length)
        data = data or f"manifest-{self.state.seq}"
        self.emit(
            ev.VfsWrote(
                pid=pid, fd=fd, ino=f.ino, offset=at, data=data, length=length, pos=at + length, size=size
            )
        )

    def unlink(self, path: str, *, rmdir: bool = False) -> None:
        parent, name = self.fs.parent_of(path)
        ino = self.fs.inodes[parent].entries[name]
        kind = ev.VfsRmdir if rmdir else ev.VfsUnlinked
        self.emit(kind(parent=parent, name=name, ino=ino))

    def rename(self, src: str, dst: str) -> None:
        parent, name = self.fs.parent_of(src)
        new_parent, new_name = self.fs.parent_of(dst)
        ino = self.fs.inodes[parent].entries[name]
        replaced = self.fs.inodes[new_parent].entries.get(new_name, 0)
        self.emit(
            ev.VfsRenamed(
                parent=parent, name=name, new_parent=new_parent, new_name=new_name, ino=ino, replaced=replaced
            )
        )


def check_invariants(fs: FileSystem) -> None:
    """What docs in state/vfs.py promise holds after any well-formed event stream."""
    names: Counter[int] = Counter()
    subdirs: Counter[int] = Counter()
    for node in fs.inodes.values():
        assert node.kind == DIR or not node.entries
        for child in node.entries.values():
            assert child in fs.inodes
            names[child] += 1
            if fs.inodes[child].kind == DIR:
                subdirs[node.ino] += 1
                assert fs.inodes[child].parent == node.ino
    reachable, todo = set(), [fs.root] if fs.root in fs.inodes else []
    while todo:
        ino = todo.pop()
        if ino not in reachable:
            reachable.add(ino)
            todo.extend(fs.inodes[ino].entries.values())
    for node in fs.inodes.values():
        if node.kind == DIR and (node.ino == fs.root or names[node.ino]):
            assert names[node.ino] <= 1 and node.nlink == 2 + subdirs[node.ino]
        elif node.kind == DIR:
            assert node.nlink == 0 and not node.entries
        else:
            assert node.nlink == names[node.ino]
        assert node.opens == sum(1 for f in fs.files.values() if f.ino == node.ino)
        assert node.nlink > 0 or node.opens > 0  # else it was freed
        assert (node.ino in reachable) == (node.nlink > 0)  # no detached subtree, no cycle
    refs = Counter(fid for table in fs.fds.values() for fid in table.values())
    assert refs == Counter({fid: f.refs for fid, f in fs.files.items()})
    assert all(fs.fds.values())  # a pid without fds has no table
    for f in fs.files.values():
        assert f.ino in fs.inodes


# -- the tree ------------------------------------------------------------------------------------------


def test_the_root_comes_from_mkfs_and_is_ino_1_from_the_ledger() -> None:
    m = Machine(mkfs=False)
    assert m.fs.root == 0 and m.fs.lookup("/") is None
    with pytest.raises(NoEntry):
        m.fs.resolve("/")
    m.emit(ev.VfsCreated(parent=ROOT_INO, name="early", ino=7, kind=FILE, mode=0o644, pid=PID))
    assert m.fs.inodes == {}  # no root: nothing can be created, nothing crashes
    m.emit(ev.VfsMkfs(ino=ROOT_INO))
    assert m.fs.root == ROOT_INO and m.fs.lookup("/") == ROOT_INO
    assert m.fs.inodes[ROOT_INO].kind == DIR and m.fs.inodes[ROOT_INO].nlink == 2
    assert m.state.ledger.next_ino == 8  # the ledger saw both allocations
    m.emit(ev.VfsMkfs(ino=9))
    assert m.fs.root == ROOT_INO and 9 not in m.fs.inodes  # one root per world


def test_create_mkdir_symlinks_and_lookup() -> None:
    m = Machine()
    a = m.create("/a", DIR)
    b = m.create("/a/b", DIR)
    f = m.create("/a/b/f")
    m.create("/a/z")
    abs_link = m.create("/abs", SYMLINK, target="/a/b")
    m.create("/a/rel", SYMLINK, target="b/f")
    m.create("/a/up", SYMLINK, target="../a/./b/")
    m.create("/loop", SYMLINK, target="/loop")
    m.create("/dangling", SYMLINK, target="/nope")
    fs = m.fs
    assert a == ROOT_INO + 1 and m.state.ledger.next_ino == f + 7
    assert fs.lookup("/a/b/f") == f and fs.lookup("//a/./b/../b/f") == f and fs.lookup("/..") == ROOT_INO
    assert fs.lookup("/abs/f") == f and fs.lookup("/a/rel") == f and fs.lookup("/a/up/f") == f
    assert fs.lookup("/abs") == b and fs.lookup("/abs", follow=False) == abs_link
    assert fs.lookup("/abs/", follow=False) == b  # a trailing slash follows
    assert fs.lookup("/dangling", follow=False) is not None and fs.lookup("/dangling") is None
    assert fs.inodes[abs_link].size == len("/a/b") and fs.inodes[abs_link].target == "/a/b"
    for path, error in [
        ("/a/missing", NoEntry),
        ("/a/b/f/x", NotADirectory),
        ("/a/b/f/", NotADirectory),
        ("/a/rel/", NotADirectory),
        ("/loop", SymlinkLoop),
        ("/loop/x", SymlinkLoop),
        ("a/b", PathError),
    ]:
        with pytest.raises(error):
            fs.resolve(path)
    assert fs.parent_of("/a/b/f") == (b, "f") and fs.parent_of("/abs/new/") == (b, "new")
    for bad in ["/", "/a/..", "/a/."]:
        with pytest.raises(PathError):
            fs.parent_of(bad)
    with pytest.raises(NotADirectory):
        fs.parent_of("/a/b/f/x")
    assert fs.listdir(ROOT_INO) == ["a", "abs", "dangling", "loop"]
    assert fs.listdir(a) == ["b", "rel", "up", "z"]
    with pytest.raises(NotADirectory):
        fs.listdir(f)
    assert fs.path_of(f) == "/a/b/f" and fs.path_of(ROOT_INO) == "/" and fs.path_of(999) is None
    assert fs.inodes[ROOT_INO].nlink == 3 and fs.inodes[a].nlink == 3 and fs.inodes[b].nlink == 2
    assert fs.inodes[f].created_by == PID and fs.inodes[f].mtime_ns == fs.inodes[f].ctime_ns > 0
    check_invariants(fs)


def test_creating_an_existing_name_is_a_no_op() -> None:
    m = Machine()
    f = m.create("/f")
    m.emit(ev.VfsCreated(parent=ROOT_INO, name="f", ino=99, kind=DIR, mode=0o755, pid=PID))
    assert m.fs.lookup("/f") == f and 99 not in m.fs.inodes
    check_invariants(m.fs)


def test_rename_over_an_existing_file_replaces_and_frees_it() -> None:
    m = Machine()
    src, dst = m.create("/src"), m.create("/dst")
    m.rename("/src", "/dst")
    assert m.fs.lookup("/dst") == src and m.fs.lookup("/src") is None
    assert dst not in m.fs.inodes and m.fs.path_of(src) == "/dst"
    check_invariants(m.fs)


def test_rename_of_a_directory_moves_its_subtree() -> None:
    m = Machine()
    a, b = m.create("/a", DIR), m.create("/b", DIR)
    deep = m.create("/a/x", DIR)
    f = m.create("/a/x/f")
    m.rename("/a/x", "/b/y")
    assert m.fs.lookup("/b/y/f") == f and m.fs.lookup("/a/x") is None and m.fs.lookup("/b/y/..") == b
    assert m.fs.path_of(f) == "/b/y/f" and m.fs.path_of(deep) == "/b/y"
    assert m.fs.inodes[a].nlink == 2 and m.fs.inodes[b].nlink == 3
    m.create("/a/empty", DIR)
    m.rename("/b/y", "/a/empty")  # over an empty directory
    assert m.fs.lookup("/a/empty/f") == f and m.fs.listdir(b) == []
    check_invariants(m.fs)


def test_impossible_renames_change_nothing() -> None:
    m = Machine()
    m.create("/a", DIR)
    m.create("/a/sub", DIR)
    m.create("/full", DIR)
    m.create("/full/f")
    m.create("/file")
    before = msgspec.to_builtins(m.fs)
    m.rename("/a", "/a/sub/a")  # into its own subtree
    m.rename("/a", "/full")  # over a non-empty directory
    m.rename("/file", "/a")  # a file over a directory
    m.rename("/a", "/file")  # a directory over a file
    m.rename("/file", "/file")  # itself
    m.emit(
        ev.VfsRenamed(parent=ROOT_INO, name="file", new_parent=ROOT_INO, new_name="g", ino=12345)
    )  # wrong ino
    assert msgspec.to_builtins(m.fs) == before
    check_invariants(m.fs)


def test_rename_between_two_links_to_one_file_does_nothing() -> None:
    m = Machine()
    f = m.create("/f")
    m.emit(ev.VfsLinked(parent=ROOT_INO, name="g", ino=f))
    assert m.fs.inodes[f].nlink == 2
    m.rename("/f", "/g")
    assert m.fs.listdir(ROOT_INO) == ["f", "g"] and m.fs.inodes[f].nlink == 2
    m.unlink("/g")  # its last name: path_of finds the other one
    assert m.fs.inodes[f].nlink == 1 and m.fs.path_of(f) == "/f"
    check_invariants(m.fs)


def test_unlink_of_an_open_file_stays_readable_until_the_last_close() -> None:
    m = Machine()
    f = m.create("/f")
    fd = m.open("/f")
    m.write(fd, 5)
    m.emit(ev.VfsVersion(ino=f, manifest="v1", size=5, pid=PID))
    m.unlink("/f")
    assert m.fs.lookup("/f") is None and m.fs.path_of(f) is None
    of = m.fs.open_file(PID, fd)
    assert of is not None and of.ino == f
    node = m.fs.inodes[f]
    assert node.nlink == 0 and node.manifest == "v1" and node.size == 5
    m.write(fd, 3)  # still writable too
    check_invariants(m.fs)
    m.emit(ev.VfsClosed(pid=PID, fd=fd))
    assert f not in m.fs.inodes and m.fs.files == {} and m.fs.fds == {}
    check_invariants(m.fs)


def test_rmdir_removes_only_empty_directories_and_unlink_no_directory() -> None:
    m = Machine()
    d = m.create("/d", DIR)
    m.create("/d/f")
    before = msgspec.to_builtins(m.fs)
    m.unlink("/d", rmdir=True)  # not empty: never emitted by the handler, and a no-op if it were
    m.unlink("/d")  # unlink of a directory: likewise
    m.unlink("/d/f", rmdir=True)  # rmdir of a file: likewise
    assert msgspec.to_builtins(m.fs) == before
    m.unlink("/d/f")
    m.unlink("/d", rmdir=True)
    assert d not in m.fs.inodes and m.fs.inodes[ROOT_INO].nlink == 2
    check_invariants(m.fs)


def test_an_open_removed_directory_accepts_no_new_entries() -> None:
    m = Machine()
    d = m.create("/d", DIR)
    fd = m.open("/d", READ)
    m.unlink("/d", rmdir=True)
    assert d in m.fs.inodes and m.fs.inodes[d].nlink == 0
    m.emit(ev.VfsCreated(parent=d, name="x", ino=m.state.ledger.next_ino, kind=FILE, mode=0o644, pid=PID))
    assert m.fs.inodes[d].entries == {}
    m.emit(ev.VfsClosed(pid=PID, fd=fd))
    assert d not in m.fs.inodes
    check_invariants(m.fs)


def test_chmod() -> None:
    m = Machine()
    f = m.create("/f")
    m.emit(ev.VfsChmod(ino=f, mode=0o600))
    assert m.fs.inodes[f].mode == 0o600 and m.fs.inodes[f].ctime_ns == 1000 * m.state.seq


# -- fds -----------------------------------------------------------------------------------------------


def test_fds_are_the_lowest_free_from_3_per_process() -> None:
    m = Machine()
    m.create("/f")
    assert m.fs.lowest_free_fd(PID) == FIRST_FD == 3
    fds = [m.open("/f") for _ in range(3)]
    assert fds == [3, 4, 5] and m.open("/f", pid=7) == 3
    m.emit(ev.VfsClosed(pid=PID, fd=4))
    assert m.fs.lowest_free_fd(PID) == 4 and m.open("/f") == 4
    assert m.fs.inodes[m.fs.lookup("/f") or 0].opens == 4
    m.emit(ev.VfsClosed(pid=PID, fd=42))  # not open: nothing happens
    check_invariants(m.fs)


def test_dup_shares_the_open_file_and_its_offset() -> None:
    m = Machine()
    m.create("/f")
    m.create("/g")
    fd = m.open("/f")
    m.emit(ev.VfsDup(pid=PID, fd=fd, new_fd=m.fs.lowest_free_fd(PID)))
    m.write(fd, 10)
    a, b = m.fs.open_file(PID, 3), m.fs.open_file(PID, 4)
    assert a is b and a is not None and a.offset == 10 and a.refs == 2
    m.emit(ev.VfsOffset(pid=PID, fd=4, offset=2))
    assert a.offset == 2
    g = m.open("/g")
    m.emit(ev.VfsDup(pid=PID, fd=3, new_fd=g))  # as dup2: the open fd 5 is closed first
    assert m.fs.inodes[m.fs.lookup("/g") or 0].opens == 0 and a.refs == 3
    for fd_ in (3, 4):
        m.emit(ev.VfsClosed(pid=PID, fd=fd_))
    assert m.fs.open_file(PID, 5) is a and a.refs == 1
    m.emit(ev.VfsClosed(pid=PID, fd=5))
    assert m.fs.files == {} and m.fs.fds == {}
    check_invariants(m.fs)


def test_writes_move_the_offset_and_append_writes_at_the_end() -> None:
    m = Machine()
    f = m.create("/f")
    fd = m.open("/f")
    m.write(fd, 100)
    m.emit(ev.VfsOffset(pid=PID, fd=fd, offset=10))
    m.write(fd, 5)
    assert m.fs.inodes[f].pending_size == 100 and m.fs.open_file(PID, fd).offset == 15  # type: ignore[union-attr]
    app = m.open("/f", WRITE | APPEND)
    m.write(app, 7)
    assert m.fs.inodes[f].pending[-1].offset == 100 and m.fs.inodes[f].pending_size == 107
    assert m.fs.open_file(PID, app).offset == 107  # type: ignore[union-attr]


def test_pending_writes_and_truncates_then_a_version_cut_replaces_them() -> None:
    m = Machine()
    f = m.create("/f")
    fd = m.open("/f")
    m.write(fd, 100, "m1")
    m.emit(ev.VfsTruncated(ino=f, size=10))
    m.emit(ev.VfsOffset(pid=PID, fd=fd, offset=50))
    m.write(fd, 4, "m2")
    node = m.fs.inodes[f]
    assert node.pending == [PendingWrite(0, "m1", 100), PendingWrite(10, "", 0), PendingWrite(50, "m2", 4)]
    assert node.pending_size == 54 and node.size == 0 and node.manifest == "" and node.version_seq == 0
    mtime = node.mtime_ns
    m.emit(ev.VfsVersion(ino=f, manifest="v1", size=54, pid=PID))
    assert node.pending == [] and node.manifest == "v1" and node.size == node.pending_size == 54
    assert node.version_seq == m.state.seq and node.mtime_ns == mtime  # the writes dated the content
    m.emit(ev.VfsVersion(ino=f, manifest="v0", size=0, pid=PID))  # a restore: no writes behind it
    assert node.mtime_ns == 1000 * m.state.seq and node.size == 0


def test_reaping_drops_the_fd_table_and_frees_orphaned_inodes() -> None:
    m = Machine()
    kept, gone = m.create("/kept"), m.create("/gone")
    for path in ("/kept", "/gone", "/gone"):
        m.open(path, pid=5)
    m.open("/kept", pid=6)
    m.unlink("/gone")
    assert gone in m.fs.inodes
    m.emit(ev.ProcReaped(pid=5, by=1))
    assert 5 not in m.fs.fds and gone not in m.fs.inodes and m.fs.inodes[kept].opens == 1
    assert list(m.fs.fds) == [6]
    check_invariants(m.fs)


def test_writes_are_charged_to_the_writers_group() -> None:
    m = Machine()
    f = m.create("/f")
    fd = m.open("/f")
    m.emit(
        ev.VfsWrote(pid=PID, fd=fd, ino=f, offset=0, data="d", length=9000, pos=9000, size=9000, stored=8000)
    )
    m.emit(ev.VfsVersion(ino=f, manifest="v", size=9000, pid=PID, stored=40))
    used = m.state.ledger.usage.used["/g"]
    assert used["file_bytes"] == 9000.0 and used["stored_bytes"] == 8040.0


# -- determinism -----------------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d"]
PIDS = [2, 3, 4]
OPS = ["create"] * 4 + ["open"] * 3 + ["write"] * 3 + ["seek", "trunc", "version", "close", "dup"] * 2
OPS += ["unlink", "link", "rename", "rename", "rmdir", "chmod", "reap", "junk"]


def tree(fs: FileSystem) -> list[tuple[str, int]]:
    """(path, ino) of every linked inode but the root, in a stable order."""
    out, todo = [], [("", fs.root)]
    while todo:
        prefix, ino = todo.pop()
        for name in sorted(fs.inodes[ino].entries):
            child = fs.inodes[ino].entries[name]
            out.append((f"{prefix}/{name}", child))
            if fs.inodes[child].kind == DIR:
                todo.append((f"{prefix}/{name}", child))
    return out


@st.composite
def histories(draw: st.DrawFn) -> Machine:
    """A machine after a random history of sensible events (and a few nonsense ones, which apply
    must shrug off), checked against the invariants at every step."""
    m = Machine()
    for _ in range(draw(st.integers(10, 80))):
        fs = m.fs
        entries = tree(fs)
        dirs = ["/"] + [p + "/" for p, ino in entries if fs.inodes[ino].kind == DIR]
        files = [p for p, ino in entries if fs.inodes[ino].kind == FILE]
        open_fds = [(pid, fd) for pid in sorted(fs.fds) for fd in sorted(fs.fds[pid])]
        op = draw(st.sampled_from(OPS))
        pid = draw(st.sampled_from(PIDS))
        if op == "create":
            path = draw(st.sampled_from(dirs)) + draw(st.sampled_from(NAMES))
            if m.fs.lookup(path, follow=False) is None:
                kind = draw(st.sampled_from([DIR, FILE, FILE, SYMLINK]))
                target = draw(st.sampled_from(["/a", "b", "../c/d", "/"])) if kind == SYMLINK else ""
                m.create(path, kind, target, pid)
        elif op == "open" and entries:
            path = draw(st.sampled_from([p for p, _ in entries]))
            if m.fs.lookup(path) is not None:
                m.open(path, draw(st.sampled_from([READ, WRITE, READ | WRITE, WRITE | APPEND])), pid)
        elif op in ("write", "seek", "close", "dup", "version", "trunc") and open_fds:
            pid, fd = draw(st.sampled_from(open_fds))
            f = fs.open_file(pid, fd)
            assert f is not None
            n = draw(st.integers(0, 10_000))
            if op == "write" and fs.inodes[f.ino].kind == FILE:
                m.write(fd, n, pid=pid)
            elif op == "seek":
                m.emit(ev.VfsOffset(pid=pid, fd=fd, offset=n))
            elif op == "close":
                m.emit(ev.VfsClosed(pid=pid, fd=fd))
            elif op == "dup":
                new_fd = draw(
                    st.sampled_from([fs.lowest_free_fd(pid)] + [fd_ for p, fd_ in open_fds if p == pid])
                )
                m.emit(ev.VfsDup(pid=pid, fd=fd, new_fd=new_fd))
            elif op == "version":
                m.emit(ev.VfsVersion(ino=f.ino, manifest=f"v{m.state.seq}", size=n, pid=pid))
            else:
                m.emit(ev.VfsTruncated(ino=f.ino, size=n, pid=pid))
        elif op in ("unlink", "rmdir") and entries:
            m.unlink(draw(st.sampled_from([p for p, _ in entries])), rmdir=op == "rmdir")
        elif op == "link" and files:
            src, dst = (
                draw(st.sampled_from(files)),
                draw(st.sampled_from(dirs)) + draw(st.sampled_from(NAMES)),
            )
            parent, name = fs.parent_of(dst)
            if name not in fs.inodes[parent].entries:
                m.emit(ev.VfsLinked(parent=parent, name=name, ino=fs.resolve(src, follow=False)))
        elif op == "rename" and entries:
            src = draw(st.sampled_from([p for p, _ in entries]))
            dst = draw(st.sampled_from(dirs)) + draw(st.sampled_from(NAMES))
            if m.fs.lookup(dst.rsplit("/", 1)[0] + "/") is not None:
                m.rename(src, dst)
        elif op == "chmod" and entries:
            m.emit(ev.VfsChmod(ino=draw(st.sampled_from(entries))[1], mode=draw(st.integers(0, 0o7777))))
        elif op == "reap":
            m.emit(ev.ProcReaped(pid=pid, by=1))
        elif op == "junk":  # well-formed events naming things that may not exist
            ino, fd, name = draw(st.integers(0, 12)), draw(st.integers(0, 8)), draw(st.sampled_from(NAMES))
            m.emit(
                draw(
                    st.sampled_from(
                        [
                            ev.VfsOpened(pid=pid, fd=fd, ino=ino, flags=READ),
                            ev.VfsClosed(pid=pid, fd=fd),
                            ev.VfsDup(pid=pid, fd=fd, new_fd=ino),
                            ev.VfsOffset(pid=pid, fd=fd, offset=ino),
                            ev.VfsWrote(pid=pid, fd=fd, ino=ino, offset=0, data="x", length=1, pos=1, size=1),
                            ev.VfsTruncated(ino=ino, size=fd),
                            ev.VfsVersion(ino=ino, manifest="", size=0, pid=pid),
                            ev.VfsUnlinked(parent=ino, name=name, ino=fd),
                            ev.VfsRmdir(parent=ino, name=name, ino=fd),
                            ev.VfsLinked(parent=ino, name=name, ino=fd),
                            ev.VfsRenamed(parent=ino, name=name, new_parent=fd, new_name=name, ino=ino),
                            ev.VfsCreated(parent=fd, name=name, ino=ino, kind=FILE, mode=0, pid=pid),
                            ev.VfsChmod(ino=ino, mode=fd),
                            ev.VfsMkfs(ino=ino),
                        ]
                    )
                )
            )
        check_invariants(m.fs)
    return m


def replay(events: list[ev.Payload]) -> State:
    """A rebuild as the kernel does it: each event through its stored JSON text, into a fresh state."""
    state = State()
    for seq, p in enumerate(events, 1):
        apply(state, seq, 1000 * seq, ev.decode(p.KIND, p.VERSION, ev.encode(p)))
    return state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=histories())
def test_random_histories_rebuild_and_snapshot_to_the_same_hash(m: Machine) -> None:
    live = state_hash(m.state)
    first, second = replay(m.events), replay(m.events)
    assert state_hash(first) == state_hash(second) == live
    assert first == m.state
    manifest, pieces = to_pieces(m.state)
    restored = from_pieces(manifest, pieces.get)
    assert state_hash(restored) == live and restored == m.state
    for path, ino in tree(m.fs):  # every name resolves, and names what path_of says
        assert m.fs.lookup(path, follow=False) == ino
        assert m.fs.lookup(m.fs.path_of(ino) or "", follow=False) == ino
