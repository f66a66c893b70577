"""The whole projected state: the branchable world and the global, monotone ledger.

The **world** (processes now; files, IPC, grants later) rewinds with its branch. The
**ledger** (identifier allocators, CPU and money spent, boots, audit) is folded from every
event of every branch in sequence order and is never rewound (ARCHITECTURE.md §4.4).
``state_hash`` is a stable digest of both, used to prove a rebuild equals the live state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from agentos import param
from agentos.state import events as ev
from agentos.state.proc import APPLY, ProcessTable

PROJECTION_VERSION = 2  # bump whenever apply() or the state shapes change: old snapshots are then ignored


class World(msgspec.Struct):
    branch: int = param.MAIN_BRANCH
    procs: ProcessTable = msgspec.field(default_factory=ProcessTable)


class Ledger(msgspec.Struct):
    next_pid: int = param.INIT_PID
    boots: int = 0
    cpu_ns: dict[int, int] = {}
    cpu_total_ns: int = 0
    denials: int = 0
    events: int = 0


class State(msgspec.Struct):
    seq: int = 0
    world: World = msgspec.field(default_factory=World)
    ledger: Ledger = msgspec.field(default_factory=Ledger)


def _ledger_spawned(ledger: Ledger, e: ev.ProcSpawned) -> None:
    ledger.next_pid = max(ledger.next_pid, e.pid + 1)


def _ledger_booted(ledger: Ledger, e: ev.KernelBooted) -> None:
    ledger.boots = max(ledger.boots, e.boot)


def _ledger_cpu(ledger: Ledger, e: ev.CpuCharged) -> None:
    ledger.cpu_ns[e.pid] = ledger.cpu_ns.get(e.pid, 0) + e.ns
    ledger.cpu_total_ns += e.ns


def _ledger_denied(ledger: Ledger, e: ev.AccessDenied) -> None:
    ledger.denials += 1


LEDGER_APPLY: dict[type, Callable[[Ledger, Any], None]] = {
    ev.AccessDenied: _ledger_denied,
    ev.ProcSpawned: _ledger_spawned,
    ev.KernelBooted: _ledger_booted,
    ev.CpuCharged: _ledger_cpu,
}


def apply(state: State, seq: int, ts: int, payload: ev.Payload) -> State:
    """Fold one event into the state. Mutates ``state`` in place and returns it.

    The ledger folds every event of every branch; the world only those of its own branch
    (the kernel hands it exactly those).
    """
    state.seq = seq
    state.ledger.events += 1
    kind = type(payload)
    ledger_fn = LEDGER_APPLY.get(kind)
    if ledger_fn is not None:
        ledger_fn(state.ledger, payload)
    world_fn = APPLY.get(kind)
    if world_fn is not None:
        world_fn(state.world.procs, seq, ts, payload)
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
