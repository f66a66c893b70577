"""sys_* handlers for a file's past: ``fs_history``, ``fs_read_version``, ``fs_restore``, ``fs_undo``
(``docs/vfs.md``, "Versions, restore and undo").

A version is cut when a writer closes or fsyncs a file, or a transaction commits (``filedata.py``);
the log is the history. These calls read it (``fshistory.py``) and change nothing of it: a restore
and an undo are new events, caused by their caller, in one ``Done`` each.

What ``SEQ`` means. ``fs_read_version(path, seq)`` and ``fs_restore(path, seq)`` take the file's
content *as of* ``seq``: the last version cut at or before it (a file's creation is its empty first
version) — so a seq from ``agentos fs history`` or from ``agentos events`` both work. With
``exact`` the seq must be the one a version was cut at (ENOENT otherwise). Pending writes not yet
cut are no version. The file is the one ``path`` names now or, when nothing does, the last one that
had that name (a deleted file keeps its history), followed across renames (``fshistory.locate``).

Capabilities. ``fs_history`` needs ``read`` on the path, not ``list``: the rows carry each version's
content hash, which confirms a guess about a small file's bytes, and the sizes and authors of its
past — more than ``stat`` (``list``) shows. ``fs_read_version`` needs ``read``; ``fs_restore``
``write`` (and, for agents, the file's owner write bit), and is charged as a write: its new blobs
to ``stored_bytes`` (none: the version's are stored), a file it brings back to ``files``.
``fs_undo`` needs ``undo`` on ``proc:<pid>`` (``proc:children`` covers one's descendants; a call's
correlation names its caller), then ``write`` on every path it would change: a denied path is
reported and left alone. History follows a file, not a place: a file moved to where the caller may
read it brings its earlier versions along (as a directory moved with ``mv`` keeps its ``.git``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from agentos.abi import history_args as ha
from agentos.errors import InvalidArgument, IOFailure, NotFound
from agentos.kernel import fsaccess, fshistory, sysfile
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.fsaccess import W
from agentos.kernel.fshistory import Change, Version
from agentos.kernel.fsundo import Plan
from agentos.kernel.vfs import hostmount, hostundo, hostversions, mounts
from agentos.kernel.vfs.hostmount import wait_for_change
from agentos.kernel.vfs.hostundo import HostUndo
from agentos.kernel.vfs.mountfs import Routed
from agentos.state import events as ev
from agentos.state.vfs import FILE

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

SHOWN = frozenset(fshistory.OPS)  # the changes a history lists: content cuts and names


def undo_resource(a: ha.FsUndoArgs) -> str:
    """``proc:<pid>`` of whose changes an undo reverts (a call's: its caller's, from its correlation)."""
    if a.pid is not None:
        return f"proc:{a.pid}"
    return f"proc:{fshistory.caller_of(a.correlation) if a.correlation else 0}"


def _host(k: Kernel, c: Caller, path: str) -> Routed | None:
    """The host-mount file ``path`` names, None for the versioned tree; EINVAL on other mounts."""
    r = mounts.route(k, c, path, follow=False)
    if r is not None and r.fs.kind != hostmount.KIND:
        raise InvalidArgument(f"{path} is on {r.point} ({r.fs.kind}), which keeps no history")
    return r


def sys_fs_history(k: Kernel, c: Caller, a: ha.FsHistoryArgs) -> Done:
    """The file's versions and renames, oldest first, each with who made it (pid, process name,
    syscall id, correlation id) and what cut it; ``more`` when rows after ``limit`` remain."""
    r = _host(k, c, a.path)
    if r is not None:  # a host mount's recorded changes
        rows = [row for row in hostundo.history_rows(k, r.point, r.path) if row["seq"] > a.since]
        names = fshistory.process_names(k, {row["pid"] for row in rows})
        for row in rows:
            row["process"] = names.get(row["pid"], "")
        exists = True
        try:
            r.fs.stat(r)
        except NotFound:
            exists = False
        return Done({"ino": 0, "exists": exists, "versions": rows[: a.limit], "more": len(rows) > a.limit})
    ino, now = fshistory.locate(k, a.path)
    changes = fshistory.lineage(k, ino)
    names = fshistory.process_names(k, {ch.pid for ch in changes if ch.kind in SHOWN})
    rows: list[dict[str, Any]] = []
    size, digest = 0, ""
    for ch in changes:
        if ch.kind == "vfs.version":
            size, digest = ch.e.size, ch.e.manifest
        elif ch.kind == "vfs.created":
            size, digest = 0, ""
        if ch.kind in SHOWN and ch.seq > a.since:
            rows.append(fshistory.row(ch, changes, names, size, digest))
            if len(rows) > a.limit:
                break
    more = len(rows) > a.limit
    return Done({"ino": ino, "exists": now, "versions": rows[: a.limit], "more": more})


def _version(k: Kernel, path: str, seq: int, exact: bool) -> tuple[int, bool, list[Change], Version]:
    ino, now = fshistory.locate(k, path)
    changes = fshistory.lineage(k, ino)
    return ino, now, changes, fshistory.version_at(changes, seq, exact=exact, path=path)


def sys_fs_read_version(k: Kernel, c: Caller, a: ha.FsReadVersionArgs) -> Done:
    """``{data, seq, size, hash, ino}``: up to ``n`` bytes from ``offset`` of the version, the seq it
    was cut at, its whole size and manifest hash ("" when empty), and the inode it was in."""
    if (r := _host(k, c, a.path)) is not None:
        return hostversions.read_version(k, r, a.seq, a.exact, a.offset, a.n)
    _, _, _, v = _version(k, a.path, a.seq, a.exact)
    data = fshistory.read_version(k, v, a.offset, a.n)
    return Done({"data": data, "seq": v.seq, "size": v.size, "hash": v.manifest, "ino": v.ino})


def _mode(changes: list[Change], ino: int) -> int:
    mode = 0o644
    for ch in changes:
        if ch.ino == ino and ch.kind in ("vfs.created", "vfs.chmod"):
            mode = ch.e.mode
    return mode


def sys_fs_restore(k: Kernel, c: Caller, a: ha.FsRestoreArgs) -> Done | Block:
    """Make the file's content what it was as of ``seq``: a new version (the file brought back at
    ``path`` under its own inode number if it was deleted). ``{changed, seq, size, ino}``."""
    if (r := _host(k, c, a.path)) is not None:
        return hostversions.restore(k, c, r, a.seq, a.exact)
    ino, now, changes, v = _version(k, a.path, a.seq, a.exact)
    if v.manifest and not k.has_blob(v.manifest):
        raise IOFailure(f"the content of the version at seq {v.seq} is missing", code="EIO")
    fs = k.state.world.vfs
    events: list[ev.Payload] = []
    node = fs.inodes.get(ino) if now else None
    if node is not None:
        fsaccess.need(c, node, W, a.path)
        if node.manifest == v.manifest and not node.pending:
            return Done({"changed": False, "seq": v.seq, "size": v.size, "ino": ino})
    else:  # deleted since: its name comes back, under its own number so its history goes on
        holder, name = sysfile.free_name(fs, a.path)
        fsaccess.need(c, holder, W, f"{a.path}: its directory")
        old = fs.inodes.get(ino)
        if old is not None and old.kind == FILE:  # unlinked, still open somewhere: linked again
            events.append(ev.VfsLinked(parent=holder.ino, name=name, ino=ino, pid=c.pid))
        elif old is not None:
            raise NotFound(f"{a.path}: its inode {ino} is no longer a file", code="ENOENT")
        else:
            made = fsaccess.new_inode(k, c, a.path, holder, name, FILE, _mode(changes, ino))
            events.append(msgspec.structs.replace(made, ino=ino))
    if c.confined:
        k.quotas.check(c.pid, {"stored_bytes": 0})  # nothing new to store: the version's blobs are there
    events.append(ev.VfsVersion(ino=ino, manifest=v.manifest, size=v.size, pid=c.pid, cause="restore"))
    return Done({"changed": True, "seq": v.seq, "size": v.size, "ino": ino}, events)


def sys_fs_undo(k: Kernel, c: Caller, a: ha.FsUndoArgs) -> Done | Block:
    """Revert the file changes of ``pid`` (``tree``: and of every process spawned below it), or of
    the call ``correlation``: ``{reverted, conflicts, denied}`` (each with a ``_count``), ``pids``,
    ``events`` (how many it made; none with ``dry_run``)."""
    if (a.pid is None) == (a.correlation is None):
        raise InvalidArgument("fs_undo takes a pid or a correlation id (one of them)")
    if a.correlation is not None and a.tree:
        raise InvalidArgument("tree goes with pid: a correlation names one call")
    if a.pid is not None:
        pids = fshistory.descendants(k, a.pid) if a.tree else {a.pid}
        selected = fshistory.changes_by(k, pids)
    else:
        pids = set()
        selected = fshistory.changes_of_call(k, a.correlation or "")
    plan = Plan(k, c, selected)
    plan.run()
    host = HostUndo(k, c)
    host.run(pids, a.correlation)
    events = [] if a.dry_run else plan.view.events
    out = plan.result() | {"pids": sorted(pids), "correlation": a.correlation}
    for key in ("reverted", "conflicts", "denied"):  # host-mount changes join the world's
        out[key] = out[key] + getattr(host, key)
        out[f"{key}_count"] += len(getattr(host, key))
    out["events"] = len(events) + (0 if a.dry_run else len(host.events))
    if host.events and not a.dry_run:  # answered once the host holds the reverts (output-commit)
        return wait_for_change(k, "fs_undo", [*events, *host.events], {}, out)
    return Done(out, events)
