"""The files section of ``agentos diff A B`` (``pastdiff.py``): the versioned tree at A against the
tree at B, inode by inode, with content diffs.

Which inodes: those a file change in (A, B] names (``store/interval.py``); no other inode can
differ, so the cost is the changes in the interval, not the size of the tree. Inode numbers are
never reused, so an inode named at both ends is the same file: a new name for it is a rename (or a
move of its directory — then only the directory is reported, as ``git`` would not). An inode named
at neither end came and went in between; the log says where it lived (``transient``). Bytes are
read from the two states as ``at POINT fs cat`` reads them, within bounds (``param.DIFF_*``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import AgentOSError
from agentos.kernel import filedata, timeline
from agentos.kernel.past import PastView
from agentos.state import events as ev
from agentos.state.vfs import DIR, FILE, SYMLINK, FileSystem, Inode
from agentos.state.world import State
from agentos.store import interval
from agentos.textdiff import unified

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

NULL = "/dev/null"  # the missing side's label, as diff -u writes it


@dataclass(slots=True)
class Bounds:
    max_files: int
    max_diff_bytes: int
    content: bool  # unified diffs of text files
    read_left: int = param.DIFF_READ_BYTES  # file bytes this diff may still read


@dataclass(slots=True)
class Side:
    """One end of the diff: its seq, its state and a view to read its bytes through."""

    seq: int
    fs: FileSystem
    view: PastView
    dirs: dict[int, str] = field(default_factory=dict)  # directory paths found so far

    def named(self, ino: int) -> tuple[Inode, str] | None:
        """The inode and a path naming it there, None if it has no name (gone, or not yet made)."""
        node = self.fs.get(ino)
        path = self.path(ino) if node is not None and node.nlink > 0 else None
        return None if node is None or path is None else (node, path)

    def path(self, ino: int) -> str | None:
        """``FileSystem.path_of``, with the directories on the way remembered (many files share them)."""
        fs, node = self.fs, self.fs.get(ino)
        if node is None or node.nlink <= 0:
            return None
        chain: list[Inode] = []  # from the inode up to a directory whose path is known
        base = "/"
        while node.ino != fs.root:
            holder = fs.get(node.parent)
            if holder is None or holder.entries.get(node.name) != node.ino or len(chain) > len(fs.inodes):
                return fs.path_of(ino)  # a stale last name (an unlinked hard link): search
            chain.append(node)
            if node.parent in self.dirs:
                base = self.dirs[node.parent]
                break
            node = holder
        for up in reversed(chain):
            base = f"{base.rstrip('/')}/{up.name}"
            if up.kind == DIR:
                self.dirs[up.ino] = base
        return base


def files_section(k: Kernel, a: int, sa: State, b: int, sb: State, bounds: Bounds) -> dict[str, Any]:
    conn, on = k.reader, timeline.lineage(k).literal()
    left = Side(a, sa.world.vfs, PastView(k, sa))
    right = Side(b, sb.world.vfs, PastView(k, sb))
    inos = interval.touched_inodes(conn, a, b, param.DIFF_MAX_INODES + 1, on)
    renamed = interval.renamed_inodes(conn, a, b, on)
    found: list[dict[str, Any]] = []
    gone: list[int] = []
    for ino in inos[: param.DIFF_MAX_INODES]:
        was, now = left.named(ino), right.named(ino)
        if was is None and now is None:
            gone.append(ino)
        else:
            entry = _compare(ino, was, now, ino in renamed)
            if entry is not None:
                found.append(entry)
    found.sort(key=lambda e: (e["path"], e["ino"]))
    listed, dropped = _with_content(found, left, right, bounds)
    host = interval.counts(conn, a, b, ["vfs.host_change"], on).get("vfs.host_change", 0)
    return {
        "changes": listed,
        "count": len(found) - dropped,
        "truncated": len(found) - dropped > len(listed) or len(inos) > param.DIFF_MAX_INODES,
        "diff_truncated": any(e.get("diff_truncated") for e in listed),
        "transient": _transient(conn, gone[: bounds.max_files], left, right, on),
        "transient_count": len(gone),
        "mounts": _mounts(sa.world.vfs, sb.world.vfs),
        "host_changes": host,  # host-mount files keep their history in the log: fs history PATH
    }


def _compare(
    ino: int, was: tuple[Inode, str] | None, now: tuple[Inode, str] | None, moved: bool
) -> dict[str, Any] | None:
    """What differs about one inode from A to B; None if nothing a person would see."""
    end = now or was
    assert end is not None  # the caller sorted out the inodes named at neither end
    node = end[0]
    entry: dict[str, Any] = {"path": end[1], "ino": ino, "kind": node.kind}
    if was is None or now is None:
        entry["status"] = "created" if was is None else "removed"
        entry["size"] = [None, _size(node)] if was is None else [_size(node), None]
        entry["mode"] = [None, node.mode] if was is None else [node.mode, None]
        if node.kind == SYMLINK:
            entry["target"] = [None, node.target] if was is None else [node.target, None]
        entry["content"] = node.kind == FILE
        return entry
    (old, old_path), (new, new_path) = was, now
    entry["status"] = "changed"
    if moved and old_path != new_path:
        entry["from"] = old_path
    if old.nlink != new.nlink and old.kind != DIR:
        entry["links"] = [old.nlink, new.nlink]
    if old.mode != new.mode:
        entry["mode"] = [old.mode, new.mode]
    if old.kind == SYMLINK and old.target != new.target:
        entry["target"] = [old.target, new.target]
    entry["content"] = old.kind == FILE and _written(old, new)
    entry["size"] = [_size(old), _size(new)]
    return entry if entry["content"] or {"from", "links", "mode", "target"} & entry.keys() else None


def _size(node: Inode) -> int:
    return node.pending_size if node.kind == FILE else len(node.target) if node.kind == SYMLINK else 0


def _written(old: Inode, new: Inode) -> bool:
    """Whether the content may differ (the bytes, once read, say whether it does)."""
    return (old.manifest, old.pending, old.pending_size) != (new.manifest, new.pending, new.pending_size)


def _with_content(
    found: list[dict[str, Any]], left: Side, right: Side, bounds: Bounds
) -> tuple[list[dict[str, Any]], int]:
    """The first ``max_files`` entries, each file's bytes compared (hashes, a unified diff for
    text); an entry whose only change was a rewrite with the same bytes is dropped (counted)."""
    listed: list[dict[str, Any]] = []
    dropped = 0
    for entry in found:
        if len(listed) >= bounds.max_files:
            break
        if entry["content"] and not _content(entry, left, right, bounds):
            dropped += 1
            continue
        listed.append(entry)
    return listed, dropped


def _content(entry: dict[str, Any], left: Side, right: Side, bounds: Bounds) -> bool:
    """Fill in the entry's hashes and diff; False if it turns out to have no change at all."""
    old = _read(left, entry, entry["size"][0], bounds)
    new = _read(right, entry, entry["size"][1], bounds)
    if old is None or new is None:
        entry["compared"] = False  # too large or unreadable: sizes only
        return True
    entry["sha256"] = [
        None if entry["status"] == "created" else hashlib.sha256(old).hexdigest(),
        None if entry["status"] == "removed" else hashlib.sha256(new).hexdigest(),
    ]
    if old == new and entry["status"] == "changed":
        entry["content"] = False
        return bool({"from", "links", "mode", "target"} & entry.keys())
    if max(len(old), len(new)) > param.DIFF_TEXT_BYTES:
        entry["text"] = False
        return True
    label_a = NULL if entry["status"] == "created" else f"{entry.get('from', entry['path'])}@{left.seq}"
    label_b = NULL if entry["status"] == "removed" else f"{entry['path']}@{right.seq}"
    lines = unified(old, new, label_a, label_b)
    entry["text"] = lines is not None
    if lines is not None and bounds.content:
        entry["diff"], entry["diff_truncated"] = _clip(lines, bounds)
    return True


def _read(side: Side, entry: dict[str, Any], size: int | None, bounds: Bounds) -> bytes | None:
    """The file's bytes at that end (b"" where it does not exist); None past the bounds or unreadable."""
    if size is None:
        return b""
    if size > param.DIFF_HASH_BYTES or size > bounds.read_left:
        return None
    located = side.named(entry["ino"])
    if located is None:
        return None
    bounds.read_left -= size
    try:
        return filedata.read_bytes(side.view, located[0], 0, size)
    except AgentOSError:  # a missing blob: say so by leaving it uncompared, never fail the diff
        return None


def _clip(lines: Any, bounds: Bounds) -> tuple[str, bool]:
    """The diff's lines while they fit the bytes left for diffs (whole lines only)."""
    out: list[str] = []
    for line in lines:
        n = len(line.encode())
        if n > bounds.max_diff_bytes:
            return "".join(out), True
        bounds.max_diff_bytes -= n
        out.append(line)
    return "".join(out), False


def _transient(conn: Any, inos: list[int], left: Side, right: Side, on: str) -> list[dict[str, Any]]:
    """Inodes created and gone between the points: where each lived, when it came and went."""
    rows: dict[int, dict[str, Any]] = {}
    where: dict[int, tuple[int, str]] = {}  # ino -> (parent, name) when created, to name nested ones
    for r in interval.names_of(conn, inos, left.seq, right.seq, on):
        e = ev.decode(r.kind, r.version, r.payload)
        if isinstance(e, ev.VfsCreated):
            where[e.ino] = (e.parent, e.name)
            rows[e.ino] = {"ino": e.ino, "kind": e.kind, "pid": e.pid, "created": r.seq, "removed": None}
        elif isinstance(e, ev.VfsUnlinked | ev.VfsRmdir) and e.ino in rows:
            rows[e.ino]["removed"] = r.seq
        elif isinstance(e, ev.VfsRenamed) and e.ino in rows:
            where[e.ino] = (e.new_parent, e.new_name)
    for ino, row in rows.items():
        row["path"] = _path(ino, where, left, right)
    return sorted(rows.values(), key=lambda row: row["created"])


def _path(ino: int, where: dict[int, tuple[int, str]], left: Side, right: Side) -> str:
    names: list[str] = []
    cur = ino
    for _ in range(len(where) + 1):
        if cur not in where:
            break
        parent, name = where[cur]
        names.append(name)
        cur = parent
    base = right.fs.path_of(cur) or left.fs.path_of(cur) or f"<inode {cur}>"
    return base.rstrip("/") + "/" + "/".join(reversed(names))


def _mounts(fa: FileSystem, fb: FileSystem) -> dict[str, list[dict[str, Any]]]:
    def row(path: str, fs: FileSystem) -> dict[str, Any]:
        m = fs.mounts[path]
        return {"path": path, "kind": m.kind, "source": m.source, "readonly": m.readonly}

    return {
        "added": [row(p, fb) for p in sorted(fb.mounts) if p not in fa.mounts],
        "removed": [row(p, fa) for p in sorted(fa.mounts) if p not in fb.mounts],
    }
