"""Process agents, the runtime's half: launch real programs confined, wire them up, record their end.

A ``proc.spawned`` of kind ``process`` (``kernel/sysprocagent.py``) is launched here once it is
durable (starting a program is an output: ARCHITECTURE.md §4.3), from the loop thread (bubblewrap's
``--die-with-parent`` is tied to the thread that spawned it):

1. its **cgroup** (``CgroupManager``), with the limits of its resource group that a cgroup enforces
   (``memory_bytes``, ``pids_max``, ``cpu_max``, ``cpu_weight``: the tightest along the group chain);
   the launcher's stage joins it before exec'ing bubblewrap, so every descendant is in it;
2. its **work directory**: its VFS directory ``/shared/agents/<pid>`` served over FUSE as the agent
   (``procview.py``: every write recorded, attributed, undoable), mounted by the launcher's stage in
   the sandbox's own mount namespace and bound at ``/work``; a host directory where FUSE is unusable;
3. ``launch()`` with its profile (``minimal`` unless ``--profile full``), stdin ``/dev/null``, stdout
   and stderr pipes read on the loop into ``console.write`` events (``agentos logs``), and fd 3 the
   **syscall channel**: one end of a socketpair, the other served by the socket server as a
   connection bound to the agent's pid (``ProcSession``: no hello needed, calls authorised by the
   agent's own capabilities and quotas, never journaled or replayed);
4. its **pidfd** watched on the loop: the run's end is decoded (``exits``: status, signal, typed fault
   ``segv``/``bus``/``ill``/``fpe``/``sys``, ``oom`` from the cgroup's counters), the run's
   resources released in dependency order — output pipes (drained), channel, cgroup (kill, remove),
   the FUSE view, pidfd, the host work directory if empty — recorded as ``proc.cleaned``, then its end: a restart per
   policy (``proc.restarting``, relaunched after the backoff) or the exit (CHLD, ``wait``).

Signals: TERM/INT/HUP/USR1/USR2 are forwarded to the program (KILL follows a TERM's grace period);
KILL kills the whole cgroup; STOP/CONT freeze and thaw it. Boot, rewind and shutdown are in
``procrecover.py``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from agentos import param
from agentos.errors import AgentOSError, QuotaExceeded
from agentos.kernel import sysproc, sysprocagent
from agentos.kernel.calls import Caller
from agentos.kernel.kernel import Kernel
from agentos.runtime import procview
from agentos.runtime.fusefs import FuseView
from agentos.runtime.procrecover import Recovery
from agentos.runtime.sandbox.cgroups import AgentCgroup, Limits
from agentos.runtime.sandbox.exits import ExitInfo, typed
from agentos.runtime.sandbox.launch import Sandboxed, launch
from agentos.runtime.sandbox.profile import PRESETS
from agentos.runtime.server import Session, SocketServer
from agentos.state import events as ev
from agentos.state.proc import CREATING, Process

log = logging.getLogger("agentos.procagents")
CGROUP_KEYS = ("memory_bytes", "pids_max", "cpu_max")  # the tightest along the chain holds
FORWARDED = {"TERM", "INT", "HUP", "USR1", "USR2"}
_WATCHED = frozenset(
    {ev.ProcSpawned, ev.ProcRestarting, ev.ProcExited, ev.ProcSignaled, ev.ProcStopped, ev.ProcContinued}
)


class ProcSession(Session):
    """A process agent's channel: a connection that already is process ``pid``."""

    kind = "process"

    def __init__(self, server: SocketServer, pid: int) -> None:
        super().__init__(server)
        self.pid = pid

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.sessions.add(self)
        assert self.pid is not None
        self.server.by_pid[self.pid] = self


@dataclass
class Run:
    """One run of a process agent on the host, and every resource it holds."""

    pid: int
    handle: Sandboxed
    cgroup: AgentCgroup | None
    channel: socket.socket
    outputs: dict[int, tuple[str, Any]] = field(default_factory=dict)  # fd -> (stream, decoder)
    session: ProcSession | None = None
    started: float = field(default_factory=time.monotonic)
    recorded: bool = False  # its end is in the log already (KILL, rewind): only clean up
    dropped_output: bool = False
    fds_closed: int = 0  # output pipes closed so far (at EOF, or drained at the end)
    view: FuseView | None = None  # its /work (None: the host-directory fallback)


class ProcessRunner(Recovery):
    """Runs the kernel's process agents; an instrument (``Kernel.instruments``)."""

    def __init__(self, kernel: Kernel, server: SocketServer) -> None:
        super().__init__(kernel)
        self.server = server
        self.runs: dict[int, Run] = {}
        self.timers: dict[int, asyncio.TimerHandle] = {}  # pid -> its restart backoff or KILL after grace
        self._loop = asyncio.get_running_loop()
        kernel.instruments.append(self)

    # -- instrument hooks -------------------------------------------------------------------------

    def on_event(self, seq: int, e: ev.Payload) -> None:
        if type(e) not in _WATCHED:  # called for every event: the few kinds that matter, at once
            return
        if isinstance(e, ev.ProcSpawned) and e.kind == "process":
            self._after_durable(seq, self.start, e.pid)
        elif isinstance(e, ev.ProcRestarting):
            self._arm(e.pid, e.delay_ns / 1e9, self._restart_due, e.pid, self.moves)
        elif isinstance(e, ev.ProcExited) and e.pid in self.runs:
            self.runs[e.pid].recorded = True
            self._after_durable(seq, self.stop, e.pid)
        elif isinstance(e, ev.ProcSignaled) and e.pid in self.runs and e.sig in FORWARDED:
            self._after_durable(seq, self._forward, e.pid, e.sig)
            if e.kill_at_ns is not None:
                delay = max(0.0, (e.kill_at_ns - time.time_ns()) / 1e9)
                self._arm(e.pid, delay, self._kill_after_grace, e.pid, self.moves)
        elif isinstance(e, ev.ProcSignaled) and e.kill_at_ns is not None and e.pid in self.timers:
            self._loop.call_soon(self._stop_waiting, e.pid)  # a TERM while it waits to restart
        elif isinstance(e, ev.ProcStopped | ev.ProcContinued) and e.pid in self.runs:
            self._after_durable(seq, self._freeze, e.pid, isinstance(e, ev.ProcStopped))

    def on_committed(self, batch: list[Any]) -> None:
        pass

    def _after_durable(self, seq: int, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the loop once the log is durable up to ``seq`` (the output-commit rule:
        a launch or a real signal is an output), unless the kernel moved in time meanwhile."""
        moves = self.moves

        async def later() -> None:
            await self.k.committer.durable(seq)
            if moves == self.moves:
                fn(*args)

        self._loop.create_task(later())

    def _arm(self, pid: int, delay: float, fn: Any, *args: Any) -> None:
        old = self.timers.pop(pid, None)
        if old is not None:
            old.cancel()
        self.timers[pid] = self._loop.call_later(delay, fn, *args)

    # -- starting a run ----------------------------------------------------------------------------

    def start(self, pid: int) -> None:
        """Launch process agent ``pid`` (a new run) if it is alive and not running."""
        p = self.k.state.world.procs.get(pid)
        if p is None or not p.alive or p.kind != "process" or pid in self.runs or self.k.fatal:
            return
        opened: list[int] = []
        cg: AgentCgroup | None = None
        view: FuseView | None = None
        ours = theirs = None
        try:
            cg = self._cgroup(p)
            view, wd = self.views.open(p)  # served before the launch: the stage mounts its fd
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            opened += [out_r, out_w]
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            opened += [err_r, err_w]
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            handle = launch(
                [p.target, *p.argv],
                PRESETS[p.profile or param.PROC_DEFAULT_PROFILE],
                workdir=wd,
                stdout=out_w,
                stderr=err_w,
                channel=theirs.fileno(),
                cgroup_procs=cg.procs_files() if cg is not None else (),
                fuse_fd=view.fd if view is not None else None,
            )
        except (AgentOSError, OSError) as err:
            for fd in opened:
                os.close(fd)
            for sock in (ours, theirs):
                if sock is not None:
                    sock.close()
            procview.end(view)
            self._failed_launch(p, cg, err)
            return
        for fd in (out_w, err_w):
            os.close(fd)
        theirs.close()
        run = Run(pid, handle, cg, ours, view=view)
        self.runs[pid] = run
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            run.outputs[fd] = (stream, codecs.getincrementaldecoder("utf-8")("surrogateescape"))
            self._loop.add_reader(fd, self._read, run, fd)
        self._loop.add_reader(handle.pidfd, self._on_exit, run)
        self._loop.create_task(self._attach(run))
        if p.state == CREATING:
            self.k.emit(ev.ProcStarted(pid=pid), pid)

    def _cgroup(self, p: Process) -> AgentCgroup | None:
        """A fresh group for the run with the limits its resource groups set (None: no cgroups here)."""
        if self.cgroups is None:
            return None
        self.setup_cgroups()
        limits: dict[str, float] = {}
        for g in self.k.state.world.groups.chain(p.group):  # nearest first
            for key in CGROUP_KEYS:
                if key in g.limits:
                    limits[key] = min(limits.get(key, g.limits[key]), g.limits[key])
            if "cpu_weight" in g.limits:
                limits.setdefault("cpu_weight", g.limits["cpu_weight"])
        with contextlib.suppress(AgentOSError):
            self.cgroups.get(p.pid)  # a group left by an earlier run: gone before the new one
            self.cgroups.destroy(p.pid)
        return self.cgroups.create(p.pid, Limits.from_quotas(limits))

    async def _attach(self, run: Run) -> None:
        try:
            _, proto = await self._loop.connect_accepted_socket(
                lambda: ProcSession(self.server, run.pid), sock=run.channel
            )
        except OSError as err:  # the program has gone already
            log.info("channel of process %d not attached: %s", run.pid, err)
            return
        assert isinstance(proto, ProcSession)
        run.session = proto
        if self.runs.get(run.pid) is not run:  # ended while attaching
            proto.close()

    def _failed_launch(self, p: Process, cg: AgentCgroup | None, err: BaseException) -> None:
        """The sandbox could not be built: say why on its console; it exits (fault ``setup``),
        never restarted (the next run would fail the same way)."""
        cgroups = 0
        if cg is not None:
            with contextlib.suppress(AgentOSError):
                cgroups = self._destroy_cgroup(cg)[1]
        text = f"agentos: cannot start {p.target}: {err}\n"
        events, blobs = sysproc.console_events(self.k, p.pid, text, "stderr")
        self.k.emit_all(events, p.pid, blobs=blobs)
        dirs, kept = self._tidy_workdir(p.pid)
        self.k.emit(ev.ProcCleaned(pid=p.pid, cgroups=cgroups, dirs=dirs, kept=kept), p.pid)
        if p.state == CREATING:
            self.k.emit(ev.ProcStarted(pid=p.pid), p.pid)
        events, blobs = sysproc.exit_events(self.k, p, 127, fault="setup", reason=str(err)[:500])
        self.k.emit_all(events, p.pid, blobs=blobs)

    # -- output ------------------------------------------------------------------------------------

    def _read(self, run: Run, fd: int) -> None:
        try:
            data = os.read(fd, param.PROC_OUTPUT_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._console(run, fd, data, final=not data)
        if not data:
            self._close_output(run, fd)

    def _console(self, run: Run, fd: int, data: bytes, final: bool) -> None:
        stream, decoder = run.outputs[fd]
        text = decoder.decode(data, final=final)
        p = self.k.state.world.procs.get(run.pid)
        if not text or p is None or not p.alive:
            return
        events, blobs = sysproc.console_events(self.k, run.pid, text, stream)
        try:  # the program's output counts against its console quota, as print() does
            self.k.quotas.check_bytes(run.pid, events[0].size)
        except QuotaExceeded as err:
            if not run.dropped_output:
                run.dropped_output = True
                log.info("output of process %d dropped: %s", run.pid, err)
            return
        self.k.emit_all(events, run.pid, blobs=blobs)

    def _close_output(self, run: Run, fd: int) -> int:
        if fd not in run.outputs:
            return 0
        self._loop.remove_reader(fd)
        del run.outputs[fd]
        os.close(fd)
        run.fds_closed += 1
        return 1

    def _drain(self, run: Run) -> int:
        """Read what the ended program left in its pipes, then close them; returns the run's pipe
        fds closed, these and those closed at EOF before."""
        for fd in list(run.outputs):
            for _ in range(1024):  # bounded: a descendant that escaped could keep writing
                try:
                    data = os.read(fd, param.PROC_OUTPUT_CHUNK)
                except (BlockingIOError, OSError):
                    break
                self._console(run, fd, data, final=not data)
                if not data:
                    break
            self._close_output(run, fd)
        return run.fds_closed

    # -- signals -----------------------------------------------------------------------------------

    def _forward(self, pid: int, sig: str, tries: int = 0) -> None:
        run = self.runs.get(pid)
        if run is None or run.recorded:
            return
        num = getattr(signal, f"SIG{sig}")
        if tries < 400 and not run.handle.takes(num):  # the sandbox is still being built: soon
            self._loop.call_later(0.005, self._forward, pid, sig, tries + 1)
            return
        run.handle.send_signal(num)

    def _kill_after_grace(self, pid: int, moves: int) -> None:
        self.timers.pop(pid, None)
        p = self.k.state.world.procs.get(pid)
        if moves != self.moves or p is None or not p.alive or pid not in self.runs:
            return
        with contextlib.suppress(AgentOSError):
            self.k.call(
                Caller(param.KERNEL_PID, "kernel", request="term-grace"), "kill", {"pid": pid, "sig": "KILL"}
            )

    def _freeze(self, pid: int, stop: bool) -> None:
        run = self.runs.get(pid)
        if run is None or run.recorded:
            return
        try:
            if run.cgroup is None:
                raise AgentOSError("no cgroup", code="ENOSYS")
            run.cgroup.freeze() if stop else run.cgroup.thaw()
        except AgentOSError as err:  # no freezer: the program's own STOP/CONT, through the stage
            log.warning(
                "process %d: cgroup %s failed (%s); sending SIG%s",
                pid,
                "freeze" if stop else "thaw",
                err,
                "STOP" if stop else "CONT",
            )
            run.handle.send_signal(signal.SIGSTOP if stop else signal.SIGCONT)

    def stop(self, pid: int) -> None:
        """Kill a run's whole cgroup at once (KILL, rewind, shutdown); its end comes by the pidfd."""
        run = self.runs.get(pid)
        if run is None:
            return
        procview.abort(run.view)  # a request already read would hold the program until answered
        if run.cgroup is not None:
            with contextlib.suppress(AgentOSError):
                run.cgroup.kill()
        run.handle.kill()

    # -- a run's end -------------------------------------------------------------------------------

    def _on_exit(self, run: Run) -> None:
        if (info := run.handle.poll()) is not None:  # (a wake-up with the program still there: none)
            self.end(run, info)

    def end(self, run: Run, info: ExitInfo, reason: str = "") -> None:
        """Release the run's resources in dependency order, record that, then its end (unless
        recorded already): a restart per policy or the exit."""
        self.runs.pop(run.pid, None)
        self._loop.remove_reader(run.handle.pidfd)
        fds = self._drain(run)  # 1. the output pipes: what it printed last is kept
        if run.session is not None:  # 2. the channel (its parked calls are dropped with it)
            run.session.close()
            self.server.ended(run.session)
        run.channel.close()
        fds += 1
        usage = None
        host_pids = cgroups = 0
        if run.cgroup is not None:  # 3. the cgroup: counters read, then every descendant killed
            with contextlib.suppress(AgentOSError):
                usage = run.cgroup.usage()
            with contextlib.suppress(AgentOSError):
                host_pids, cgroups = self._destroy_cgroup(run.cgroup)
        mounts = procview.end(run.view)  # 4. its FUSE view (the program and its mount are gone)
        os.close(run.handle.pidfd)  # 5. the pidfd
        run.handle.pidfd = -1
        fds += 1
        p = self.k.state.world.procs.get(run.pid)
        final = (
            run.recorded or p is None or not p.alive or not sysprocagent.restarts(p, *typed(info, usage)[:3])
        )
        dirs, kept = self._tidy_workdir(run.pid) if final else (0, "")  # 6. the host work dir, if empty
        if usage is not None and usage.cpu_ns:
            self.k.emit(ev.CpuCharged(pid=run.pid, ns=usage.cpu_ns), run.pid)
        cleaned = ev.ProcCleaned(
            pid=run.pid, fds=fds, cgroups=cgroups, host_pids=host_pids, dirs=dirs, kept=kept, mounts=mounts
        )
        self.k.emit(cleaned, run.pid)
        if run.recorded or p is None or not p.alive:
            return
        status, sig, fault, why = typed(info, usage)
        events, blobs = sysprocagent.end_events(
            self.k,
            p,
            status,
            signal=sig,
            fault=fault,
            reason=reason or why,
            ran_ns=int((time.monotonic() - run.started) * 1e9),
        )
        self.k.emit_all(events, run.pid, blobs=blobs)

    def _stop_waiting(self, pid: int) -> None:
        """A process agent between runs was asked to stop: it exits now, with no run to end."""
        p = self.k.state.world.procs.get(pid)
        if p is None or not p.alive or pid in self.runs or p.cancel_pending is None:
            return
        timer = self.timers.pop(pid, None)
        if timer is not None:
            timer.cancel()
        sig = p.cancel_pending
        why = f"stopped by SIG{sig} while waiting to restart"
        events, blobs = sysproc.exit_events(self.k, p, 128 + sysproc.SIGNALS[sig], signal=sig, reason=why)
        self.k.emit_all(events, pid, blobs=blobs)

    def _restart_due(self, pid: int, moves: int) -> None:
        self.timers.pop(pid, None)
        if moves == self.moves:
            self.start(pid)
