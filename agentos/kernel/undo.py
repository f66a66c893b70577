"""The log's operations as ``undo`` and ``redo`` see them (``docs/timetravel.md``, "Undo and redo").

An operation is one syscall that changed the world as a person sees it: its events share a
correlation id (an agent's ``pid:epoch:task:n``, a session's ``s<pid>:<request>``). What counts:
a file created, written (a version cut: close, fsync, a transaction, a restore), renamed, linked,
unlinked, removed or chmod-ed; a change on a host mount; a capability granted (delegated, approved,
redone — not the grants a process is born with), revoked or transferred; a mount or umount; a
group's limits set. Pending writes are no operation of their own: they belong to the version that
cuts them. Events with no correlation (a version cut at an agent's exit) make one operation per run
of them, keyed ``@SEQ``; the kernel's own housekeeping makes none.

The undo stack is read from the log, never kept beside it. ``undo.done`` names the operations an
undo inverted or passed over; ``redo.done`` names the undo it re-applied. So: an operation is
*undone* once an ``undo.done`` names it (a redo re-applies it as a new operation, which is then
the one to undo); the *redo stack* is the undos at the top of the history not yet redone, down to
the first other operation — a new operation after an undo clears it, as in an editor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from agentos import param
from agentos.kernel import timeline
from agentos.state import events as ev
from agentos.store import oplog
from agentos.store.events import EventRecord

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

FILE_KINDS = (
    "vfs.created",
    "vfs.version",
    "vfs.unlinked",
    "vfs.linked",
    "vfs.renamed",
    "vfs.rmdir",
    "vfs.chmod",
)
OTHER_KINDS = (
    *("cap.granted", "cap.revoked", "cap.transferred"),
    *("vfs.mounted", "vfs.unmounted", "group.limits", "vfs.host_change"),
)
MARKS = ("undo.done", "redo.done")
OP_KINDS = (*FILE_KINDS, *OTHER_KINDS, *MARKS)
_OP_KINDS = frozenset(OP_KINDS)
GRANTS = frozenset({"delegate", "approval", "redo"})  # a grant someone made (not one a process is born with)


def decode(r: EventRecord) -> Any:
    return ev.decode(r.kind, r.version, r.payload)


def counts(r: EventRecord) -> bool:
    """Whether this record makes (part of) a user's operation."""
    if r.kind not in _OP_KINDS or (r.correlation or "").startswith("kernel:"):
        return False
    if r.correlation is None and r.pid == param.KERNEL_PID:
        return False  # the kernel's own: the tree made at boot, expiries
    if r.kind == "cap.granted":
        return msgspec.json.decode(r.payload).get("origin") in GRANTS
    return True


@dataclass(slots=True)
class Op:
    """One operation: its key (its correlation, or ``@SEQ``), caller, newest event and its records
    (those seen by the scan; every event of the call once ``History.load`` ran)."""

    key: str
    pid: int
    correlation: str | None
    syscall: str | None
    seq: int
    ts: int
    records: list[EventRecord] = field(default_factory=list)
    undo: int | None = None  # the seq of its undo.done: it is an undo
    redo: int | None = None  # the seq of its redo.done: it is a redo

    @property
    def plain(self) -> bool:
        return self.undo is None and self.redo is None


@dataclass(slots=True)
class Mark:
    seq: int
    correlation: str | None
    e: Any  # UndoDone | RedoDone


class History:
    """The operations of the log, newest first, with what undo and redo made of them."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.until = k.committer.durable_seq  # taken once: the rest is in memory
        self.lineage = timeline.lineage(k)  # only the live branch's history: a rewind left the rest behind
        self.here = self.lineage.contains
        self.undos: dict[int, Mark] = {}  # undo.done seq -> it
        self.redone: dict[int, int] = {}  # undo.done seq -> the redo.done seq that re-applied it
        self.undone: dict[str, int] = {}  # op key -> the undo.done seq that inverted or passed it
        self.marks: dict[str, int] = {}  # correlation of an undo or redo -> its mark's seq
        for kind in MARKS:
            for r in self._of_kind(kind):
                m = Mark(r.seq, r.correlation, decode(r))
                if r.correlation is not None:
                    self.marks[r.correlation] = r.seq
                if kind == "undo.done":
                    self.undos[r.seq] = m
                    for key in (*m.e.ops, *m.e.skipped):
                        self.undone.setdefault(key, r.seq)
                else:
                    self.redone[m.e.undo] = r.seq
        self.redos = {v: u for u, v in self.redone.items()}  # redo.done seq -> undo.done seq

    # -- reading ------------------------------------------------------------------------------------

    def memory(self) -> list[EventRecord]:
        c = self.k.committer
        return [r for r in (*c.inflight, *c.pending) if r.seq > self.until and self.here(r.branch, r.seq)]

    def _of_kind(self, kind: str) -> list[EventRecord]:
        durable = [r for r in oplog.of_kind(self.k.reader, kind, self.until) if self.here(r.branch, r.seq)]
        return durable + [r for r in self.memory() if r.kind == kind]

    def _stream(self, pid: int | None) -> Iterator[EventRecord]:
        """The records that make operations, newest first (of ``pid`` when given)."""
        mine = [r for r in self.memory() if counts(r) and (pid is None or r.pid == pid)]
        yield from sorted(mine, key=lambda r: -r.seq)
        before, size = self.until + 1, 64  # most asks want the last few: pages grow as they go back
        while True:
            page = oplog.newest(self.k.reader, OP_KINDS, before, pid, size)
            for r in page:
                if self.here(r.branch, r.seq) and counts(r):
                    yield r
            if len(page) < size:
                return
            before, size = page[-1].seq, min(size * 4, oplog.PAGE)

    def ops(self, pid: int | None = None) -> Iterator[Op]:
        """Every operation (of ``pid``), newest first."""
        seen: set[str] = set()
        run: Op | None = None  # a run of events with no correlation: one operation
        for r in self._stream(pid):
            if r.correlation is None:
                if run is not None and run.pid == r.pid:
                    run.records.append(r)
                    continue
                if run is not None:
                    yield run
                run = Op(f"@{r.seq}", r.pid, None, r.syscall, r.seq, r.ts, [r])
                continue
            if run is not None:
                yield run
                run = None
            if r.correlation in seen:
                continue
            seen.add(r.correlation)
            op = Op(r.correlation, r.pid, r.correlation, r.syscall, r.seq, r.ts, [r])
            mark = self.marks.get(r.correlation)
            if mark is not None:
                op.undo, op.redo = (mark, None) if mark in self.undos else (None, mark)
            yield op
        if run is not None:
            yield run

    def load(self, op: Op) -> Op:
        """Every event of the operation's call, oldest first."""
        if op.correlation is not None:
            got = oplog.of_call(self.k.reader, op.pid, op.correlation, self.until)
            got = [r for r in got if self.here(r.branch, r.seq)]  # a replayed agent's ids recur on a branch
            got += [r for r in self.memory() if r.pid == op.pid and r.correlation == op.correlation]
            op.records = got
        else:
            op.records.sort(key=lambda r: r.seq)
        return op

    # -- the stacks ---------------------------------------------------------------------------------

    def to_undo(self, n: int, pid: int | None) -> list[Op]:
        """The last ``n`` operations (of ``pid``) not undone yet, newest first (undos are redone, not undone)."""
        out: list[Op] = []
        for op in self.ops(pid):
            if len(out) >= n:
                break
            if op.undo is None and op.key not in self.undone:
                out.append(op)
        return [self.load(op) for op in out]

    def to_redo(self, n: int, pid: int | None, *, load: bool = True) -> list[Op]:
        """The last ``n`` undos (of ``pid``'s operations) not redone, newest first, back to the first
        operation made since (which cleared the rest)."""
        wanted = [
            s for s, m in self.undos.items() if s not in self.redone and (pid is None or m.e.scope == pid)
        ]
        if not wanted:
            return []
        oldest = min(wanted)
        out: list[Op] = []
        for op in self.ops():
            if len(out) >= n or op.seq < oldest:
                break
            if op.redo is not None:
                continue
            if op.undo is not None:
                if op.undo in wanted:
                    out.append(op)
                continue
            if pid is None or op.pid == pid:
                break  # a new operation since: the redo stack is empty below it
        return [self.load(op) for op in out] if load else out

    def status(self, op: Op) -> str:
        """What became of it: live, undone (by seq N), skipped, an undo (redone?), a redo."""
        if op.undo is not None:
            return f"undo (redone at {self.redone[op.undo]})" if op.undo in self.redone else "undo"
        if op.redo is not None:
            undone = self.undone.get(op.key)
            return f"redo, undone at {undone}" if undone is not None else "redo"
        at = self.undone.get(op.key)
        if at is None:
            return "live"
        return f"undone at {at}" if op.key in self.undos[at].e.ops else f"passed over at {at}"
