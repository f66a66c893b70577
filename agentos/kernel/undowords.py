"""What an operation was, in words and rows: ``agentos undo --list``, and the reports of undo and redo.

Paths are told as the tree names the inodes now (a file renamed since shows its new name; one
gone, its inode number); the call is the one an agent's journal names, else the first effect's.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from agentos.kernel.fshistory import process_names
from agentos.kernel.undo import History, Op, counts, decode
from agentos.store import oplog
from agentos.store.events import EventRecord

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

_CALL = {
    "vfs.created": "create",
    "vfs.version": "write",
    "vfs.unlinked": "unlink",
    "vfs.linked": "link",
    "vfs.renamed": "rename",
    "vfs.rmdir": "rmdir",
    "vfs.chmod": "chmod",
    "cap.granted": "grant",
    "cap.revoked": "cap_revoke",
    "cap.transferred": "cap_transfer",
    "vfs.mounted": "mount",
    "vfs.unmounted": "umount",
    "group.limits": "group_limit",
    "vfs.host_change": "host",
    "undo.done": "undo",
    "redo.done": "redo",
}
MAX_WHAT = 16  # lines of "what" per operation in a report


def path_of(k: Kernel, ino: int) -> str:
    return k.state.world.vfs.path_of(ino) or f"inode {ino}"


def name_in(k: Kernel, parent: int, name: str) -> str:
    return posixpath.join(k.state.world.vfs.path_of(parent) or f"inode {parent}", name)


def what(k: Kernel, op: Op) -> list[str]:
    """One line per effect of the operation (``MAX_WHAT`` at most, then how many more)."""
    out: list[str] = []
    for r in op.records:
        if not counts(r):
            continue
        e = decode(r)
        kind = r.kind
        if kind == "vfs.created":
            out.append(f"{'mkdir' if e.kind == 'dir' else 'create'} {name_in(k, e.parent, e.name)}")
        elif kind == "vfs.version":
            out.append(f"write {path_of(k, e.ino)} ({e.size} bytes{', ' + e.cause if e.cause else ''})")
        elif kind in ("vfs.unlinked", "vfs.rmdir", "vfs.linked"):
            out.append(f"{_CALL[kind]} {name_in(k, e.parent, e.name)}")
        elif kind == "vfs.renamed":
            out.append(f"rename {name_in(k, e.parent, e.name)} -> {name_in(k, e.new_parent, e.new_name)}")
        elif kind == "vfs.chmod":
            out.append(f"chmod {oct(e.mode)} {path_of(k, e.ino)}")
        elif kind == "cap.granted":
            out.append(f"grant cap {e.cap} ({e.resource} {','.join(e.rights)}) to pid {e.holder}")
        elif kind == "cap.revoked":
            out.append(f"revoke cap {e.cap}")
        elif kind == "cap.transferred":
            out.append(f"transfer cap {e.cap} from pid {e.sender} to pid {e.to}")
        elif kind == "vfs.mounted":
            out.append(f"mount {e.path} ({e.kind} {e.source}{', read-only' if e.readonly else ''})")
        elif kind == "vfs.unmounted":
            out.append(f"umount {e.path}")
        elif kind == "group.limits":
            out.append(f"limits of group {e.name}: {e.limits}")
        elif kind == "vfs.host_change":
            out.append(f"host {e.op} {e.mount}{e.path}{' -> ' + e.to if e.op == 'rename' else ''}")
        elif kind == "undo.done":
            out.append(
                f"undo of {len(e.ops)} operation(s)"
                + (f", {len(e.skipped)} passed over" if e.skipped else "")
            )
        elif kind == "redo.done":
            out.append(f"redo of the undo at seq {e.undo}")
    if len(out) > MAX_WHAT:
        out = [*out[:MAX_WHAT], f"... and {len(out) - MAX_WHAT} more"]
    return out


def calls(k: Kernel, h: History, ops: list[Op]) -> dict[str, str]:
    """op key -> the call it was: an agent's from its journal (``sys.done``), else its first effect's."""
    out: dict[str, str] = {}
    by_pid: dict[int, list[str]] = {}
    since: dict[int, int] = {}
    for op in ops:
        if op.syscall is not None and op.correlation == op.syscall:
            by_pid.setdefault(op.pid, []).append(op.syscall)
            since[op.pid] = min(since.get(op.pid, op.seq), min(r.seq for r in op.records) - 1)
    for pid, ids in by_pid.items():
        done = [
            r for r in oplog.calls_done(k.reader, pid, ids, since[pid], h.until) if h.here(r.branch, r.seq)
        ]
        done += [r for r in h.memory() if r.pid == pid and r.kind == "sys.done" and r.syscall in ids]
        for r in done:
            if r.syscall is not None:
                out[r.syscall] = decode(r).call
    for op in ops:
        if op.undo is not None or op.redo is not None:
            out[op.key] = "undo" if op.undo is not None else "redo"
        elif op.key not in out:
            first = next((r for r in op.records if counts(r)), None)
            out[op.key] = "exit" if op.correlation is None else _infer(first) if first else "?"
    return out


_CAUSE = {"close": "close", "fsync": "fsync", "restore": "fs_restore", "undo": "fs_undo", "exit": "exit"}
_ORIGIN = {"delegate": "cap_delegate", "approval": "approve", "redo": "redo"}
_MADE = {"dir": "mkdir", "symlink": "symlink"}


def _infer(r: EventRecord) -> str:
    """A session's call, told by its first effect (sessions keep no journal)."""
    e = decode(r)
    if r.kind == "vfs.created":
        return _MADE.get(e.kind, "open")
    if r.kind == "vfs.version":
        return _CAUSE.get(e.cause, "write")
    if r.kind == "cap.granted":
        return _ORIGIN.get(e.origin, "grant")
    return _CALL.get(r.kind, "?")


def rows(k: Kernel, h: History, ops: list[Op], *, status: bool = False) -> list[dict[str, Any]]:
    """One row per operation: key, seq, ts, pid, process, call, correlation, what (and status)."""
    names = process_names(k, {op.pid for op in ops})
    call = calls(k, h, ops)
    out = []
    for op in ops:
        row: dict[str, Any] = {
            "op": op.key,
            "seq": op.seq,
            "ts": op.ts,
            "pid": op.pid,
            "process": names.get(op.pid, ""),
            "call": call[op.key],
            "correlation": op.correlation,
            "what": what(k, op),
        }
        if status:
            row["status"] = h.status(op)
        out.append(row)
    return out
