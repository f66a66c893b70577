"""The whole projected state: the branchable world and the global, monotone ledger.

The **world** (processes, grants, resource groups, files; IPC later) rewinds with its branch. The
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
from agentos.state.caps import CAP_APPLY, CapTable
from agentos.state.groups import GROUP_APPLY, USAGE_APPLY, GroupTable, Usage
from agentos.state.proc import APPLY, ProcessTable
from agentos.state.vfs import ROOT_INO, FileSystem
from agentos.state.vfs_apply import VFS_APPLY

PROJECTION_VERSION = 9  # bump whenever apply() or the state shapes change: old snapshots are then ignored


class World(msgspec.Struct):
    branch: int = param.MAIN_BRANCH
    procs: ProcessTable = msgspec.field(default_factory=ProcessTable)
    caps: CapTable = msgspec.field(default_factory=CapTable)
    groups: GroupTable = msgspec.field(default_factory=GroupTable)
    vfs: FileSystem = msgspec.field(default_factory=FileSystem)


class Approval(msgspec.Struct, kw_only=True):
    id: int
    pid: int
    resource: str
    rights: list[str]
    reason: str
    requested_ts: int
    deadline_ns: int | None = None
    outcome: str = "pending"  # approved | denied | expired | cancelled
    by: int | None = None
    cap: int | None = None
    duration_s: float | None = None
    decided_ts: int | None = None
    answer: str = ""  # the person's reason, when they gave one


class BranchInfo(msgspec.Struct, kw_only=True):
    id: int
    parent: int
    fork_seq: int
    name: str
    created_seq: int
    created_ts: int
    why: str


class Checkpoint(msgspec.Struct, kw_only=True):
    name: str
    branch: int
    seq: int
    made_seq: int
    made_ts: int
    by: int


class Ledger(msgspec.Struct):
    next_pid: int = param.INIT_PID
    boots: int = 0
    cpu_ns: dict[int, int] = {}
    cpu_total_ns: int = 0
    denials: int = 0
    events: int = 0
    next_cap: int = 1
    revoked: dict[int, int] = {}  # cap id -> seq of its revocation; cascades through chains
    expired: dict[int, int] = {}  # cap id -> seq at which its expiry was noticed
    cap_uses: dict[int, int] = {}  # uses charged to capabilities that have a use limit
    next_approval: int = 1
    approvals: dict[int, Approval] = {}
    usage: Usage = msgspec.field(default_factory=Usage)  # per resource group, never refunded
    next_ino: int = ROOT_INO  # inode numbers, never reused on any branch
    next_branch: int = param.MAIN_BRANCH + 1
    branches: dict[int, BranchInfo] = {}  # every branch but main, whichever branch made it
    checkpoints: dict[str, Checkpoint] = {}  # named (branch, seq): not rewound, so restore reaches any


class State(msgspec.Struct):
    seq: int = 0
    world: World = msgspec.field(default_factory=World)
    ledger: Ledger = msgspec.field(default_factory=Ledger)


def _ledger_spawned(ledger: Ledger, seq: int, ts: int, e: ev.ProcSpawned) -> None:
    ledger.next_pid = max(ledger.next_pid, e.pid + 1)


def _ledger_booted(ledger: Ledger, seq: int, ts: int, e: ev.KernelBooted) -> None:
    ledger.boots = max(ledger.boots, e.boot)


def _ledger_cpu(ledger: Ledger, seq: int, ts: int, e: ev.CpuCharged) -> None:
    ledger.cpu_ns[e.pid] = ledger.cpu_ns.get(e.pid, 0) + e.ns
    ledger.cpu_total_ns += e.ns


def _ledger_denied(ledger: Ledger, seq: int, ts: int, e: ev.AccessDenied) -> None:
    ledger.denials += 1


def _ledger_granted(ledger: Ledger, seq: int, ts: int, e: ev.CapGranted) -> None:
    ledger.next_cap = max(ledger.next_cap, e.cap + 1)


def _ledger_revoked(ledger: Ledger, seq: int, ts: int, e: ev.CapRevoked) -> None:
    ledger.revoked.setdefault(e.cap, seq)


def _ledger_expired(ledger: Ledger, seq: int, ts: int, e: ev.CapExpired) -> None:
    ledger.expired.setdefault(e.cap, seq)


def _ledger_used(ledger: Ledger, seq: int, ts: int, e: ev.CapUsed) -> None:
    for cap in e.caps:
        ledger.cap_uses[cap] = ledger.cap_uses.get(cap, 0) + 1


def _ledger_ino(ledger: Ledger, seq: int, ts: int, e: ev.VfsMkfs | ev.VfsCreated) -> None:
    ledger.next_ino = max(ledger.next_ino, e.ino + 1)


def _ledger_requested(ledger: Ledger, seq: int, ts: int, e: ev.ApprovalRequested) -> None:
    ledger.next_approval = max(ledger.next_approval, e.id + 1)
    ledger.approvals[e.id] = Approval(
        id=e.id,
        pid=e.pid,
        resource=e.resource,
        rights=list(e.rights),
        reason=e.reason,
        requested_ts=ts,
        deadline_ns=e.deadline_ns,
    )


def _ledger_decided(ledger: Ledger, seq: int, ts: int, e: ev.ApprovalDecided) -> None:
    approval = ledger.approvals.get(e.id)
    if approval is not None and approval.outcome == "pending":
        approval.outcome, approval.by, approval.cap = e.outcome, e.by, e.cap
        approval.duration_s, approval.decided_ts, approval.answer = e.duration_s, ts, e.reason


def _ledger_branch(ledger: Ledger, seq: int, ts: int, e: ev.BranchCreated) -> None:
    ledger.next_branch = max(ledger.next_branch, e.branch + 1)
    ledger.branches[e.branch] = BranchInfo(
        id=e.branch,
        parent=e.parent,
        fork_seq=e.fork_seq,
        name=e.name,
        created_seq=seq,
        created_ts=ts,
        why=e.why,
    )


def _ledger_checkpoint(ledger: Ledger, seq: int, ts: int, e: ev.CheckpointMade) -> None:
    ledger.checkpoints[e.name] = Checkpoint(
        name=e.name, branch=e.branch, seq=e.seq, made_seq=seq, made_ts=ts, by=e.by
    )


def _ledger_uncheckpoint(ledger: Ledger, seq: int, ts: int, e: ev.CheckpointDropped) -> None:
    ledger.checkpoints.pop(e.name, None)


def forks(ledger: Ledger) -> dict[int, tuple[int, int]]:
    """Each branch's (parent, fork seq), as ``Lineage.of`` takes them."""
    return {b.id: (b.parent, b.fork_seq) for b in ledger.branches.values()}


LEDGER_APPLY: dict[type, Callable[[Ledger, int, int, Any], None]] = {
    ev.AccessDenied: _ledger_denied,
    ev.CapGranted: _ledger_granted,
    ev.CapRevoked: _ledger_revoked,
    ev.CapExpired: _ledger_expired,
    ev.CapUsed: _ledger_used,
    ev.ApprovalRequested: _ledger_requested,
    ev.ApprovalDecided: _ledger_decided,
    ev.ProcSpawned: _ledger_spawned,
    ev.KernelBooted: _ledger_booted,
    ev.CpuCharged: _ledger_cpu,
    ev.VfsMkfs: _ledger_ino,
    ev.VfsCreated: _ledger_ino,
    ev.BranchCreated: _ledger_branch,
    ev.CheckpointMade: _ledger_checkpoint,
    ev.CheckpointDropped: _ledger_uncheckpoint,
}

_BRANCHING = (ev.BranchCreated, ev.BranchSwitched)


def apply(state: State, seq: int, ts: int, payload: ev.Payload, world: bool = True) -> State:
    """Fold one event into the state. Mutates ``state`` in place and returns it.

    The ledger folds every event of every branch; the world only those of its branch's lineage:
    ``world`` is False for the others (``state/lineage.py``).
    """
    state.seq = seq
    state.ledger.events += 1
    kind = type(payload)
    ledger_fn = LEDGER_APPLY.get(kind)
    if ledger_fn is not None:
        ledger_fn(state.ledger, seq, ts, payload)
    usage_fn = USAGE_APPLY.get(kind)
    if usage_fn is not None:  # spend is ledger: never refunded by a rewind
        usage_fn(state.ledger.usage, payload)
    if not world:
        return state
    if kind in _BRANCHING:
        state.world.branch = payload.branch  # type: ignore[attr-defined]
    world_fn = APPLY.get(kind)
    if world_fn is not None:
        world_fn(state.world.procs, seq, ts, payload)
    cap_fn = CAP_APPLY.get(kind)
    if cap_fn is not None:
        cap_fn(state.world.caps, seq, ts, payload)
    group_fn = GROUP_APPLY.get(kind)
    if group_fn is not None:
        group_fn(state.world.groups, seq, ts, payload)
    vfs_fn = VFS_APPLY.get(kind)
    if vfs_fn is not None:
        vfs_fn(state.world.vfs, seq, ts, payload)
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
