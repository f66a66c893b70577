"""A file's past, read from the log: which inode a path means (now, or the last one that had that
name), its changes across renames, its versions with who made each, and its bytes as of a seq.
Used by ``sysversion.py`` (history, read, restore) and ``fsundo.py``; mutates nothing.

Complete up to the kernel's head: the durable log is read through the kernel's read-only
connection up to the durable seq taken once (``store/history.py``), and the events not committed
yet come from the group committer's pending and in-flight records. Nothing read here leaves the
kernel early: a reply waits until the log is durable up to the head (ARCHITECTURE §4.3).

Lineage: a file saved by writing a new file and renaming it over the old one (an atomic replace)
keeps its history — a rename that replaced inode R puts R's changes before that rename in the
history of the inode that replaced it (recursively, up to ``MAX_LINEAGE`` inodes).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from agentos.errors import InvalidArgument, NotFound
from agentos.kernel import blobcache, fsaccess, timeline
from agentos.state import events as ev
from agentos.state.vfs import DIR, SYMLINK, lexical
from agentos.store import history
from agentos.store.chunks import read_span
from agentos.store.events import EventRecord
from agentos.store.log import VFS_CHANGE_KINDS

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

CHANGES = frozenset(VFS_CHANGE_KINDS)
CONTENT = frozenset({"vfs.created", "vfs.version"})  # rows that say what the file held from then on
NAMING = frozenset({"vfs.created", "vfs.linked", "vfs.renamed", "vfs.unlinked", "vfs.rmdir"})
MAX_LINEAGE = 64
OPS = {
    "vfs.created": "create",
    "vfs.version": "version",
    "vfs.renamed": "rename",
    "vfs.linked": "link",
    "vfs.unlinked": "unlink",
}  # what a history row says it was


@dataclass(frozen=True, slots=True)
class Change:
    """One file change from the log: its envelope and its typed payload."""

    seq: int
    ts: int
    kind: str
    syscall: str | None
    correlation: str | None
    e: Any

    @property
    def pid(self) -> int:
        """Whose change it was (the payload's pid: a version cut at a killed agent's exit is its)."""
        return int(getattr(self.e, "pid", 0))

    @property
    def ino(self) -> int:
        return int(getattr(self.e, "ino", 0))


def _change(r: EventRecord) -> Change:
    return Change(r.seq, r.ts, r.kind, r.syscall, r.correlation, ev.decode(r.kind, r.version, r.payload))


def _read(
    k: Kernel,
    durable: Callable[[Any, int], list[EventRecord]],
    keep: Callable[[EventRecord, dict[str, Any]], bool],
) -> list[Change]:
    """``durable(conn, until)``'s records, then the uncommitted records ``keep`` accepts; only the
    live branch's history (a rewind left the rest behind: ``store/lineage.py``)."""
    c = k.committer
    until = c.durable_seq  # taken once: the rest is in memory
    here = timeline.lineage(k).contains
    out = [_change(r) for r in durable(k.reader, until) if here(r.branch, r.seq)]
    for r in (*c.inflight, *c.pending):
        if r.seq > until and here(r.branch, r.seq) and keep(r, msgspec.json.decode(r.payload)):
            out.append(_change(r))
    return out


def file_changes(k: Kernel, inos: Iterable[int], *, replaced: bool = False) -> list[Change]:
    """Every change to these inodes, in seq order; ``replaced``: and the renames that replaced one."""
    want = set(inos)
    got = _read(
        k,
        lambda conn, until: history.file_changes(conn, want, until),
        lambda r, p: r.kind in CHANGES and p.get("ino") in want,
    )
    if replaced:
        got += _read(
            k,
            lambda conn, until: history.replaced(conn, want, until),
            lambda r, p: r.kind == "vfs.renamed" and p.get("replaced") in want,
        )
    return sorted({c.seq: c for c in got}.values(), key=lambda c: c.seq)


def changes_by(k: Kernel, pids: Iterable[int]) -> list[Change]:
    want = set(pids)
    return _read(
        k,
        lambda conn, until: history.changes_by(conn, want, until),
        lambda r, p: r.kind in CHANGES and p.get("pid") in want,
    )


def changes_of_call(k: Kernel, correlation: str) -> list[Change]:
    pid = caller_of(correlation)
    return _read(
        k,
        lambda conn, until: history.changes_of_call(conn, correlation, pid, until),
        lambda r, p: r.kind in CHANGES and r.correlation == correlation and r.pid == pid,
    )


def caller_of(correlation: str) -> int:
    """The pid a correlation id names: ``pid:epoch:task:n`` (an agent's call), ``s<pid>:<request>``
    (a session's), else 0 (the kernel's own)."""
    head = correlation.split(":", 1)[0]
    head = head[1:] if head.startswith("s") else head
    return int(head) if head.isdigit() and len(head) < 19 else 0


def last_named(k: Kernel, parent: int, name: str) -> Change | None:
    """The last change that put ``name`` in directory ``parent``."""

    def keep(r: EventRecord, p: dict[str, Any]) -> bool:
        if r.kind in ("vfs.created", "vfs.linked"):
            return (p.get("parent"), p.get("name")) == (parent, name)
        return r.kind == "vfs.renamed" and (p.get("new_parent"), p.get("new_name")) == (parent, name)

    def durable(conn: Any, until: int) -> list[EventRecord]:
        found = history.last_named(conn, parent, name, until, timeline.lineage(k).literal())
        return [found] if found is not None else []

    got = _read(k, durable, keep)
    return max(got, key=lambda c: c.seq) if got else None


def spawn_tree(k: Kernel) -> dict[int, tuple[int, str]]:
    """pid -> (parent at spawn, name), for every process ever spawned (reaped ones too)."""
    out: dict[int, tuple[int, str]] = {}
    for c in _read(k, history.spawns, lambda r, p: r.kind == "proc.spawned"):
        out[c.e.pid] = (c.e.ppid, c.e.name)
    return out


def descendants(k: Kernel, pid: int) -> set[int]:
    """``pid`` and every process spawned below it, by the parents they were spawned by."""
    children: dict[int, list[int]] = {}
    for child, (ppid, _) in spawn_tree(k).items():
        children.setdefault(ppid, []).append(child)
    out, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def process_names(k: Kernel, pids: Iterable[int]) -> dict[int, str]:
    """Each pid's name: from the process table, else its spawn event (a reaped session)."""
    procs = k.state.world.procs
    out = {pid: p.name for pid in pids if (p := procs.get(pid)) is not None}
    if any(pid not in out for pid in pids):
        tree = spawn_tree(k)
        out |= {pid: tree[pid][1] for pid in pids if pid not in out and pid in tree}
    return out | ({0: "kernel"} if 0 in pids else {})


# -- which file a path means ------------------------------------------------------------------------


def locate(k: Kernel, path: str) -> tuple[int, bool]:
    """(the inode ``path`` names now, True), else (the last inode that had that name, False): ENOENT
    if none ever did. A directory is EISDIR (files have versions); a mounted path EINVAL."""
    fs = k.state.world.vfs
    canon = fsaccess.canonical(k, path)
    if k.mounts.point_of(canon) is not None:
        raise InvalidArgument(f"{path} is on a mounted file system: it keeps no versions")
    ino = fs.lookup(path)
    now = ino is not None
    if ino is None:
        ino = _last_ino(k, canon, 0)
    if ino is None:
        raise NotFound(f"no file has ever been at {path}", code="ENOENT")
    kind = fs.inodes[ino].kind if now else _kind_of(k, ino)
    if kind in (DIR, SYMLINK):
        raise InvalidArgument(f"{path} is a {kind}: only files have versions", code="EISDIR")
    return ino, now


def _last_ino(k: Kernel, path: str, depth: int) -> int | None:
    """The inode that last had the name ``path`` (each missing directory on it: likewise)."""
    fs = k.state.world.vfs
    if path == "/" or depth > 256:
        return fs.root if path == "/" else None
    head, name = posixpath.split(path)
    parent = fs.lookup(head + "/") if head != "/" else fs.root
    if parent is None:
        parent = _last_ino(k, lexical(head), depth + 1)
    found = last_named(k, parent, name) if parent is not None else None
    if found is None:
        return None
    return int(found.e.ino)


def _kind_of(k: Kernel, ino: int) -> str:
    made = next((c for c in file_changes(k, [ino]) if c.kind == "vfs.created"), None)
    return made.e.kind if made is not None else "file"


# -- versions -------------------------------------------------------------------------------------------


def lineage(k: Kernel, ino: int) -> list[Change]:
    """The changes of ``ino`` and, before the rename by which it replaced another file, that file's
    (recursively): the history of what a path held through atomic replaces."""
    out: list[Change] = []
    todo, seen = [(ino, None)], set[int]()
    while todo and len(seen) < MAX_LINEAGE:
        cur, cutoff = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        for c in file_changes(k, [cur]):
            if cutoff is not None and c.seq >= cutoff:
                break
            out.append(c)
            if c.kind == "vfs.renamed" and c.e.ino == cur and c.e.replaced:
                todo.append((c.e.replaced, c.seq))
    return sorted(out, key=lambda c: c.seq)


def cause_of(c: Change, changes: list[Change]) -> str:
    """What cut a version: its event says (close, fsync, exit, restore, undo); older events and the
    other cutters are told by the changes of the same call (a write with no fd: a transaction)."""
    if c.kind == "vfs.created":
        return "create"
    if c.e.cause:
        return str(c.e.cause)
    same = [o for o in changes if o.correlation == c.correlation and o.seq < c.seq and o.ino == c.ino]
    if any(o.kind == "vfs.wrote" and o.e.fd == -1 for o in same):
        return "transaction"
    return "truncate" if same and same[-1].kind == "vfs.truncated" else "close"


def row(c: Change, changes: list[Change], names: dict[int, str], size: int, digest: str) -> dict[str, Any]:
    """One line of ``fs_history``."""
    out: dict[str, Any] = {
        "seq": c.seq,
        "ts": c.ts,
        "op": OPS.get(c.kind, c.kind[4:]),
        "ino": c.ino,
        "size": size,
        "hash": digest,
        "pid": c.pid,
        "process": names.get(c.pid, ""),
        "syscall": c.syscall,
        "correlation": c.correlation,
    }
    if c.kind in CONTENT:
        out["cut"] = cause_of(c, changes)
    if c.kind in ("vfs.created", "vfs.linked", "vfs.unlinked"):
        out["name"] = c.e.name
    elif c.kind == "vfs.renamed":
        out["name"], out["from"] = c.e.new_name, c.e.name
    return out


@dataclass(frozen=True, slots=True)
class Version:
    """What a file held from ``seq`` on: its manifest blob ("" empty), size, and the inode it was in."""

    seq: int
    manifest: str
    size: int
    ino: int


def versions(changes: list[Change]) -> list[Version]:
    """The content rows of a lineage, in seq order (a creation is the empty version)."""
    out = []
    for c in changes:
        if c.kind == "vfs.created" and c.e.kind == "file":
            out.append(Version(c.seq, "", 0, c.ino))
        elif c.kind == "vfs.version":
            out.append(Version(c.seq, c.e.manifest, c.e.size, c.ino))
    return out


def version_at(changes: list[Change], seq: int, *, exact: bool, path: str) -> Version:
    """The version cut at ``seq`` (``exact``), else the last one cut at or before it; ENOENT if none."""
    found = None
    for v in versions(changes):
        if v.seq > seq:
            break
        found = v
    if found is None or (exact and found.seq != seq):
        what = f"cut at seq {seq}" if exact else f"at or before seq {seq}"
        raise NotFound(f"no version of {path} was {what}", code="ENOENT")
    return found


def read_version(k: Kernel, v: Version, offset: int, n: int) -> bytes:
    """``n`` bytes of a version from ``offset`` (fewer at its end)."""
    if not v.manifest or offset >= v.size or n <= 0:
        return b""
    m, starts = blobcache.manifest(k, v.manifest, f"the manifest {v.manifest} of the version at seq {v.seq}")
    return read_span(m, starts, k.get_blobs, offset, n)
