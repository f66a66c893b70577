"""sys_* handlers for ``undo``, ``redo`` and ``undo_list``: the kernel's operations undone and redone
as new events (``docs/timetravel.md``, "Undo and redo"; ``kernel/undo.py`` says what an operation is).

Capabilities, as ``fs_undo``: the ``undo`` right on ``proc:<pid>`` for one process's operations
(``proc:children`` covers one's descendants), on ``proc:all`` for the whole kernel's (``proc:*`` or a person's
root covers both); then ``write`` on every path a file inverse changes (a denied path is reported
and left alone), and ``admin`` ``mount`` / ``groups`` to invert a mount or a group's limits.

Each undo and redo is one ``Done``: its inverse events and its record (``undo.done`` naming the
operations it inverted or passed over; ``redo.done`` per undo it re-applied) land together or not
at all. A host-mount inverse answers once the host holds it (the output-commit rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentos.abi import undo_args as ua
from agentos.kernel import undowords
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.undo import History, Op
from agentos.kernel.undoplan import Inverter
from agentos.kernel.vfs.hostmount import wait_for_change
from agentos.state import events as ev

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def undo_resource(a: ua.UndoArgs | ua.RedoArgs | ua.UndoListArgs) -> str:
    """``proc:<pid>`` for one process's operations, ``proc:all`` for everyone's (a resource names no
    pattern: ``proc:*`` covers it, ``proc:children`` does not)."""
    return f"proc:{a.pid}" if a.pid is not None else "proc:all"


def _answer(
    k: Kernel, c: Caller, h: History, ops: list[Op], verb: str, dry_run: bool, scope: int | None
) -> tuple[dict[str, Any], list[ev.Payload], Inverter, list[Op], list[Op]]:
    inv = Inverter(k, c, h)
    inv.run(ops)
    done, skipped = inv.split(ops)
    rows = {r["op"]: r for r in undowords.rows(k, h, ops)}
    out: dict[str, Any] = {
        verb: [rows[op.key] | {"effects": inv.effects[op.key]} for op in done],
        "skipped": [rows[op.key] | {"reasons": inv.reasons[op.key]} for op in skipped],
        "scope": scope,
        "dry_run": dry_run,
    }
    for op in done:  # partly inverted: say what was left
        if inv.reasons.get(op.key):
            out[verb][done.index(op)]["reasons"] = inv.reasons[op.key]
    out |= inv.report()
    events = [] if dry_run else inv.all_events()
    return out, events, inv, done, skipped


def _finish(
    k: Kernel, call: str, out: dict[str, Any], events: list[ev.Payload], inv: Inverter
) -> Done | Block:
    out["events"] = len(events)
    if inv.host is not None and inv.host.events and events:  # answered once the host holds the inverses
        return wait_for_change(k, call, events, {}, out)
    return Done(out, events)


def sys_undo(k: Kernel, c: Caller, a: ua.UndoArgs) -> Done | Block:
    """Invert the last ``n`` operations not undone yet (of ``pid``), newest first: ``{undone,
    skipped, conflicts, denied, events}``; each operation with its ``effects`` or ``reasons``."""
    h = History(k)
    ops = h.to_undo(a.n, a.pid)
    out, events, inv, done, skipped = _answer(k, c, h, ops, "undone", a.dry_run, a.pid)
    if ops and not a.dry_run:
        mark = ev.UndoDone(
            ops=[op.key for op in done], skipped=[op.key for op in skipped], scope=a.pid, by=c.pid
        )
        events.append(mark)
    return _finish(k, "undo", out, events, inv)


def sys_redo(k: Kernel, c: Caller, a: ua.RedoArgs) -> Done | Block:
    """Re-apply the last ``n`` undos not redone yet (the inverse of each), newest first: ``{redone,
    skipped, ...}``; each undo's ``undid`` names the operations it had undone."""
    h = History(k)
    undos = h.to_redo(a.n, a.pid)
    out, events, inv, _, _ = _answer(k, c, h, undos, "redone", a.dry_run, a.pid)
    undo_of = {op.key: op.undo for op in undos}
    for row in (*out["redone"], *out["skipped"]):
        row["undid"] = list(h.undos[undo_of[row["op"]] or 0].e.ops)
    if not a.dry_run:
        for op in undos:
            assert op.undo is not None
            events.append(ev.RedoDone(undo=op.undo, ops=list(h.undos[op.undo].e.ops), by=c.pid))
    return _finish(k, "redo", out, events, inv)


def sys_undo_list(k: Kernel, c: Caller, a: ua.UndoListArgs) -> Done:
    """The last ``limit`` operations (of ``pid``), newest first, each with its ``status`` (live,
    undone at SEQ, passed over at SEQ, undo, redo), and ``redo``: how many undos redo would re-apply."""
    h = History(k)
    ops: list[Op] = []
    for op in h.ops(a.pid):
        if len(ops) >= a.limit:
            break
        ops.append(h.load(op))
    return Done(
        {"ops": undowords.rows(k, h, ops, status=True), "redo": len(h.to_redo(ua.MAX_OPS, a.pid, load=False))}
    )
