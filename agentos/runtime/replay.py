"""Replay-to-resume: reading an agent's journal and answering its traps from it (§4.1).

An agent is deterministic given its syscall results, so after a restart it is re-run from
its spawn with each trap answered from the record keyed by its call number: if the call and
the canonical digest of its arguments match, the recorded result (or error, or cancellation)
is returned without running the handler; if not, the agent broke determinism and gets a
``ReplayDivergence`` fault — never silent drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentos.abi.traps import Trap
from agentos.errors import AgentCancelled, error_from_wire
from agentos.kernel import timeline
from agentos.kernel.syscall import SYSCALLS
from agentos.runtime.agents import Journal, args_digest, decode_result
from agentos.state import events as ev
from agentos.state.proc import Process

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


@dataclass(frozen=True, slots=True)
class Answer:
    kind: str  # "answer" (from the record) | "live" (fixed result) | "end" (journal over) | "diverged"
    value: Any = None
    exc: BaseException | None = None
    detail: str = ""


def read_journal(k: Kernel, p: Process) -> Journal:
    """The records of ``p``'s current epoch: results, blocking intents, print() steps shown."""
    journal = Journal()
    lineage = timeline.lineage(k)  # after a rewind: what it did on this branch's past only
    for r in k.log.journal_of(p.pid, p.created_seq - 1, k.reader):
        if not lineage.contains(r.branch, r.seq):
            continue
        e = ev.decode(r.kind, r.version, r.payload)
        if getattr(e, "epoch", None) != p.epoch or getattr(e, "pid", None) != p.pid:
            continue
        if isinstance(e, ev.SyscallDone):
            journal.done[e.n] = e
        elif isinstance(e, ev.SyscallBlocked):
            journal.intents[e.n] = e
        elif isinstance(e, ev.ConsoleWrite) and e.n >= 0:
            journal.printed.add(e.n)
    return journal


def consult(journal: Journal, n: int, trap: Trap) -> Answer:
    """How to answer trap ``n`` of a replaying agent."""
    done = journal.done.get(n)
    if done is None:
        intent = journal.intents.get(n)
        if intent is not None and intent.call != trap.call:
            return Answer("diverged", detail=f"call {n} was {intent.call}, now {trap.call}")
        if n > journal.last_n or intent is not None:
            return Answer("end")
        row = SYSCALLS.get(trap.call)
        if row is not None and row.journal == "counter":
            return Answer("live")  # its result is fixed for the caller: answered live, still replaying
        return Answer("diverged", detail=f"call {n} is {trap.call}, which the journal does not have")
    if done.call != trap.call:
        return Answer("diverged", detail=f"call {n} was {done.call}, now {trap.call}")
    if done.args_digest != args_digest(trap.args):
        return Answer("diverged", detail=f"call {n} was {done.call} with other arguments")
    if done.cancelled:
        return Answer("answer", exc=AgentCancelled(done.signal or "TERM"))
    if done.error is not None:
        return Answer("answer", exc=error_from_wire(done.error))
    return Answer("answer", decode_result(done))
