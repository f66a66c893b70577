"""``replay_steps``: an agent's recorded history, call by call (``agentos replay PID``, ``record export``).

Each step is one call ``n`` of the agent's current epoch: its name, its outcome as journaled
(result, typed error or cancellation; ``blocked`` when the call was parked and never answered),
how long it took, and the world events that same call caused (events stamped with its syscall
id ``pid:epoch:task:n``), each as a kind and a short summary. ``print()`` output the code made
before call ``n`` is listed with step ``n`` (kind ``console.write``). The log keeps only a digest of
a call's arguments, so no arguments are here: the client recovers them by re-running the stored
code against this journal offline (``runtime/offline.py``), which the replay contract makes exact.

Bounded: ``limit`` calls and about ``REPLAY_REPLY_BYTES`` of journal data per answer (``next`` says
where the next page starts). The journal is read in one function, ``journal_records``.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from agentos import param
from agentos.abi import history_args as ha
from agentos.errors import InvalidArgument, NotFound
from agentos.kernel import timeline
from agentos.kernel.calls import Caller, Done
from agentos.state.proc import Process
from agentos.store.events import EventRecord

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

SUMMARY_CHARS = 120  # one result's or one effect's summary
MAX_EFFECTS = 50  # effects listed per step (``effects_total`` counts them all)
_JOURNAL_KINDS = frozenset({"sys.done", "sys.blocked"})
_RAW_DROP = ("pid", "epoch", "task", "n")  # the step says these


def journal_records(k: Kernel, p: Process) -> Iterator[EventRecord]:
    """Every durable event of ``p`` since its spawn, in order: its journal, what its calls caused,
    its console, along the live branch's history (a rewind leaves the rest behind). The one place
    replay reads the log."""
    here = timeline.lineage(k).contains
    records = k.log.read(p.created_seq - 1, until=k.committer.durable_seq, pid=p.pid, conn=k.reader)
    return (r for r in records if here(r.branch, r.seq))


def _agent(k: Kernel, pid: int) -> Process:
    p = k.state.world.procs.get(pid)
    if p is None:
        raise NotFound(f"no process {pid}", code="ESRCH")
    if p.kind != "agent":
        raise InvalidArgument(f"process {pid} is a {p.kind}, not an SDK agent: it has no journal to replay")
    return p


def header(p: Process) -> dict[str, Any]:
    ended = p.exit_status is not None
    return {
        "pid": p.pid,
        "name": p.name,
        "target": p.target,
        "argv": list(p.argv),
        "entry": p.entry,
        "filename": p.filename,
        "package": p.package,
        "code": p.code,
        "epoch": p.epoch,
        "state": p.state,
        "exit": {"status": p.exit_status, "signal": p.exit_signal, "fault": p.fault, "reason": p.exit_reason}
        if ended
        else None,
    }


def _call_n(syscall: str | None, p: Process) -> int | None:
    """The call number of a ``pid:epoch:task:n`` syscall id of ``p``'s current epoch."""
    if not syscall:
        return None
    parts = syscall.split(":")
    if len(parts) != 4 or parts[0] != str(p.pid) or parts[1] != str(p.epoch) or not parts[3].isdigit():
        return None
    return int(parts[3])


def short(value: Any, limit: int = SUMMARY_CHARS) -> str:
    """A value as one short line, as Python writes it."""
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _result(done: dict[str, Any]) -> str:
    if done.get("result_bytes"):
        return f"<{len(base64.b64decode(done.get('result') or ''))} bytes>"
    return short(done.get("result"))


class _Paths:
    """Inode -> its path now (the versioned tree as it is; a removed file shows as ``ino N``)."""

    def __init__(self, k: Kernel) -> None:
        self.fs = k.state.world.vfs

    def __call__(self, ino: Any) -> str:
        path = self.fs.path_of(ino) if isinstance(ino, int) else None
        return path or f"ino {ino}"


def effect(kind: str, e: dict[str, Any], path: _Paths, k: Kernel) -> str:
    """One event a call caused, as a short line for a person."""
    if kind == "vfs.wrote":
        return f"{path(e.get('ino'))}: {e.get('length')} bytes at {e.get('offset')} (size {e.get('size')})"
    if kind == "vfs.version":
        return f"{path(e.get('ino'))}: new version, {e.get('size')} bytes ({e.get('cause') or 'cut'})"
    if kind == "vfs.created":
        return f"{path(e.get('ino'))} ({e.get('kind')})"
    if kind == "vfs.opened":
        where = e.get("mount", "") + e.get("path", "") if e.get("mount") else path(e.get("ino"))
        return f"fd {e.get('fd')} -> {where}"
    if kind in ("vfs.unlinked", "vfs.rmdir", "vfs.linked"):
        return f"{e.get('name')} (ino {e.get('ino')}) in {path(e.get('parent'))}"
    if kind == "vfs.renamed":
        return f"{e.get('name')} -> {path(e.get('new_parent')).rstrip('/')}/{e.get('new_name')}"
    if kind == "vfs.truncated":
        return f"{path(e.get('ino'))}: size {e.get('size')}"
    if kind == "console.write":
        data = (k.blob(e.get("blob", "")) or b"").decode("utf-8", "replace")
        return f"{e.get('stream')}: {short(data, SUMMARY_CHARS - 8)}"
    if kind in ("vfs.closed", "vfs.offset", "vfs.dup"):
        return " ".join(f"{f} {e[f]}" for f in ("fd", "offset", "new_fd") if f in e)
    if kind == "proc.exited":
        why = f" (SIG{e['signal']})" if e.get("signal") else f" [{e['fault']}]" if e.get("fault") else ""
        return f"status {e.get('status')}{why}"
    return short(", ".join(f"{f}={v!r}" for f, v in e.items() if f not in ("pid", "epoch", "task")))


def steps(k: Kernel, p: Process, a: ha.ReplayStepsArgs) -> tuple[list[dict[str, Any]], int | None]:
    """Calls ``a.start`` .. of ``p``'s current epoch and where the next page starts (None: the end)."""
    by_n: dict[int, dict[str, Any]] = {}
    path, budget, end = _Paths(k), param.REPLAY_REPLY_BYTES, a.start + a.limit
    nxt: int | None = None
    last_call = -1
    with contextlib.closing(journal_records(k, p)) as records:
        for r in records:
            n = _call_n(r.syscall, p)
            e: dict[str, Any] | None = None
            if n is not None:
                last_call = max(last_call, n)
            elif r.kind == "console.write":  # print() output, made before call n
                e = msgspec.json.decode(r.payload)
                n = e.get("n", -1) if e.get("epoch", 0) == p.epoch else -1
            elif r.kind == "proc.exited" or r.kind.startswith("vfs."):  # its exit: fds closed, files cut
                n = last_call + 1
            if n is None or n < a.start:
                continue
            if n >= end or (budget <= 0 and n not in by_n):
                nxt = n
                break
            step = by_n.get(n)
            if step is None:
                step = by_n[n] = _step(n)
            budget -= len(r.payload)
            e = msgspec.json.decode(r.payload) if e is None else e
            _add(step, r, e, a.raw, path, k)
    return [by_n[n] for n in sorted(by_n)], nxt


def _step(n: int) -> dict[str, Any]:
    return {
        "n": n,
        "call": None,
        "seq": None,
        "ok": None,
        "result": None,
        "error": None,
        "cancelled": None,
        "blocked": None,
        "duration_ms": None,
        "args_digest": None,
        "effects": [],
        "effects_total": 0,
    }


def _add(step: dict[str, Any], r: EventRecord, e: dict[str, Any], raw: bool, path: _Paths, k: Kernel) -> None:
    if r.kind == "sys.done":
        step.update(call=e["call"], seq=r.seq, args_digest=e.get("args_digest"))
        step["duration_ms"] = round(e.get("duration_ns", 0) / 1e6, 3)
        if e.get("cancelled"):
            step.update(ok=False, cancelled=e.get("signal") or "TERM", result="cancelled")
        elif e.get("error") is not None:
            err = e["error"]
            step.update(ok=False, error={"code": err.get("code"), "message": err.get("message")})
            step["result"] = f"{err.get('code')}: {short(err.get('message', ''), 80)[1:-1]}"
        else:
            step.update(ok=True, result=_result(e))
        if raw:
            step["done"] = {f: v for f, v in e.items() if f not in _RAW_DROP}
        return
    if r.kind == "sys.blocked":
        step["blocked"] = {"seq": r.seq, "deadline_ns": e.get("deadline_ns")}
        step["call"] = step["call"] or e["call"]
        step["seq"] = step["seq"] or r.seq
        if raw:
            step["intent"] = {"call": e["call"], "deadline_ns": e.get("deadline_ns")}
        return
    step["seq"] = step["seq"] or r.seq  # a call with no journal record (exit) is placed by its effects
    step["effects_total"] += 1
    if len(step["effects"]) < MAX_EFFECTS:
        step["effects"].append({"seq": r.seq, "kind": r.kind, "summary": effect(r.kind, e, path, k)})


def sys_replay_steps(k: Kernel, c: Caller, a: ha.ReplayStepsArgs) -> Done:
    p = _agent(k, a.pid)
    out = header(p)
    out["seq"] = k.committer.durable_seq
    if a.code:  # the source alone: it may be as large as a frame allows
        source = k.blob(p.code)
        if source is None:
            raise NotFound(f"the code of process {p.pid} ({p.code[:12]}) is missing from the blob store")
        if len(source) > param.MAX_FRAME_BYTES - 64 * 1024:
            raise InvalidArgument(f"the code of process {p.pid} is too large to send", code="E2BIG")
        out["source"] = source
        return Done(out)
    out["steps"], out["next"] = steps(k, p, a)
    return Done(out)
