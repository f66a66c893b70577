"""Process agents, the kernel's half: spawn of kind "process", and what a run's end records.

A process agent is a real Linux program (``runtime/procagents.py`` launches it, confined, and tells
the kernel how it ended). The kernel side only decides, as every handler does:

* ``sys_spawn``: the ``spawn`` row. ``kind="process"`` records a ``proc.spawned`` with the command as
  ``target`` and its arguments as ``argv`` (argv[0] excluded, as for SDK agents), the restart policy
  and the sandbox profile; the resource group and capabilities come as for an SDK agent (a person's
  spawn gets the policy's). Anything else goes to ``sysproc.sys_spawn``.
* ``end_events``: a run ended (the program exited, was killed, or the kernel restarted under it).
  Its restart policy either restarts it — ``proc.restarting`` with an exponential backoff, the pid
  kept — or it exits (``sysproc.exit_events``: CHLD to the parent, ``wait`` returns).

Restart policy (``--restart``): ``never`` (default); ``on-failure``: a run that ended with a non-zero
status, a signal or a fault; ``always``: any run. Never after a TERM/INT/HUP someone sent (a person
or agent asked it to stop) and never after KILL (recorded as an exit by ``kill`` itself).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from agentos import param
from agentos.abi import syscalls as sc
from agentos.errors import InvalidArgument, QuotaExceeded
from agentos.kernel import sysproc
from agentos.kernel.calls import Caller, Done
from agentos.state import events as ev
from agentos.state.proc import Process

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

RESTART_POLICIES = ("never", "on-failure", "always")


def workdir(k: Kernel, pid: int) -> Path:
    """A process agent's host working directory: its ``/work`` only where the FUSE view is unusable
    (``runtime/procview.py``); its writes are NOT recorded in the VFS."""
    return k.home.path / "agents" / str(pid) / "work"


def vfs_workdir(pid: int) -> str:
    """A process agent's ``/work``: this directory of the VFS, served to it over FUSE."""
    return f"{param.PROC_VFS_WORKDIRS}/{pid}"


def sys_spawn(k: Kernel, c: Caller, a: sc.SpawnArgs) -> Done:
    if a.kind != "process":
        if a.restart is not None or a.profile is not None:
            raise InvalidArgument("restart and profile are for kind='process' (a real program)")
        return sysproc.sys_spawn(k, c, a)
    if a.root is not None:
        raise InvalidArgument("a process agent sees its work directory at /work; root is for SDK agents")
    if "\0" in a.target or "\0" in "".join(a.argv):
        raise InvalidArgument("a command and its arguments cannot hold NUL")
    parent = k.state.world.procs.get(c.pid)
    if parent is None or not parent.alive:
        raise InvalidArgument(f"process {c.pid} is not alive", code="ESRCH")
    if len(k.state.world.procs.alive()) >= param.MAX_PROCESSES:
        raise QuotaExceeded(f"process table full ({param.MAX_PROCESSES} live processes)", code="EAGAIN")
    pid = k.state.ledger.next_pid
    group_events, group = sysproc._child_group(k, c, parent, pid, a.limits)
    spawned = ev.ProcSpawned(
        pid=pid,
        ppid=c.pid,
        name=a.name or os.path.basename(a.target) or a.target,
        kind="process",
        target=a.target,
        argv=list(a.argv),
        caps_opaque=a.opaque or parent.caps_opaque or (c.kind == "session" and k.policy.opaque),
        group=group,
        restart=a.restart or "never",
        profile=a.profile or param.PROC_DEFAULT_PROFILE,
    )
    grants = sysproc.child_grants(k, c, pid, a.caps, a.grants)
    return Done(pid, [*group_events, spawned, *grants])


def restarts(p: Process, status: int, signal: str | None, fault: str | None) -> bool:
    """Whether the policy of ``p`` restarts it after a run that ended so."""
    if p.cancel_pending is not None:
        return False  # someone asked it to stop (TERM, INT, HUP); a KILL already recorded its exit
    if p.restart == "always":
        return True
    return p.restart == "on-failure" and (status != 0 or signal is not None or fault is not None)


def backoff_ns(streak: int) -> int:
    """The delay before the next run after ``streak`` quick ends in a row (1, 2, ...): doubling."""
    delay = param.PROC_RESTART_BACKOFF_SECONDS * 2 ** min(max(streak - 1, 0), 32)
    return int(min(delay, param.PROC_RESTART_BACKOFF_MAX_SECONDS) * 1e9)


def end_events(
    k: Kernel,
    p: Process,
    status: int,
    *,
    signal: str | None = None,
    fault: str | None = None,
    reason: str = "",
    ran_ns: int = 0,
) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """The events of one run's end: a restart per policy, else the exit."""
    if restarts(p, status, signal, fault):
        quick = ran_ns < param.PROC_RESTART_RESET_SECONDS * 1e9
        streak = p.streak + 1 if quick else 1
        restart = ev.ProcRestarting(
            pid=p.pid,
            run=p.runs + 1,
            status=status,
            signal=signal,
            fault=fault,
            reason=reason,
            delay_ns=backoff_ns(streak),
            streak=streak,
        )
        return [restart], {}
    return sysproc.exit_events(k, p, status, signal=signal, fault=fault, reason=reason)


def row(k: Kernel, p: Process) -> dict[str, object]:
    """What ``ps`` adds for a process agent."""
    return {
        "restart": p.restart,
        "runs": p.runs,
        "profile": p.profile,
        "workdir": vfs_workdir(p.pid),  # through FUSE; host_workdir only where status says MISSING
        "host_workdir": str(workdir(k, p.pid)),
    }
