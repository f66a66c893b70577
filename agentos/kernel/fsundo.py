"""``fs_undo``'s plan: put every file a process (or one call) changed back as it was before its first
change, as new events, without clobbering what anyone else did since (``docs/vfs.md``).

How. The selected changes (``fshistory.changes_by`` / ``changes_of_call``) name the inodes they
touched, and a rename over a file names the file it replaced. For each inode the log gives its
state just before the first selected change — its names (directory inode and name), content
(manifest), mode, kind — by folding its own changes up to there; the plan makes the live inode
match it: a file the selection created is removed, one it modified gets its old content, one it
removed comes back under its own inode number (so its history goes on) with its old content, a
rename goes back, a directory it made is removed if empty, one it removed is made again.

Conflicts. An inode that anyone else changed after the selection's *first* change to it is left
alone and reported (who, at which seq): going back to before that first change would throw the other
change away, even one made between two of the selection's own. A name needed back that another
file now holds, a directory to remove that holds another's file, a directory that is gone: also
conflicts. Each path the plan changes is checked against the caller's ``write`` capability (and,
for agents, mode bits): a denied inode is reported and left alone; the rest goes on.

Order. The inodes are tried newest first change first, against a copy-on-write view of the tree
(``systxn.View``) that folds each inode's events in, so later steps see earlier ones; one waiting
for a name or a directory that another inode of the plan will free or bring back is retried after
it. What is still waiting when nothing moves is a conflict (a swap of two names, say). Every event
comes back in one ``Done``: the undo lands whole or not at all.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from agentos import param
from agentos.errors import PermissionDenied
from agentos.kernel import fsaccess
from agentos.kernel.calls import Caller
from agentos.kernel.fsaccess import W
from agentos.kernel.fshistory import OPS, Change, file_changes, last_named, process_names
from agentos.kernel.systxn import View
from agentos.state import events as ev
from agentos.state.vfs import DIR, FILE, Inode

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

Name = tuple[int, str]  # (directory inode, name)


@dataclass(slots=True)
class Before:
    """An inode as it was: its names, content, mode, kind (a fold of its changes up to a seq)."""

    names: list[Name] = field(default_factory=list)
    manifest: str = ""
    size: int = 0
    mode: int = 0o644
    kind: str = FILE
    target: str = ""


def fold(ino: int, changes: list[Change], until: int) -> Before:
    """The state of ``ino`` after its changes with seq < ``until``."""
    b = Before()
    for c in changes:
        if c.seq >= until:
            break
        e = c.e
        if c.kind == "vfs.renamed" and e.ino != ino:  # a rename over it: that name is gone
            b.names = [n for n in b.names if n != (e.new_parent, e.new_name)]
        elif c.kind == "vfs.created":
            b.names, b.kind, b.mode, b.target = [(e.parent, e.name)], e.kind, e.mode, e.target
        elif c.kind == "vfs.linked":
            b.names.append((e.parent, e.name))
        elif c.kind == "vfs.renamed":
            b.names = [n for n in b.names if n != (e.parent, e.name)] + [(e.new_parent, e.new_name)]
        elif c.kind in ("vfs.unlinked", "vfs.rmdir"):
            b.names = [n for n in b.names if n != (e.parent, e.name)]
        elif c.kind == "vfs.version":
            b.manifest, b.size = e.manifest, e.size
        elif c.kind == "vfs.chmod":
            b.mode = e.mode
    return b


@dataclass(slots=True)
class Track:
    """One inode the selection touched: all its changes, the selection's first one, and whoever
    else changed it after that (the last such change), if anyone."""

    ino: int
    first: int
    changes: list[Change]
    foreign: Change | None = None


class Wait(Exception):
    """This inode needs another of the plan to move first (a name, a directory)."""

    def __init__(self, conflict: dict[str, Any]) -> None:
        super().__init__(conflict.get("reason", ""))
        self.conflict = conflict


class Refuse(Exception):
    def __init__(self, conflict: dict[str, Any]) -> None:
        super().__init__(conflict.get("reason", ""))
        self.conflict = conflict


class Plan:
    def __init__(self, k: Kernel, c: Caller, selected: list[Change]) -> None:
        self.k, self.c = k, c
        self.view = View(k)
        self.fs = self.view.fs
        self.selected = {s.seq for s in selected}
        self.report: dict[str, list[dict[str, Any]]] = {"reverted": [], "conflicts": [], "denied": []}
        self.pending: set[int] = set()  # inodes of the plan not settled yet
        first: dict[int, int] = {}
        for s in selected:
            for ino in (s.ino, getattr(s.e, "replaced", 0) if s.kind == "vfs.renamed" else 0):
                if ino and ino not in first:
                    first[ino] = s.seq
        per: dict[int, list[Change]] = {ino: [] for ino in first}
        for ch in file_changes(k, first, replaced=True):
            for ino in {ch.ino, getattr(ch.e, "replaced", 0) if ch.kind == "vfs.renamed" else 0}:
                if ino in per:
                    per[ino].append(ch)
        self.tracks = [Track(ino, first[ino], per[ino]) for ino in sorted(first, key=lambda i: -first[i])]
        for t in self.tracks:
            others = [ch for ch in t.changes if ch.seq > t.first and ch.seq not in self.selected]
            t.foreign = others[-1] if others else None
        self.names = process_names(k, {t.foreign.pid for t in self.tracks if t.foreign is not None})

    # -- the whole plan ---------------------------------------------------------------------------------

    def run(self) -> None:
        todo = list(self.tracks)
        waiting: dict[int, dict[str, Any]] = {}
        while todo:
            self.pending = {t.ino for t in todo}
            left = []
            for t in todo:
                try:
                    self._one(t)
                except Wait as w:
                    waiting[t.ino] = w.conflict
                    left.append(t)
                except Refuse as r:
                    self.report["conflicts"].append(r.conflict)
                except PermissionDenied as d:
                    self.report["denied"].append({"ino": t.ino, "path": self._where(t), "reason": d.message})
                else:
                    self.pending.discard(t.ino)
            if len(left) == len(todo):  # nothing moved: what waits, waits for ever
                self.report["conflicts"] += [waiting[t.ino] for t in left]
                break
            todo = left

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, rows in self.report.items():
            out[key] = rows[: param.UNDO_MAX_REPORT]
            out[f"{key}_count"] = len(rows)
        return out

    # -- one inode --------------------------------------------------------------------------------------

    def _one(self, t: Track) -> None:
        if t.ino == self.fs.root:
            return  # the root is never created, moved or removed: nothing of it to put back
        before = fold(t.ino, t.changes, t.first)
        now = self._names_now(t)
        node = self.fs.inodes.get(t.ino)
        if not before.names:
            if not now:
                return  # already gone
            self._check_foreign(t)
            self._remove(t, node, now)
            return
        if self._same(before, node, now):
            return
        self._check_foreign(t)
        self._put_back(t, before, node, now)

    def _names_now(self, t: Track) -> list[Name]:
        names = fold(t.ino, t.changes, 2**63).names
        return [
            (p, n) for p, n in names if (d := self.fs.inodes.get(p)) is not None and d.entries.get(n) == t.ino
        ]

    def _same(self, b: Before, node: Inode | None, now: list[Name]) -> bool:
        if node is None or sorted(now) != sorted(b.names) or node.mode != b.mode:
            return False
        return node.kind != FILE or (node.manifest == b.manifest and not node.pending)

    def _check_foreign(self, t: Track) -> None:
        f = t.foreign
        if f is not None:
            raise Refuse(self._conflict(t, f"changed later by another ({OPS.get(f.kind, f.kind[4:])})", f))

    def _remove(self, t: Track, node: Inode | None, now: list[Name]) -> None:
        """A file or directory the selection created: its names go (a directory's only when empty)."""
        events: list[ev.Payload] = []
        for p, n in now:
            path = self._path(p, n)
            if node is not None and node.kind == DIR and node.entries:
                child = next(iter(sorted(node.entries.values())))
                if any(ino in self.pending for ino in node.entries.values()):
                    raise Wait(self._conflict(t, "not empty", None, path))
                raise Refuse(
                    self._conflict(
                        t, "not empty", last_named(self.k, t.ino, self._name_of(t.ino, child)), path
                    )
                )
            self._may(p, path)
            kind = ev.VfsRmdir if node is not None and node.kind == DIR else ev.VfsUnlinked
            events.append(kind(parent=p, name=n, ino=t.ino, pid=self.c.pid))
        self._done(t, events, [{"path": self._path(p, n), "action": "removed"} for p, n in now])

    def _put_back(self, t: Track, b: Before, node: Inode | None, now: list[Name]) -> None:
        adds = [n for n in b.names if n not in now]
        drops = [n for n in now if n not in b.names]
        for p, n in adds:
            self._free(t, p, n)
        events: list[ev.Payload] = []
        rows: list[dict[str, Any]] = []
        alive = node is not None and (node.nlink > 0 or node.kind == FILE)
        if not alive:  # removed (and freed): made again under its own number
            p, n = adds.pop(0)
            path = self._path(p, n)
            self._may(p, path)
            if self.c.confined:
                self.k.quotas.check(self.c.pid, {"files": 1})
            group = self.k.quotas.group_of(self.c.pid) if self.c.kind != "kernel" else ""
            events.append(
                ev.VfsCreated(
                    parent=p,
                    name=n,
                    ino=t.ino,
                    kind=b.kind,
                    mode=b.mode,
                    pid=self.c.pid,
                    target=b.target,
                    group=group,
                )
            )
            rows.append({"path": path, "action": "recreated"})
        elif len(adds) == 1 and len(drops) == 1:  # moved back
            (p, n), (op, on) = adds.pop(), drops.pop()
            path, old = self._path(p, n), self._path(op, on)
            self._may(p, path)
            self._may(op, old)
            events.append(
                ev.VfsRenamed(parent=op, name=on, new_parent=p, new_name=n, ino=t.ino, pid=self.c.pid)
            )
            rows.append({"path": path, "action": "moved", "from": old})
        for p, n in adds:  # more names (hard links) back
            self._may(p, self._path(p, n))
            events.append(ev.VfsLinked(parent=p, name=n, ino=t.ino, pid=self.c.pid))
            rows.append({"path": self._path(p, n), "action": "linked"})
        for p, n in drops:
            self._may(p, self._path(p, n))
            events.append(ev.VfsUnlinked(parent=p, name=n, ino=t.ino, pid=self.c.pid))
            rows.append({"path": self._path(p, n), "action": "unlinked"})
        where = self._path(*b.names[0])
        if b.kind == FILE:
            has, pending = (node.manifest, bool(node.pending)) if alive and node is not None else ("", False)
            if has != b.manifest or pending:
                if alive and node is not None:
                    fsaccess.need(self.c, node, W, where)
                self._may_path(where)
                events.append(
                    ev.VfsVersion(ino=t.ino, manifest=b.manifest, size=b.size, pid=self.c.pid, cause="undo")
                )
                rows.append({"path": where, "action": "restored", "size": b.size})
        if alive and node is not None and node.mode != b.mode:
            self._may_path(where)
            events.append(ev.VfsChmod(ino=t.ino, mode=b.mode, pid=self.c.pid))
            rows.append({"path": where, "action": "mode", "mode": b.mode})
        self._done(t, events, rows)

    def _free(self, t: Track, p: int, n: str) -> None:
        """The name ``n`` in directory ``p`` is there to take, or this inode waits (or conflicts)."""
        d = self.fs.inodes.get(p)
        if d is None or d.kind != DIR or d.nlink <= 0:
            if p in self.pending:
                raise Wait(self._conflict(t, "its directory is gone", None))
            raise Refuse(self._conflict(t, "its directory is gone", None))
        occupant = d.entries.get(n)
        if occupant is None:
            return
        path = self._path(p, n)
        if occupant in self.pending:
            raise Wait(self._conflict(t, f"{path} holds another file", None, path))
        raise Refuse(self._conflict(t, f"{path} holds another file", last_named(self.k, p, n), path))

    # -- checks, events, words ---------------------------------------------------------------------------

    def _may(self, parent: int, path: str) -> None:
        """Write on ``path`` (capability), and for agents the directory's write bit."""
        self._may_path(path)
        holder = self.fs.inodes.get(parent)
        if holder is not None:
            fsaccess.need(self.c, holder, W, f"{path}: its directory")

    def _may_path(self, path: str) -> None:
        fsaccess.authorise(cast("Kernel", self.view), self.c, "fs_undo", path, "write", follow=False)

    def _done(self, t: Track, events: list[ev.Payload], rows: list[dict[str, Any]]) -> None:
        self.view.apply(events)
        self.report["reverted"] += [{"ino": t.ino, **r} for r in rows]

    def _path(self, parent: int, name: str) -> str:
        return posixpath.join(self.fs.path_of(parent) or "?", name)

    def _name_of(self, parent: int, ino: int) -> str:
        d = self.fs.inodes.get(parent)
        return next((n for n, i in (d.entries.items() if d else ()) if i == ino), "")

    def _where(self, t: Track) -> str:
        now = (
            self._names_now(t) or fold(t.ino, t.changes, t.first).names or fold(t.ino, t.changes, 2**63).names
        )
        return self._path(*now[0]) if now else f"inode {t.ino}"

    def _conflict(self, t: Track, reason: str, by: Change | None, path: str | None = None) -> dict[str, Any]:
        if by is not None and by.pid not in self.names:
            self.names |= process_names(self.k, {by.pid})
        return {
            "ino": t.ino,
            "path": path or self._where(t),
            "reason": reason,
            "pid": by.pid if by is not None else None,
            "process": self.names.get(by.pid, "") if by is not None else None,
            "seq": by.seq if by is not None else None,
        }
