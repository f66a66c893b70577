"""``agentos diff A B``: what changed between two points of the kernel's history (the admin call ``diff``).

Both ends are POINTs (``past.point_seq``: a seq, a time, ``now``) and their states come from
``k.past`` (a snapshot plus the log, as ``at`` rebuilds them). What the two states can tell is
read from them: files (``pastfiles.py``), quota usage (the ledger's, per group), groups created.
What they cannot — a process born and reaped in between, a capability granted and dropped, who
revoked what and why — comes from the log of the interval (A, B] (``store/interval.py``), through
its kind index, so a diff costs the events of those kinds in the interval.

A after B is refused (``EINVAL``): history runs one way, and a reverse diff would have to say what
"un-spawning" a process or "un-spending" a token means; swap the points. Every list is bounded
(``param.DIFF_*``, and the call's ``max_files``, ``max_diff_bytes``); its count says how many in
all and ``truncated`` says when the list is shorter. LLM calls are an empty section until the LLM
core exists (issue 8). Nothing is changed: the call records no event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import InvalidArgument
from agentos.kernel import timeline
from agentos.kernel.calls import Caller, Done
from agentos.kernel.past import point_seq
from agentos.kernel.pastfiles import Bounds, files_section
from agentos.state import events as ev
from agentos.state.caps import Capability
from agentos.state.world import State
from agentos.store import history, interval
from agentos.store.events import EventRecord

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

CUT_OFF_SHOWN = 50  # capabilities derived from a revoked one, listed with it
LLM_NOTE = "no LLM core yet (issue 8): the model calls made between the points will be listed here"


def sys_diff(k: Kernel, c: Caller, a: Any) -> Done:
    seq_a, seq_b = point_seq(k, a.a), point_seq(k, a.b)
    if seq_a > seq_b:
        raise InvalidArgument(
            f"{a.a!r} (seq {seq_a}) is after {a.b!r} (seq {seq_b}): history runs one way; swap them"
        )
    return Done(diff(k, seq_a, seq_b, Bounds(a.max_files, a.max_diff_bytes, a.content), a.files_only))


def diff(k: Kernel, seq_a: int, seq_b: int, bounds: Bounds, files_only: bool = False) -> dict[str, Any]:
    """What changed from ``seq_a`` to ``seq_b`` (``seq_a <= seq_b``, both durable)."""
    sa, sb = k.past.state_at(seq_a), k.past.state_at(seq_b)
    out: dict[str, Any] = {
        "a": seq_a,
        "b": seq_b,
        "ts_a": history.ts_of(k.reader, seq_a),
        "ts_b": history.ts_of(k.reader, seq_b),
        "events": seq_b - seq_a,
        "files": files_section(k, seq_a, sa, seq_b, sb, bounds),
    }
    if not files_only:
        out["processes"] = _processes(k, seq_a, sa, seq_b, sb)
        out["capabilities"] = _capabilities(k, seq_a, sa, seq_b, sb)
        out["usage"] = _usage(sa, sb)
        out["llm_calls"] = {"calls": [], "count": 0, "note": LLM_NOTE}
    return out


def _events(k: Kernel, a: int, b: int, kinds: list[str]) -> tuple[dict[str, list[Any]], dict[str, int]]:
    """Each kind's first ``DIFF_ROWS`` events in (a, b] as (record, payload), and how many in all."""
    found: dict[str, list[Any]] = {}
    on = timeline.lineage(k).literal()  # the interval as the live branch saw it
    for kind in kinds:
        rows: list[EventRecord] = interval.between(k.reader, a, b, [kind], param.DIFF_ROWS, on)
        found[kind] = [(r, ev.decode(r.kind, r.version, r.payload)) for r in rows]
    return found, interval.counts(k.reader, a, b, kinds, on)


def _listed(rows: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {"rows": rows, "count": total, "truncated": total > len(rows)}


# -- processes ---------------------------------------------------------------------------------------


def _processes(k: Kernel, a: int, sa: State, b: int, sb: State) -> dict[str, Any]:
    found, total = _events(k, a, b, ["proc.spawned", "proc.exited"])
    born = {e.pid: (r, e) for r, e in found["proc.spawned"]}

    def who(pid: int) -> tuple[str, str]:
        if pid in born:
            return born[pid][1].name, born[pid][1].kind
        p = sb.world.procs.get(pid) or sa.world.procs.get(pid)
        return (p.name, p.kind) if p is not None else ("?", "?")

    born_rows = [
        {"pid": e.pid, "ppid": e.ppid, "name": e.name, "kind": e.kind, "group": _group(sb, e), "seq": r.seq}
        | {"ts": r.ts}
        for r, e in found["proc.spawned"]
    ]
    exited_rows = [
        {"pid": e.pid, "name": who(e.pid)[0], "kind": who(e.pid)[1], "status": e.status, "signal": e.signal}
        | {"fault": e.fault, "reason": e.reason, "seq": r.seq, "ts": r.ts}
        for r, e in found["proc.exited"]
    ]
    return {
        "born": _listed(born_rows, total.get("proc.spawned", 0)),
        "exited": _listed(exited_rows, total.get("proc.exited", 0)),
        "alive": [len(sa.world.procs.alive()), len(sb.world.procs.alive())],
    }


def _group(sb: State, e: ev.ProcSpawned) -> str:
    p = sb.world.procs.get(e.pid)
    return p.group if p is not None else e.group


# -- capabilities ------------------------------------------------------------------------------------


def _capabilities(k: Kernel, a: int, sa: State, b: int, sb: State) -> dict[str, Any]:
    kinds = ["cap.granted", "cap.revoked", "cap.expired", "cap.transferred"]
    found, total = _events(k, a, b, kinds)
    granted = [
        {"cap": e.cap, "holder": e.holder, "resource": e.resource, "rights": list(e.rights)}
        | {"origin": e.origin, "by": e.by, "parent": e.parent, "seq": r.seq, "ts": r.ts}
        for r, e in found["cap.granted"]
    ]
    named = [e.cap for _, e in found["cap.revoked"] + found["cap.expired"]]
    known = _known(k, b, sa, sb, named)
    held = list(sa.world.caps.caps.values()) + list(sb.world.caps.caps.values())
    revoked = [
        _what(known, e.cap)
        | {"by": e.by, "reason": e.reason, "seq": r.seq, "ts": r.ts}
        | {"cut_off": sorted({c.id for c in held if e.cap in c.chain and c.id != e.cap})[:CUT_OFF_SHOWN]}
        for r, e in found["cap.revoked"]
    ]
    expired = [_what(known, e.cap) | {"seq": r.seq, "ts": r.ts} for r, e in found["cap.expired"]]
    moved = [
        {"cap": e.cap, "from": e.sender, "to": e.to, "seq": r.seq, "ts": r.ts}
        for r, e in found["cap.transferred"]
    ]
    return {
        "granted": _listed(granted, total.get("cap.granted", 0)),
        "revoked": _listed(revoked, total.get("cap.revoked", 0)),
        "expired": _listed(expired, total.get("cap.expired", 0)),
        "transferred": _listed(moved, total.get("cap.transferred", 0)),
        "held": [len(sa.world.caps.caps), len(sb.world.caps.caps)],
    }


def _known(k: Kernel, b: int, sa: State, sb: State, caps: list[int]) -> dict[int, Capability | ev.CapGranted]:
    """What each of ``caps`` was: from either state, else from its grant in the log (its holder gone)."""
    out: dict[int, Capability | ev.CapGranted] = {}
    for cap in caps:
        found = sb.world.caps.get(cap) or sa.world.caps.get(cap)
        if found is not None:
            out[cap] = found
    for r in interval.grants_of(
        k.reader, [c for c in caps if c not in out], b, timeline.lineage(k).literal()
    ):
        e = ev.decode(r.kind, r.version, r.payload)
        out[e.cap] = e
    return out


def _what(known: dict[int, Capability | ev.CapGranted], cap: int) -> dict[str, Any]:
    c = known.get(cap)
    if c is None:
        return {"cap": cap, "holder": None, "resource": "?", "rights": []}
    return {"cap": cap, "holder": c.holder, "resource": c.resource, "rights": list(c.rights)}


# -- quota usage (the ledger: consumption, never refunded) --------------------------------------------


def _usage(sa: State, sb: State) -> dict[str, Any]:
    before, after = sa.ledger.usage.used, sb.ledger.usage.used
    groups: dict[str, dict[str, float]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, {}), after.get(name, {})
        moved = {m: new.get(m, 0.0) - old.get(m, 0.0) for m in sorted(set(old) | set(new))}
        groups[name] = {m: d for m, d in moved.items() if d}
    files_a, files_b = sa.world.vfs.files_of, sb.world.vfs.files_of
    for name in sorted(set(files_a) | set(files_b)):
        d = files_b.get(name, 0) - files_a.get(name, 0)
        if d:
            groups.setdefault(name, {})["files"] = float(d)
    return {
        "groups": {name: row for name, row in sorted(groups.items()) if row},
        "groups_created": sorted(set(sb.world.groups.groups) - set(sa.world.groups.groups)),
        "cpu_ns": sb.ledger.cpu_total_ns - sa.ledger.cpu_total_ns,
        "denials": sb.ledger.denials - sa.ledger.denials,
    }
