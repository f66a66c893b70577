"""Typed, versioned event payloads, one struct per kind, and their (de)serialisation.

Each payload class names its ``kind`` and ``version``; ``encode`` gives the canonical JSON
text stored in the log, ``decode`` reads it back through the upcasters registered for older
versions (the log is never rewritten); an event newer than this code knows is refused. Kinds
are grouped by subsystem prefix: ``kernel.``, ``proc.``, ``sys.`` (the syscall journal),
``console.``, ``group.``, ``cap.``, ``vfs.`` (files: in ``vfs_events.py``, re-exported here), and
the ledger's ``ledger.`` and ``audit.``. The machinery (registry, upcasters, codec) is ``payload.py``.
"""

from __future__ import annotations

from typing import Any

from agentos.state.base_events import WorldBased  # the log's base (kernel/base.py)
from agentos.state.branch_events import BranchCreated, BranchSwitched, CheckpointDropped, CheckpointMade
from agentos.state.payload import KINDS, UPCASTERS, Payload, decode, encode, event
from agentos.state.proc_events import ProcCleaned, ProcRestarting  # process agents (runtime/procagents.py)
from agentos.state.undo_events import RedoDone, UndoDone  # undo's records (kernel/undo.py)
from agentos.state.vfs_events import (  # the file system's kinds, re-exported: ev.VfsCreated etc.
    VfsChmod,
    VfsClosed,
    VfsCreated,
    VfsDup,
    VfsHostChange,
    VfsHostDone,
    VfsHostWrote,
    VfsLinked,
    VfsMkfs,
    VfsMounted,
    VfsOffset,
    VfsOpened,
    VfsRenamed,
    VfsRmdir,
    VfsTruncated,
    VfsUnlinked,
    VfsUnmounted,
    VfsVersion,
    VfsWrote,
)

__all__ = [
    "ProcCleaned",
    "ProcRestarting",
    "UndoDone",
    "RedoDone",
    "BranchCreated",
    "BranchSwitched",
    "CheckpointMade",
    "CheckpointDropped",
    "WorldBased",
    "KINDS",
    "UPCASTERS",
    "Payload",
    "decode",
    "encode",
    "event",
    "VfsMkfs",
    "VfsCreated",
    "VfsOpened",
    "VfsClosed",
    "VfsDup",
    "VfsWrote",
    "VfsOffset",
    "VfsTruncated",
    "VfsVersion",
    "VfsUnlinked",
    "VfsLinked",
    "VfsRenamed",
    "VfsRmdir",
    "VfsChmod",
    "VfsMounted",
    "VfsUnmounted",
    "VfsHostWrote",
    "VfsHostChange",
    "VfsHostDone",
]


# -- kernel ------------------------------------------------------------------------------


@event("kernel.booted")
class KernelBooted(Payload):
    boot: int
    version: str
    os_pid: int
    hash_seed: int
    durability: str


@event("kernel.shutdown")
class KernelShutdown(Payload):
    boot: int
    killed_agents: bool


# -- processes ---------------------------------------------------------------------------


@event("proc.spawned", 2)
class ProcSpawned(Payload):
    pid: int
    ppid: int
    name: str
    kind: str  # init | session | agent | process (a real program: runtime/procagents.py)
    target: str = ""
    entry: str = ""
    argv: list[str] = []
    code: str = ""  # blob hash of the agent's source as read at spawn
    filename: str = ""
    package: str = ""
    caps_opaque: bool = False  # it may use its capabilities but not list them
    group: str = ""  # its resource group; "" = its parent's
    root: str = ""  # its file system root, a directory of the versioned tree ("" = "/"; kernel/vfs/view.py)
    restart: str = ""  # a process agent's restart policy: never | on-failure | always ("" = never)
    profile: str = ""  # a process agent's sandbox profile (minimal | full)


UPCASTERS[("proc.spawned", 1)] = lambda raw: raw  # v1 had no caps_opaque: the default fills it


@event("proc.started")
class ProcStarted(Payload):
    pid: int


@event("proc.stopped")
class ProcStopped(Payload):
    pid: int
    reason: str = "SIGSTOP"


@event("proc.continued")
class ProcContinued(Payload):
    pid: int


@event("proc.signaled")
class ProcSignaled(Payload):
    pid: int
    sig: str
    sender: int
    kill_at_ns: int | None = None  # TERM/INT/HUP to an agent: KILL follows at this wall time


@event("proc.exited")
class ProcExited(Payload):
    pid: int
    status: int
    signal: str | None = None
    fault: str | None = None
    reason: str = ""


@event("proc.reparented")
class ProcReparented(Payload):
    pid: int
    ppid: int


@event("proc.reaped")
class ProcReaped(Payload):
    pid: int
    by: int


@event("proc.resume_started")
class ProcResumeStarted(Payload):
    pid: int


@event("proc.resumed")
class ProcResumed(Payload):
    pid: int
    replayed_calls: int


@event("proc.quarantined")
class ProcQuarantined(Payload):
    pid: int
    reason: str


@event("proc.continued_as_new")
class ProcContinuedAsNew(Payload):
    pid: int
    argv: list[str]
    epoch: int


# -- the syscall journal -----------------------------------------------------------------


@event("sys.blocked")
class SyscallBlocked(Payload):
    """A blocking call's intent, journaled on entry (a resumed sleep keeps its deadline)."""

    pid: int
    epoch: int
    task: int
    n: int
    call: str
    deadline_ns: int | None = None


@event("sys.done")
class SyscallDone(Payload):
    pid: int
    epoch: int
    task: int
    n: int
    call: str
    args_digest: str
    result: Any = None
    result_bytes: bool = False  # result is base64 of bytes
    error: dict[str, Any] | None = None
    cancelled: bool = False
    signal: str | None = None  # the signal that cancelled it
    # wall time from the trap to its answer, parked time included (agentos query's syscalls.duration_ms);
    # last, with a default: older logs decode, and it is omitted from the payload when 0
    duration_ns: int = 0


# -- console -----------------------------------------------------------------------------


@event("console.write")
class ConsoleWrite(Payload):
    pid: int
    console: int  # whose console: a child agent writes to its parent agent's, as Unix stdio
    stream: str
    blob: str
    size: int
    n: int = -1  # call counter at which print() output was produced, -1 for write_console
    epoch: int = 0


# -- resource groups ------------------------------------------------------------------------


@event("group.created")
class GroupCreated(Payload):
    name: str
    parent: str | None
    limits: dict[str, float] = {}
    by: int = 0


@event("group.limits")
class GroupLimitsSet(Payload):
    name: str
    limits: dict[str, float]
    by: int = 0


# -- capabilities (the world's grants; revocations and expiries are ledger events below) ----


@event("cap.granted")
class CapGranted(Payload):
    """A capability came to exist: derived from ``parent`` (None only for the boot's root), held by
    ``holder``. ``chain`` is its ancestry, root first; ``expires_ns`` and ``max_uses`` are its own
    limits (the check also applies every ancestor's); ``origin`` says how: boot, session, policy,
    spawn, delegate, approval."""

    cap: int
    holder: int
    resource: str
    rights: list[str]
    parent: int | None
    chain: list[int]
    origin: str
    by: int  # the pid that caused it
    depth: int = 0  # further delegations allowed
    expires_ns: int | None = None
    max_uses: int | None = None
    limits: list[list[int]] = []  # [cap id, max uses] of itself and every ancestor with a use limit
    note: str = ""


@event("cap.transferred")
class CapTransferred(Payload):
    """A capability given away whole: ``to`` holds it now, ``sender`` keeps nothing."""

    cap: int
    sender: int
    to: int


# -- ledger (global, monotone: never rewound) ---------------------------------------------


@event("audit.denied", 2)
class AccessDenied(Payload):
    """A call refused for lack of a capability (the audit trail lives in the ledger)."""

    pid: int
    call: str
    right: str
    resource: str = ""


UPCASTERS[("audit.denied", 1)] = lambda raw: raw  # v1 had no resource: the default fills it


@event("cap.revoked")
class CapRevoked(Payload):
    """Revoked with everything derived from it; in the ledger, so no rewind revives it."""

    cap: int
    by: int
    reason: str = ""


@event("cap.expired")
class CapExpired(Payload):
    """Noticed past its expiry (expiry itself needs no event: checks read the real clock)."""

    cap: int


@event("cap.used")
class CapUsed(Payload):
    """One authorised call charged to capabilities with a use limit (``caps``: the limited ones
    on the chain), so a rewind never refunds a use."""

    caps: list[int]


@event("secret.changed")
class SecretChanged(Payload):
    """A secret set or removed by a person: its name and size, never its bytes."""

    name: str
    size: int
    by: int
    removed: bool = False


@event("secret.read")
class SecretRead(Payload):
    """An agent read a secret (it held a capability for it): the audit trail, no value."""

    name: str
    pid: int


@event("approval.requested")
class ApprovalRequested(Payload):
    id: int
    pid: int
    resource: str
    rights: list[str]
    reason: str
    deadline_ns: int | None = None


@event("approval.decided")
class ApprovalDecided(Payload):
    """A person's answer (or the request's end: ``outcome`` approved, denied, expired, cancelled)."""

    id: int
    outcome: str
    by: int
    cap: int | None = None
    duration_s: float | None = None
    reason: str = ""


@event("ledger.cpu")
class CpuCharged(Payload):
    pid: int
    ns: int
