"""Process agents across a boot, a rewind and a shutdown (mixed into ``procagents.ProcessRunner``).

A real program cannot be replayed, so the runtime never pretends it can:

* **boot** (``recover``, before anything new runs): the home's cgroups are searched for agent groups a
  killed kernel left (``CgroupManager.adopt_or_kill``); every host process in them is killed and the
  groups removed (``proc.cleaned`` with the counts). Every process agent the log says is alive is
  then recorded as a run ended with ``reason "kernel restarted: ..."`` and restarted per its policy
  (``proc.restarting``, or ``proc.exited``): never left running untracked. One never launched
  (``creating``) is launched now.
* **rewind** (``before_rewind``, ARCHITECTURE.md §4.4): each process agent alive now is frozen,
  killed and recorded as exited with fault ``EREWOUND`` *on the branch being left*: the hook runs
  inside ``timeline.move`` before the world is replaced, so its records land before the
  ``branch.created`` event. ``after_rewind``: one alive at the target point has no program behind it;
  restart policy ``always`` starts a new run, otherwise it is recorded exited ``EREWOUND`` there too.
* **shutdown** (``close``): running programs are killed with their cgroups, recording nothing more;
  the next boot records them as above (``shutdown --kill`` records their ends through ``kill``).

``status_info`` gives ``agentos status`` the sandbox and cgroup probes (loud where missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import AgentOSError, TimedOut
from agentos.kernel import sysproc, sysprocagent
from agentos.runtime import procview
from agentos.runtime.sandbox import cgroupfs
from agentos.runtime.sandbox.cgrouphome import CgroupManager, home_cgroup_id
from agentos.runtime.sandbox.exits import ExitInfo
from agentos.runtime.sandbox.probe import probe
from agentos.state import events as ev
from agentos.state.proc import CREATING

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel
    from agentos.runtime.procagents import Run
    from agentos.runtime.sandbox.cgroups import AgentCgroup

log = logging.getLogger("agentos.procagents")
KILLED = ExitInfo(status=128 + signal.SIGKILL, signal=signal.SIGKILL)


class Recovery:
    runs: dict[int, Run]
    timers: dict[int, asyncio.TimerHandle]
    _loop: asyncio.AbstractEventLoop

    if TYPE_CHECKING:  # provided by ProcessRunner

        def start(self, pid: int) -> None: ...

        def stop(self, pid: int) -> None: ...

        def end(self, run: Run, info: ExitInfo, reason: str = "") -> None: ...

    # -- what a run's end and a failed launch release ---------------------------------------------------

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.moves = 0  # rewinds so far: work scheduled before one is dropped after it
        self._cgroups_ready = False
        self.sandbox = "sandbox: probing (the first process agent waits for it)"
        support = cgroupfs.probe()
        self.cgroup_summary = support.summary()
        self.cgroups: CgroupManager | None = None
        self.views = procview.Views(kernel)  # each run's /work: its VFS directory through FUSE
        if support.usable:
            self.cgroups = CgroupManager(home_cgroup_id(kernel.home.path), support)
        for line in self.cgroup_summary.splitlines():
            (log.warning if "WARNING" in line or "MISSING" in line else log.info)("%s", line)

    def probe_sandbox(self) -> None:
        """Check the confinement mechanisms (runs bubblewrap a few times; builds the stage on first
        use) and log the result, loudly when one is missing."""
        found = probe()
        self.sandbox = found.summary()
        (log.warning if found.missing() else log.info)("%s", self.sandbox)

    def status_info(self) -> dict[str, Any]:
        return {
            "sandbox": self.sandbox,
            "cgroups": self.cgroup_summary,
            "process_workdir": self.views.summary,
            "process_agents": sorted(self.runs),
        }

    def setup_cgroups(self) -> None:
        """Create the home's root group on first use (a home that never runs a program makes none)."""
        if self.cgroups is not None and not self._cgroups_ready:
            for problem in self.cgroups.setup():
                log.warning("cgroups: %s", problem)
            self._cgroups_ready = True

    def _destroy_cgroup(self, cg: AgentCgroup) -> tuple[int, int]:
        """Kill and remove a run's cgroup; (host processes killed, directories removed)."""
        killed = cg.kill()
        removed = cg.remove()
        assert self.cgroups is not None
        with contextlib.suppress(AgentOSError):
            self.cgroups.destroy(cg.pid)  # forget it (already empty and removed)
        return killed, removed

    def _tidy_workdir(self, pid: int) -> tuple[int, str]:
        """Remove the work directory if the program left nothing there; keep it (and say so) if it did."""
        wd = sysprocagent.workdir(self.k, pid)
        removed = 0
        for d in (wd, wd.parent):
            try:
                d.rmdir()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError:
                return removed, str(wd) if wd.exists() else ""
        return removed, ""

    # -- boot ----------------------------------------------------------------------------------------

    def recover(self) -> None:
        """After a boot: kill what a dead kernel left in its cgroups, then settle every process agent
        the log says is alive (see the module docstring)."""
        found: dict[int, int] = {}  # agent pid -> host processes killed in its group
        if self.cgroups is not None:
            report = self.cgroups.adopt_or_kill(())
            for lo in report.found:
                found[lo.pid] = len(lo.host_pids)
            for err in report.errors:
                log.error("cgroups at boot: %s", err)
            if report.stray_host_pids:
                log.warning("cgroups at boot: killed stray host processes %s", report.stray_host_pids)
        trees = len(self.cgroups.support.mounts()) if self.cgroups is not None else 0
        for pid, n in sorted(found.items()):
            self.k.emit(ev.ProcCleaned(pid=pid, cgroups=trees, host_pids=n), pid)
        for p in sorted(self.k.state.world.procs.alive(), key=lambda p: p.pid):
            if p.kind != "process":
                continue
            if p.state == CREATING:  # spawned, never launched: launch it now
                self._loop.call_soon(self.start, p.pid)
                continue
            why = (
                "its program was killed at boot" if found.get(p.pid) else "its program ended with the kernel"
            )
            events, blobs = sysprocagent.end_events(
                self.k, p, KILLED.status, signal="KILL", reason=f"kernel restarted: {why}"
            )
            self.k.emit_all(events, p.pid, blobs=blobs)

    # -- rewind (kernel/timeline.py) -------------------------------------------------------------------

    def before_rewind(self) -> None:
        """Freeze, kill and record as exited (EREWOUND) every process agent alive now, on the branch
        being left; cancel every pending restart and grace-period KILL."""
        self.moves += 1
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for p in sorted(self.k.state.world.procs.alive(), key=lambda p: p.pid):
            if p.kind != "process":
                continue
            run = self.runs.get(p.pid)
            info = KILLED
            if run is not None:
                if run.cgroup is not None:
                    with contextlib.suppress(AgentOSError):
                        run.cgroup.freeze()  # nothing it does from here on: no fork, no write
                self.stop(p.pid)
                with contextlib.suppress(TimedOut):
                    info = run.handle.wait(param.CGROUP_SETTLE_SECONDS)
                run.recorded = True
            events, blobs = self._rewound(p, "the kernel rewound; a real program cannot be rewound")
            self.k.emit_all(events, p.pid, blobs=blobs)
            if run is not None:
                self.end(run, info)

    def after_rewind(self) -> None:
        """Process agents alive at the target point: a new run (restart ``always``) or EREWOUND."""
        for p in sorted(self.k.state.world.procs.alive(), key=lambda p: p.pid):
            if p.kind != "process" or p.pid in self.runs:
                continue
            if p.restart == "always":
                self.start(p.pid)
                continue
            events, blobs = self._rewound(p, "alive at the rewind's target, but its program is not running")
            self.k.emit_all(events, p.pid, blobs=blobs)

    def _rewound(self, p: Any, why: str) -> tuple[list[ev.Payload], dict[str, bytes]]:
        return sysproc.exit_events(
            self.k, p, KILLED.status, signal="KILL", fault="EREWOUND", reason=f"EREWOUND: {why}"
        )

    # -- shutdown --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every running program with its cgroup and release what the runs hold (no records:
        the next boot records their end), then remove the home's cgroups."""
        self.moves += 1
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for run in list(self.runs.values()):
            self.stop(run.pid)
            with contextlib.suppress(TimedOut):
                run.handle.wait(param.CGROUP_SETTLE_SECONDS)
            self._release(run)
        if self.cgroups is not None and self._cgroups_ready:
            with contextlib.suppress(AgentOSError):
                self.cgroups.teardown()

    def _release(self, run: Run) -> None:
        self.runs.pop(run.pid, None)
        self._loop.remove_reader(run.handle.pidfd)
        for fd in list(run.outputs):
            self._loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        run.outputs.clear()
        if run.session is not None:
            run.session.close()
        run.channel.close()
        procview.end(run.view)
        with contextlib.suppress(OSError):
            os.close(run.handle.pidfd)
        if run.cgroup is not None and self.cgroups is not None:
            with contextlib.suppress(AgentOSError):
                self.cgroups.destroy(run.pid)
