"""The whole projected state: the branchable world and the global, monotone ledger.

The **world** (processes now; files, IPC, grants later) rewinds with its branch. The
**ledger** (identifier allocators, CPU and money spent, boots, audit) is folded from every
event of every branch in sequence order and is never rewound (ARCHITECTURE.md §4.4).
``state_hash`` is a stable digest of both, used to prove a rebuild equals the live state.
"""

from __future__ import annotations

import hashlib

import msgspec

from agentos import param
from agentos.state import events as ev
from agentos.state.proc import ProcessTable, apply_proc

PROJECTION_VERSION = 1


class World(msgspec.Struct):
    branch: int = param.MAIN_BRANCH
    procs: ProcessTable = msgspec.field(default_factory=ProcessTable)


class Ledger(msgspec.Struct):
    next_pid: int = param.INIT_PID
    boots: int = 0
    cpu_ns: dict[int, int] = {}
    cpu_total_ns: int = 0
    events: int = 0


class State(msgspec.Struct):
    seq: int = 0
    world: World = msgspec.field(default_factory=World)
    ledger: Ledger = msgspec.field(default_factory=Ledger)


def apply(state: State, seq: int, ts: int, payload: ev.Payload) -> State:
    """Fold one event into the state. Mutates ``state`` in place and returns it."""
    ledger = state.ledger
    ledger.events += 1
    state.seq = seq
    match payload:
        case ev.ProcSpawned():
            ledger.next_pid = max(ledger.next_pid, payload.pid + 1)
        case ev.KernelBooted():
            ledger.boots = max(ledger.boots, payload.boot)
        case ev.CpuCharged():
            ledger.cpu_ns = {**ledger.cpu_ns, payload.pid: ledger.cpu_ns.get(payload.pid, 0) + payload.ns}
            ledger.cpu_total_ns += payload.ns
            return state
    if payload.KIND.startswith(("proc.", "sys.")):
        apply_proc(state.world.procs, seq, ts, payload)
    return state


def _canonical(value: object) -> object:
    if isinstance(value, dict):
        return [
            [k, _canonical(v)] for k, v in sorted(value.items(), key=lambda kv: (str(type(kv[0])), kv[0]))
        ]
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def state_hash(state: State) -> str:
    """A digest of the whole state that does not depend on dict insertion order."""
    return hashlib.sha256(msgspec.msgpack.encode(_canonical(msgspec.to_builtins(state)))).hexdigest()
