"""History and undo of host-mount changes (``vfs.host_change`` / ``vfs.host_done``): ``docs/vfs.md``.

A host file has no inode of ours, so its history is by place: the made changes whose mount point
and path (or rename target) are the ones asked about. ``fs_undo`` of a process reverts its made
host changes newest first, each by its inverse — a write puts the bytes it replaced back (or
removes the file it created), a mkdir is removed, an rmdir made again, an unlink brings the file
(or symlink) back, a rename goes back and restores the file it replaced. Each inverse is checked
against the host as it will be once the inverses before it are made (a small overlay of planned
states): a path whose bytes are not what the undone change left — changed since by another
process, or on the host by something outside AgentOS — is a conflict, reported and left alone.
The inverses are recorded changes like any (cause ``undo``), so an undo is undoable too.
"""

from __future__ import annotations

import posixpath
import stat as st
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from agentos.errors import AgentOSError, PermissionDenied
from agentos.kernel import fsaccess
from agentos.kernel.vfs.hostmount import HostFS, digest
from agentos.state import events as ev
from agentos.store.chunks import Manifest
from agentos.store.events import EventRecord

if TYPE_CHECKING:
    from agentos.kernel.calls import Caller
    from agentos.kernel.kernel import Kernel

DIR, GONE = "<dir>", "<gone>"  # overlay states besides a content digest


@dataclass(frozen=True, slots=True)
class HostChange:
    seq: int
    ts: int
    syscall: str | None
    correlation: str | None
    e: ev.VfsHostChange
    error: str | None  # None: made; else why not ("unmade yet", or the error it failed with)


def _records(k: Kernel, kind: str) -> list[EventRecord]:
    """Every durable and in-memory record of ``kind`` (host changes are few: the kind index)."""
    c = k.committer
    until = c.durable_seq
    out = list(k.log.read(0, until=until, kinds=[kind], conn=k.reader))
    out += [r for r in (*c.inflight, *c.pending) if r.seq > until and r.kind == kind]
    return out


def host_changes(k: Kernel, point: str) -> list[HostChange]:
    """Every change recorded on the mount at ``point``, oldest first, with its outcome."""
    outcome: dict[int, str] = {}
    for r in _records(k, "vfs.host_done"):
        done = msgspec.json.decode(r.payload, type=ev.VfsHostDone)
        outcome[done.change] = done.error
    out = []
    for r in _records(k, "vfs.host_change"):
        e = msgspec.json.decode(r.payload, type=ev.VfsHostChange)
        if e.mount == point:
            error = outcome.get(r.seq, "unmade yet")
            out.append(HostChange(r.seq, r.ts, r.syscall, r.correlation, e, error or None))
    return out


def history_rows(k: Kernel, point: str, path: str) -> list[dict[str, Any]]:
    """``fs_history`` of a host path, in its rows' shape: the changes that touched it, with what
    each left there (``hash``, ``size``) and ``error`` for one that was refused when made."""
    rows = []
    for h in host_changes(k, point):
        e = h.e
        if path not in (e.path, e.to if e.op == "rename" else None):
            continue
        left = e.after if e.op == "write" else e.before if e.op == "rename" and e.to == path else None
        row: dict[str, Any] = {
            "seq": h.seq,
            "ts": h.ts,
            "op": {"write": "version", "unlink": "unlink", "rename": "rename"}.get(e.op, e.op),
            "ino": 0,
            "size": _size(k, left),
            "hash": left or "",
            "pid": e.pid,
            "process": "",  # filled by the caller, from one lookup for every row
            "syscall": h.syscall,
            "correlation": h.correlation,
            "name": posixpath.basename(e.path),
            "made": h.error is None,
            "error": h.error or "",
        }
        if e.op == "write":
            row["cut"] = e.cause
        elif e.op == "rename":
            row["from"], row["name"] = e.path, e.to
        rows.append(row)
    return rows


def _size(k: Kernel, h: str | None) -> int:
    if not h:
        return 0
    data = k.blob(h)
    return Manifest.decode(data).size if data is not None else 0


class HostUndo:
    """The inverse changes of the selected made host changes, newest first, with their conflicts."""

    def __init__(self, k: Kernel, c: Caller) -> None:
        self.k, self.c = k, c
        self.events: list[ev.Payload] = []
        self.reverted: list[dict[str, Any]] = []
        self.conflicts: list[dict[str, Any]] = []
        self.denied: list[dict[str, Any]] = []
        self.planned: dict[tuple[str, str], str] = {}  # (mount, path) -> DIR | GONE | digest, once made

    def run(
        self, selected: set[int] | None = None, correlation: str | None = None, calls: set[str] | None = None
    ) -> None:
        """Revert the changes of the pids ``selected``, of the call ``correlation``, or of the calls
        ``calls`` (correlation ids: ``kernel/undoplan.py``)."""
        if correlation is not None:
            calls = {correlation}
        for point, mount in sorted(self.k.state.world.vfs.mounts.items()):
            if mount.kind != "host":
                continue
            changes = host_changes(self.k, point)
            mine = [
                h
                for h in changes
                if h.error is None
                and (h.e.pid in (selected or ()) if calls is None else h.correlation in calls)
            ]
            fs = self.k.mounts.fs_at(point, self.c.pid)
            for h in reversed(mine):
                later = [
                    o
                    for o in changes
                    if o.seq > h.seq and o.error is None and o not in mine and _touches(o, h)
                ]
                if later:
                    self._conflict(h, f"changed later by process {later[0].e.pid} (seq {later[0].seq})")
                    continue
                if isinstance(fs, HostFS):
                    self._invert(fs, point, h)

    # -- the host as the planned inverses will leave it ----------------------------------------------

    def _now(self, fs: HostFS, point: str, path: str) -> str | None:
        got = self.planned.get((point, path))
        if got is not None:
            return got
        try:
            s = fs.host.stat(path, follow_symlinks=False)
        except AgentOSError:  # not there (or not reachable): nothing to compare with
            return GONE
        if st.S_ISDIR(s.st_mode):
            return DIR
        if st.S_ISLNK(s.st_mode):
            return "->" + fs.host.readlink(path)
        return digest(fs.content(path))

    def _conflict(self, h: HostChange, reason: str) -> None:
        row = {"seq": h.seq, "op": h.e.op, "path": h.e.mount + h.e.path, "reason": reason}
        self.conflicts.append(row | {"pid": None, "process": ""})

    def _emit(self, h: HostChange, op: str, path: str, **kw: Any) -> None:
        self.events.append(
            ev.VfsHostChange(mount=h.e.mount, path=path, op=op, pid=self.c.pid, cause="undo", **kw)
        )

    def _invert(self, fs: HostFS, point: str, h: HostChange) -> None:
        e = h.e
        try:
            for path in (e.path, e.to) if e.op == "rename" else (e.path,):
                fsaccess.authorise(self.k, self.c, "fs_undo", point + path, "write", follow=False)
        except PermissionDenied as err:
            self.denied.append({"seq": h.seq, "path": point + e.path, "reason": err.message})
            return None
        now = self._now(fs, point, e.path)
        if e.op == "write":
            if now != e.after:
                return self._conflict(h, "its content changed since")
            if e.before is None:
                self._emit(h, "unlink", e.path, before=e.after)
                self.planned[(point, e.path)] = GONE
            else:
                self._emit(h, "write", e.path, before=e.after, after=e.before)
                self.planned[(point, e.path)] = e.before
        elif e.op == "mkdir":
            if now != DIR:
                return self._conflict(h, "the directory is gone or replaced")
            self._emit(h, "rmdir", e.path)
            self.planned[(point, e.path)] = GONE
        elif e.op == "rmdir":
            if now != GONE:
                return self._conflict(h, "the name is taken again")
            self._emit(h, "mkdir", e.path)
            self.planned[(point, e.path)] = DIR
        elif e.op == "unlink":
            if now != GONE:
                return self._conflict(h, "the name is taken again")
            if e.to:
                self._emit(h, "symlink", e.path, to=e.to)
                self.planned[(point, e.path)] = "->" + e.to
            else:
                self._emit(h, "write", e.path, before=None, after=e.before)
                self.planned[(point, e.path)] = e.before or GONE
        elif e.op == "rename":
            moved = self._now(fs, point, e.to)
            if now != GONE or moved == GONE:
                return self._conflict(h, f"{e.path} is taken again or {e.to} is gone")
            self._emit(h, "rename", e.to, to=e.path)
            self.planned[(point, e.path)], self.planned[(point, e.to)] = moved or GONE, GONE
            if e.before is not None:
                self._emit(h, "write", e.to, before=None, after=e.before)
                self.planned[(point, e.to)] = e.before
        elif e.op == "symlink":
            if now != "->" + e.to:
                return self._conflict(h, "the symlink changed since")
            self._emit(h, "unlink", e.path, to=e.to)
            self.planned[(point, e.path)] = GONE
        else:
            return self._conflict(h, f"cannot undo {e.op}")
        action = {
            "write": "rewrite" if e.before else "remove",
            "mkdir": "rmdir",
            "rmdir": "mkdir",
            "symlink": "remove",
        }
        self.reverted.append(
            {"seq": h.seq, "op": e.op, "action": action.get(e.op, "restore"), "path": point + e.path}
        )
        return None


def _touches(o: HostChange, h: HostChange) -> bool:
    places = {h.e.path, h.e.to} if h.e.op == "rename" else {h.e.path}
    theirs = {o.e.path, o.e.to} if o.e.op == "rename" else {o.e.path}
    return bool(places & theirs)
