"""The process table as projected state, and the proc.* apply functions.

States follow one machine; the handlers only emit events along its edges (apply trusts the
log and does not re-check them)::

    creating ──started──▶ ready ⇄ (running) ⇄ blocked
        │                   │  ▲      STOP/CONT  │
        │                   ▼  │                 ▼
        └──────exited────▶ zombie ──reaped──▶ dead      stopped ◀─quarantined

``running`` is never stored: ready ↔ running are scheduling transitions, not events. A reaped
session leaves the table (its history stays in the log); a reaped agent stays as ``dead``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    caps_opaque: bool = False
    group: str = "/"  # its resource group
    root: str = ""  # the directory it sees as "/" ("" = the real root; kernel/vfs/view.py)
    kill_at_ns: int | None = None  # a pending KILL at the end of a TERM's grace period
    cancel_pending: str | None = None  # a TERM/INT/HUP not yet raised in the agent
    signals: dict[str, int] = {}
    restart: str = ""  # a process agent's restart policy (never | on-failure | always)
    profile: str = ""  # a process agent's sandbox profile
    runs: int = 0  # a process agent's runs that ended in a restart (proc.restarting)
    streak: int = 0  # of those, the quick ones in a row (the backoff's exponent)

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


def _spawned(t: ProcessTable, seq: int, ts: int, e: ev.ProcSpawned) -> None:
    parent = t.procs.get(e.ppid)
    inherits = parent is not None and parent.kind == "agent" and e.kind == "agent"
    t.procs[e.pid] = Process(
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
        caps_opaque=e.caps_opaque,
        group=e.group or (parent.group if parent is not None else "/"),
        root=e.root,
        restart=e.restart,
        profile=e.profile,
        created_seq=seq,
        created_ts=ts,
    )


def _started(t: ProcessTable, seq: int, ts: int, e: ev.ProcStarted) -> None:
    t.procs[e.pid].state = READY


def _blocked(t: ProcessTable, seq: int, ts: int, e: ev.SyscallBlocked) -> None:
    p = t.procs[e.pid]
    p.wait_call = e.call
    if p.state != STOPPED:
        p.state = BLOCKED


def _done(t: ProcessTable, seq: int, ts: int, e: ev.SyscallDone) -> None:
    p = t.procs[e.pid]
    p.syscalls += 1
    if e.cancelled:
        p.cancel_pending = None
    if p.wait_call is not None:
        p.wait_call = None
        if p.state == BLOCKED:
            p.state = READY


def _stopped(t: ProcessTable, seq: int, ts: int, e: ev.ProcStopped) -> None:
    p = t.procs[e.pid]
    p.state, p.stop_reason = STOPPED, e.reason


def _quarantined(t: ProcessTable, seq: int, ts: int, e: ev.ProcQuarantined) -> None:
    p = t.procs[e.pid]
    p.state, p.stop_reason = STOPPED, f"quarantined: {e.reason}"


def _continued(t: ProcessTable, seq: int, ts: int, e: ev.ProcContinued) -> None:
    p = t.procs[e.pid]
    p.state = BLOCKED if p.wait_call else READY
    p.stop_reason = None


def _signaled(t: ProcessTable, seq: int, ts: int, e: ev.ProcSignaled) -> None:
    p = t.procs[e.pid]
    p.signals[e.sig] = p.signals.get(e.sig, 0) + 1
    if e.kill_at_ns is not None:  # a cancelling signal to an agent
        p.cancel_pending = e.sig
        if p.kill_at_ns is None or e.kill_at_ns < p.kill_at_ns:
            p.kill_at_ns = e.kill_at_ns


def _exited(t: ProcessTable, seq: int, ts: int, e: ev.ProcExited) -> None:
    p = t.procs[e.pid]
    p.state, p.exit_status, p.exit_signal = ZOMBIE, e.status, e.signal
    p.fault, p.exit_reason, p.exited_ts, p.wait_call = e.fault, e.reason, ts, None


def _reparented(t: ProcessTable, seq: int, ts: int, e: ev.ProcReparented) -> None:
    t.procs[e.pid].ppid = e.ppid


def _reaped(t: ProcessTable, seq: int, ts: int, e: ev.ProcReaped) -> None:
    if t.procs[e.pid].kind == "session":
        del t.procs[e.pid]  # a finished client leaves nothing behind (its history is in the log)
    else:
        t.procs[e.pid].state = DEAD


def _resume_started(t: ProcessTable, seq: int, ts: int, e: ev.ProcResumeStarted) -> None:
    t.procs[e.pid].resume_failures += 1


def _resumed(t: ProcessTable, seq: int, ts: int, e: ev.ProcResumed) -> None:
    t.procs[e.pid].resume_failures = 0


def _continued_as_new(t: ProcessTable, seq: int, ts: int, e: ev.ProcContinuedAsNew) -> None:
    p = t.procs[e.pid]
    p.argv, p.epoch = list(e.argv), e.epoch


def _restarting(t: ProcessTable, seq: int, ts: int, e: ev.ProcRestarting) -> None:
    p = t.procs[e.pid]  # the process stays alive: only its run ended
    p.runs, p.streak = e.run, e.streak


# event type -> its apply function: a reader finds each transition in one place
APPLY: dict[type, Callable[[ProcessTable, int, int, Any], None]] = {
    ev.ProcSpawned: _spawned,
    ev.ProcStarted: _started,
    ev.SyscallBlocked: _blocked,
    ev.SyscallDone: _done,
    ev.ProcStopped: _stopped,
    ev.ProcQuarantined: _quarantined,
    ev.ProcContinued: _continued,
    ev.ProcSignaled: _signaled,
    ev.ProcExited: _exited,
    ev.ProcReparented: _reparented,
    ev.ProcReaped: _reaped,
    ev.ProcResumeStarted: _resume_started,
    ev.ProcResumed: _resumed,
    ev.ProcContinuedAsNew: _continued_as_new,
    ev.ProcRestarting: _restarting,
}
