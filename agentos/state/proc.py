"""The process table as projected state, and the proc.* apply functions.

States follow one machine (``LEGAL`` lists its edges)::

    creating ──started──▶ ready ⇄ (running) ⇄ blocked
        │                   │  ▲      STOP/CONT  │
        │                   ▼  │                 ▼
        └──────exited────▶ zombie ──reaped──▶ dead      stopped ◀─quarantined

``running`` is never stored: ready ↔ running are scheduling transitions, not events.
"""

from __future__ import annotations

import msgspec

from agentos.state import events as ev

CREATING, READY, RUNNING, BLOCKED, STOPPED, ZOMBIE, DEAD = (
    "creating",
    "ready",
    "running",
    "blocked",
    "stopped",
    "zombie",
    "dead",
)
ALIVE = frozenset({CREATING, READY, RUNNING, BLOCKED, STOPPED})


class Process(msgspec.Struct, kw_only=True):
    pid: int
    ppid: int
    name: str
    kind: str
    console: int = 0  # the pid whose console this process writes to
    target: str = ""
    entry: str = ""
    argv: list[str] = []
    code: str = ""
    filename: str = ""
    package: str = ""
    state: str = CREATING
    wait_call: str | None = None  # the blocking call it is in, if any (kept while stopped)
    stop_reason: str | None = None
    exit_status: int | None = None
    exit_signal: str | None = None
    fault: str | None = None
    exit_reason: str = ""
    created_seq: int = 0
    created_ts: int = 0
    exited_ts: int | None = None
    syscalls: int = 0
    epoch: int = 0
    resume_failures: int = 0
    signals: dict[str, int] = {}

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


class ProcessTable(msgspec.Struct):
    procs: dict[int, Process] = {}

    def get(self, pid: int) -> Process | None:
        return self.procs.get(pid)

    def children(self, pid: int) -> list[Process]:
        return [p for p in self.procs.values() if p.ppid == pid and p.state != DEAD]

    def alive(self) -> list[Process]:
        return [p for p in self.procs.values() if p.alive]


def apply_proc(table: ProcessTable, seq: int, ts: int, e: ev.Payload) -> None:
    """Fold one proc.* / sys.* event into the process table (deterministic, no I/O)."""
    match e:
        case ev.ProcSpawned():
            parent = table.procs.get(e.ppid)
            inherits = parent is not None and parent.kind == "agent" and e.kind == "agent"
            table.procs[e.pid] = Process(
                console=parent.console if inherits and parent else e.pid,
                pid=e.pid,
                ppid=e.ppid,
                name=e.name,
                kind=e.kind,
                target=e.target,
                entry=e.entry,
                argv=list(e.argv),
                code=e.code,
                filename=e.filename,
                package=e.package,
                created_seq=seq,
                created_ts=ts,
            )
        case ev.ProcStarted():
            table.procs[e.pid].state = READY
        case ev.SyscallBlocked():
            p = table.procs[e.pid]
            p.wait_call = e.call
            if p.state != STOPPED:
                p.state = BLOCKED
        case ev.SyscallDone():
            p = table.procs[e.pid]
            p.syscalls += 1
            if p.wait_call is not None:
                p.wait_call = None
                if p.state == BLOCKED:
                    p.state = READY
        case ev.ProcStopped():
            p = table.procs[e.pid]
            p.state, p.stop_reason = STOPPED, e.reason
        case ev.ProcQuarantined():
            p = table.procs[e.pid]
            p.state, p.stop_reason = STOPPED, f"quarantined: {e.reason}"
        case ev.ProcContinued():
            p = table.procs[e.pid]
            p.state = BLOCKED if p.wait_call else READY
            p.stop_reason = None
        case ev.ProcSignaled():
            p = table.procs[e.pid]
            p.signals = {**p.signals, e.sig: p.signals.get(e.sig, 0) + 1}
        case ev.ProcExited():
            p = table.procs[e.pid]
            p.state, p.exit_status, p.exit_signal = ZOMBIE, e.status, e.signal
            p.fault, p.exit_reason, p.exited_ts, p.wait_call = e.fault, e.reason, ts, None
        case ev.ProcReparented():
            table.procs[e.pid].ppid = e.ppid
        case ev.ProcReaped():
            table.procs[e.pid].state = DEAD
        case ev.ProcResumeStarted():
            table.procs[e.pid].resume_failures += 1
        case ev.ProcResumed():
            table.procs[e.pid].resume_failures = 0
        case ev.ProcContinuedAsNew():
            p = table.procs[e.pid]
            p.argv, p.epoch = list(e.argv), e.epoch
