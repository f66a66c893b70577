"""sys_* handlers for processes, time and the console: check arguments, then decide.

Each handler gets the kernel, the caller and its validated arguments, reads state, and
returns ``Done(result, events)`` or ``Block``; it mutates nothing (ARCHITECTURE.md §3).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.abi import syscalls as sc
from agentos.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, QuotaExceeded, TimedOut
from agentos.kernel import filedata, progload
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.quota import validate_limits
from agentos.kernel.vfs import hostmount, view
from agentos.state import events as ev
from agentos.state.groups import ROOT as ROOT_GROUP
from agentos.state.proc import DEAD, STOPPED, ZOMBIE, Process
from agentos.store.log import blob_hash

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

SIGNALS = {
    "HUP": 1,
    "INT": 2,
    "KILL": 9,
    "USR1": 10,
    "USR2": 12,
    "TERM": 15,
    "CHLD": 17,
    "CONT": 18,
    "STOP": 19,
}
SIGNAL_NAMES = {n: s for s, n in SIGNALS.items()}
CANCELLING = frozenset({"TERM", "INT", "HUP"})  # raised in an agent as AgentCancelled, KILL after a grace


def signal_name(sig: str | int) -> str:
    if isinstance(sig, int):
        if sig not in SIGNAL_NAMES:
            raise InvalidArgument(f"unknown signal number {sig}")
        return SIGNAL_NAMES[sig]
    name = sig.upper().removeprefix("SIG")
    if name.isdigit():
        return signal_name(int(name))
    if name not in SIGNALS:
        raise InvalidArgument(f"unknown signal {sig!r}; known: {', '.join(SIGNALS)}")
    return name


def _proc(k: Kernel, pid: int) -> Process:
    p = k.state.world.procs.get(pid)
    if p is None or p.state == DEAD:
        raise NotFound(f"no process {pid}", code="ESRCH")
    return p


def sys_getpid(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done(c.pid)


def sys_getppid(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done(_proc(k, c.pid).ppid)


def sys_sched_yield(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done(None)


def sys_time(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done(time.time_ns())


def sys_monotonic(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done(time.monotonic_ns())


def sys_random(k: Kernel, c: Caller, a: sc.RandomArgs) -> Done:
    return Done(os.urandom(a.n))


def sys_write_console(k: Kernel, c: Caller, a: sc.WriteConsoleArgs) -> Done:
    events, blobs = console_events(k, c.pid, a.data, a.stream)
    if c.confined:
        k.quotas.check_bytes(c.pid, events[0].size)
    return Done(None, events, blobs)


def console_events(
    k: Kernel, pid: int, text: str, stream: str, n: int = -1, epoch: int = 0
) -> tuple[list[ev.Payload], dict]:
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (print() of bad text)
        data = text.encode("utf-8", "backslashreplace")
    h = blob_hash(data)
    p = k.state.world.procs.get(pid)
    console = p.console if p is not None else pid
    return [
        ev.ConsoleWrite(pid=pid, console=console, stream=stream, blob=h, size=len(data), n=n, epoch=epoch)
    ], {h: data}


def sys_spawn(k: Kernel, c: Caller, a: sc.SpawnArgs) -> Done:
    parent = _proc(k, c.pid)
    if len(k.state.world.procs.alive()) >= param.MAX_PROCESSES:
        raise QuotaExceeded(f"process table full ({param.MAX_PROCESSES} live processes)", code="EAGAIN")
    base = (
        os.path.dirname(parent.filename)
        if parent.kind == "agent" and parent.filename
        else k.session_cwd(c.pid)
    )
    prog = progload.resolve(a.target, base)
    pid = k.state.ledger.next_pid
    group_events, group = _child_group(k, c, parent, pid, a.limits)
    code = blob_hash(prog.source)
    name = a.name or os.path.basename(prog.filename).removesuffix(".py")
    if prog.entry != "main":
        name = a.name or f"{name}:{prog.entry}"
    spawned = ev.ProcSpawned(
        pid=pid,
        ppid=c.pid,
        name=name,
        kind="agent",
        target=prog.target,
        entry=prog.entry,
        argv=list(a.argv),
        code=code,
        filename=prog.filename,
        package=prog.package,
        caps_opaque=a.opaque or parent.caps_opaque or (c.kind == "session" and k.policy.opaque),
        group=group,
        root=(root := view.spawn_root(k, c, parent, a.root)),
    )
    grants = view.reroot(child_grants(k, c, pid, a.caps, a.grants), root)
    return Done(pid, [*group_events, spawned, *grants], {code: prog.source})


def _child_group(
    k: Kernel, c: Caller, parent: Process, pid: int, limits: dict[str, float] | None
) -> tuple[list[ev.Payload], str]:
    """The child's resource group: its parent's, or a new one under it — always for an agent the
    person starts (with the policy's quotas), and when the spawner sets ``limits``."""
    if c.kind == "session":
        new_limits = dict(k.policy.agent_quotas) | validate_limits(limits or {})
        name = f"/agent-{pid}"
        k.quotas.check_spawn(ROOT_GROUP)
        return [ev.GroupCreated(name=name, parent=ROOT_GROUP, limits=new_limits, by=c.pid)], name
    k.quotas.check_spawn(parent.group)
    if limits is None:
        return [], ""
    name = f"{parent.group.rstrip('/')}/{pid}"
    return [ev.GroupCreated(name=name, parent=parent.group, limits=validate_limits(limits), by=c.pid)], name


def child_grants(
    k: Kernel, c: Caller, child: int, specs: list[sc.CapSpec] | None, extra: list[sc.CapSpec] | None = None
) -> list[ev.Payload]:
    """A child's capabilities: each one asked for, narrowed from one the parent holds; none asked:
    an agent's child inherits what its parent holds, a session's gets the policy's; then ``extra``,
    each narrowed from one the parent holds (``agentos run --cap``)."""
    first = k.state.ledger.next_cap
    base: list[ev.Payload] = []
    if specs is None:
        if c.kind == "session":
            base = list(k.authority.policy_grants(child, c.pid))
            specs = []
        else:
            live = [cap for cap in k.state.world.caps.held_by(c.pid) if not k.authority.problem(cap)]
            specs = [sc.CapSpec(cap=cap.id) for cap in live]
    return base + [
        k.authority.derive(
            k.authority.source_for(k.authority.holder(c), spec),
            spec,
            holder=child,
            origin="spawn",
            by=c.pid,
            delegation=False,
            cap_id=first + len(base) + i,
        )
        for i, spec in enumerate([*specs, *(extra or [])])
    ]


def exit_events(
    k: Kernel, p: Process, status: int, signal: str | None = None, fault: str | None = None, reason: str = ""
) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """Everything one exit causes: its files closed (versions cut, whose blobs come back with the
    events), the exit, orphans to init, reaping by init, CHLD to the parent."""
    out, blobs = hostmount.publish_at_exit(k, p.pid)
    closed, more = filedata.close_all(k, p.pid)
    out += closed
    blobs |= more
    out.append(ev.ProcExited(pid=p.pid, status=status, signal=signal, fault=fault, reason=reason))
    out += cancelled_requests(k, p.pid)
    for child in k.state.world.procs.children(p.pid):
        out.append(ev.ProcReparented(pid=child.pid, ppid=param.INIT_PID))
        if child.state == ZOMBIE:
            out.append(ev.ProcReaped(pid=child.pid, by=param.INIT_PID))
    if p.ppid == param.INIT_PID:
        out.append(ev.ProcReaped(pid=p.pid, by=param.INIT_PID))
    else:
        parent = k.state.world.procs.get(p.ppid)
        if parent is not None and parent.alive:
            out.append(ev.ProcSignaled(pid=parent.pid, sig="CHLD", sender=p.pid))
    return out, blobs


def cancelled_requests(k: Kernel, pid: int) -> list[ev.Payload]:
    """A process that exits withdraws its requests for approval: nobody is left to get the answer."""
    return [
        ev.ApprovalDecided(
            id=ap.id, outcome="cancelled", by=param.KERNEL_PID, reason="the process that asked exited"
        )
        for ap in k.state.ledger.approvals.values()
        if ap.pid == pid and ap.outcome == "pending"
    ]


def orphaned_requests(k: Kernel) -> list[ev.Payload]:
    """Withdraw the pending requests of processes no longer alive."""
    out: list[ev.Payload] = []
    for pid in sorted({ap.pid for ap in k.state.ledger.approvals.values() if ap.outcome == "pending"}):
        p = k.state.world.procs.get(pid)
        if p is None or not p.alive:
            out += cancelled_requests(k, pid)
    return out


def sys_exit(k: Kernel, c: Caller, a: sc.ExitArgs) -> Done:
    if c.kind != "agent":
        raise InvalidArgument("a session exits by closing its connection")
    events, blobs = exit_events(k, _proc(k, c.pid), a.status)
    return Done(None, events, blobs)


def _status(p: Process) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "status": p.exit_status,
        "signal": p.exit_signal,
        "fault": p.fault,
        "reason": p.exit_reason,
    }


def _try_wait(k: Kernel, c: Caller, pid: int) -> Done | None:
    procs = k.state.world.procs
    if pid == -1:
        children = procs.children(c.pid)
        if not children:
            raise NotFound(f"process {c.pid} has no children to wait for", code="ECHILD")
        for child in sorted(children, key=lambda p: p.pid):
            if child.state == ZOMBIE:
                return Done(_status(child), [ev.ProcReaped(pid=child.pid, by=c.pid)])
        return None
    target = procs.get(pid)
    if target is None:
        raise NotFound(f"no process {pid}", code="ESRCH")
    if target.ppid == c.pid and target.state != DEAD:
        return Done(_status(target), [ev.ProcReaped(pid=pid, by=c.pid)]) if target.state == ZOMBIE else None
    if c.kind != "session":
        raise NotFound(f"process {pid} is not a child of {c.pid}", code="ECHILD")
    # A session (a person at the CLI) may watch any process end without reaping it.
    return Done(_status(target)) if target.state in (ZOMBIE, DEAD) else None


def sys_wait(k: Kernel, c: Caller, a: sc.WaitArgs) -> Done | Block:
    if a.pid == 0 or a.pid < -1:
        raise InvalidArgument("wait takes -1 (any child) or a pid")
    done = _try_wait(k, c, a.pid)
    if done is not None:
        return done
    if a.nohang:
        return Done(None)
    deadline = None
    if a.timeout is not None:
        deadline = c.intent.deadline_ns if c.intent else time.time_ns() + int(a.timeout * 1e9)

    def timed_out() -> Done:
        raise TimedOut(f"wait for {'any child' if a.pid == -1 else a.pid} timed out after {a.timeout}s")

    return Block("wait", poll=lambda: _try_wait(k, c, a.pid), deadline_ns=deadline, on_deadline=timed_out)


def sys_sleep(k: Kernel, c: Caller, a: sc.SleepArgs) -> Done | Block:
    deadline = (
        c.intent.deadline_ns if c.intent and c.intent.deadline_ns else time.time_ns() + int(a.seconds * 1e9)
    )
    if deadline <= time.time_ns():
        return Done(None)
    return Block("sleep", deadline_ns=deadline)


def sys_kill(k: Kernel, c: Caller, a: sc.KillArgs) -> Done:
    sig = signal_name(a.sig)
    target = _proc(k, a.pid)
    if target.pid == param.INIT_PID:
        raise PermissionDenied("init cannot be signalled")
    if target.state == ZOMBIE:
        raise NotFound(f"process {a.pid} has already exited", code="ESRCH")
    kill_at = None
    # the grace period's end is state, so it survives a crash
    if sig in CANCELLING and target.kind in ("agent", "process"):
        kill_at = time.time_ns() + int(param.TERM_GRACE_SECONDS * 1e9)
    events: list[ev.Payload] = [ev.ProcSignaled(pid=target.pid, sig=sig, sender=c.pid, kill_at_ns=kill_at)]
    blobs: dict[str, bytes] = {}
    if sig == "KILL":
        more, blobs = exit_events(
            k, target, 128 + SIGNALS["KILL"], signal="KILL", reason=f"killed by {c.pid}"
        )
        events += more
    elif sig == "STOP" and target.state != STOPPED:
        events.append(ev.ProcStopped(pid=target.pid, reason="SIGSTOP"))
    elif sig == "CONT" and target.state == STOPPED:
        if (target.stop_reason or "").startswith("quarantined"):
            raise Conflict(f"process {a.pid} is {target.stop_reason}; inspect it, then kill it", code="EBUSY")
        events.append(ev.ProcContinued(pid=target.pid))
    return Done(None, events, blobs)


def process_row(k: Kernel, p: Process) -> dict[str, Any]:
    if p.kind == "process":  # a real program: its restart policy, runs and work directory
        from agentos.kernel import sysprocagent  # (it imports this module)

        return _row(k, p) | sysprocagent.row(k, p)
    return _row(k, p)


def _row(k: Kernel, p: Process) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "ppid": p.ppid,
        "name": p.name,
        "kind": p.kind,
        "state": p.state,
        "wait": p.wait_call,
        "stop_reason": p.stop_reason,
        "status": p.exit_status,
        "signal": p.exit_signal,
        "fault": p.fault,
        "reason": p.exit_reason,
        "target": p.target,
        "argv": p.argv,
        "syscalls": p.syscalls,
        "cpu_ms": round(k.state.ledger.cpu_ns.get(p.pid, 0) / 1e6, 3),
        "started_ts": p.created_ts,
        "exited_ts": p.exited_ts,
    }


def sys_ps(k: Kernel, c: Caller, a: sc.PsArgs) -> Done:
    procs = sorted(k.state.world.procs.procs.values(), key=lambda p: p.pid)
    return Done([process_row(k, p) for p in procs if a.all or p.state != DEAD])


def sys_continue_as_new(k: Kernel, c: Caller, a: sc.ContinueAsNewArgs) -> Done:
    if c.kind != "agent":
        raise InvalidArgument("only an agent can continue as new")
    p = _proc(k, c.pid)
    if p.state == STOPPED:
        raise Conflict("a stopped process cannot continue as new", code="EBUSY")
    return Done(None, [ev.ProcContinuedAsNew(pid=c.pid, argv=list(a.argv), epoch=p.epoch + 1)])
