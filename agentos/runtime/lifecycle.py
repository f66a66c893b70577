"""How in-kernel agents come and go: start, load, resume after a restart, restart as new, close.

Mixed into ``AgentRunner`` (``stepper.py``), which owns the dispatcher; this half decides when
an agent's coroutine exists. Resuming is careful about one thing: the resume attempt is made
durable before the agent's code is imported or replayed, so an agent whose import or replay
kills the kernel still counts toward its quarantine (RESUME_QUARANTINE_AFTER).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import InvalidArgument, SecurityViolation
from agentos.kernel import sysproc
from agentos.runtime import loader, replay
from agentos.runtime.agents import AgentTask
from agentos.state import events as ev
from agentos.state.proc import CREATING, STOPPED, Process
from agentos.store.log import blob_hash

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel
    from agentos.kernel.sched import RoundRobin

log = logging.getLogger("agentos.lifecycle")


class Lifecycle:
    k: Kernel
    tasks: dict[int, AgentTask]
    deferred: dict[int, Process]
    resuming: set[int]
    early_term: dict[int, str]
    moves: int  # rewinds and switches so far: work scheduled before one is dropped after it
    policy: RoundRobin
    _loop: asyncio.AbstractEventLoop

    if TYPE_CHECKING:  # provided by AgentRunner

        def _ready(self, task: AgentTask) -> None: ...

        def _flush_cpu(self, task: AgentTask) -> None: ...

        def arm_kill(self, pid: int, kill_at_ns: int) -> None: ...

    def _load(self, p: Process) -> Any:
        source = self.k.blob(p.code)
        if source is None:
            raise InvalidArgument(
                f"the code of process {p.pid} ({p.code[:12]}) is missing from the blob store"
            )
        if blob_hash(source) != p.code:  # never run code that is not what was spawned
            raise SecurityViolation(
                f"the stored code of process {p.pid} does not match its hash {p.code[:12]}"
            )
        return loader.instantiate(p, source, p.argv)

    def _start(self, pid: int) -> None:
        p = self.k.state.world.procs.get(pid)
        if p is None or p.state != CREATING:
            return
        try:
            coro = self._load(p)
        except BaseException as exc:  # noqa: BLE001 - any load failure ends the agent, not the kernel
            self._fail_to_load(p, exc)
            return
        self.tasks[pid] = AgentTask(pid, p.epoch, coro)
        self.k.emit(ev.ProcStarted(pid=pid), pid)
        self._ready(self.tasks[pid])

    def _fail_to_load(self, p: Process, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))
        events, blobs = sysproc.console_events(
            self.k, p.pid, f"agentos: cannot start {p.target}:\n{text}", "stderr"
        )
        self.k.emit_all(events, p.pid, blobs=blobs)
        events, blobs = sysproc.exit_events(self.k, p, 1, fault="load", reason=f"{type(exc).__name__}: {exc}")
        self.k.emit_all(events, p.pid, blobs=blobs)

    def resume(self, p: Process) -> bool:
        """Re-run an agent that was alive when the kernel stopped, answering from its journal."""
        if not p.alive or p.pid in self.tasks:
            return False
        if p.kill_at_ns is not None:  # a TERM's grace period was running when the kernel stopped
            self.arm_kill(p.pid, p.kill_at_ns)
        if p.state == CREATING:
            self._loop.call_soon(self._start, p.pid)
            return True
        if p.state == STOPPED and not (p.stop_reason or "").startswith("quarantined"):
            self.deferred[p.pid] = p  # a stopped process does not run, not even to replay
            return True
        if p.resume_failures >= param.RESUME_QUARANTINE_AFTER:
            if p.state != STOPPED or not (p.stop_reason or "").startswith("quarantined"):
                reason = f"resume failed {p.resume_failures} times in a row"
                self.k.emit(ev.ProcQuarantined(pid=p.pid, reason=reason), p.pid)
            return False
        attempt = self.k.emit(ev.ProcResumeStarted(pid=p.pid), p.pid)
        self.resuming.add(p.pid)
        self._loop.create_task(self._resume_once_durable(p, attempt))
        return True

    async def _resume_once_durable(self, p: Process, attempt: int) -> None:
        """Load and replay only once the attempt is on disk: an agent whose import or replay
        kills the kernel still counts toward its quarantine."""
        moves = self.moves
        await self.k.committer.durable(attempt)
        if moves != self.moves:  # the kernel moved in time meanwhile: after_rewind resumed it anew
            return
        self.resuming.discard(p.pid)
        if not p.alive:
            return
        journal = replay.read_journal(self.k, p)
        try:
            coro = self._load(p)
        except BaseException as exc:  # noqa: BLE001
            # A failed resume leaves the agent alive but not running: it was fine until the
            # restart, so the next boot tries again, and K failures in a row quarantine it.
            text = "".join(traceback.format_exception(exc))
            events, blobs = sysproc.console_events(
                self.k, p.pid, f"agentos: cannot resume {p.target}:\n{text}", "stderr"
            )
            self.k.emit_all(events, p.pid, blobs=blobs)
            return
        task = AgentTask(p.pid, p.epoch, coro, journal, replaying=True)
        # a TERM acknowledged before the crash but not yet raised in the agent is raised now
        task.term_pending = self.early_term.pop(p.pid, None) or p.cancel_pending
        self.tasks[p.pid] = task
        self._ready(task)

    # -- rewinds (kernel/timeline.py) ----------------------------------------------------------

    def before_rewind(self) -> None:
        """Drop every running agent, recording nothing but CPU already used (ledger): their
        futures stay on the branch the kernel leaves."""
        self.moves += 1
        for task in list(self.tasks.values()):
            self._discard(task)
        self.tasks.clear()
        self.deferred.clear()
        self.resuming.clear()
        self.early_term.clear()

    def after_rewind(self) -> None:
        """Resume, by replay along the new lineage, every SDK agent alive in the world now."""
        for p in sorted(self.k.state.world.procs.alive(), key=lambda p: p.pid):
            if p.kind == "agent":
                self.resume(p)

    def _restart_as_new(self, task: AgentTask, epoch: int) -> None:
        p = self.k.state.world.procs.get(task.pid)
        if p is None or not p.alive or self.tasks.get(task.pid) is not task:
            return
        self._close(task)
        try:
            coro = self._load(p)
        except BaseException as exc:  # noqa: BLE001
            self._fail_to_load(p, exc)
            return
        self.tasks[p.pid] = AgentTask(p.pid, epoch, coro, stopped=task.stopped)
        self._ready(self.tasks[p.pid])

    def _discard(self, task: AgentTask) -> None:
        task.dead = True
        self.policy.discard(task.pid)
        self.k.unpark(task.pid)
        self._flush_cpu(task)
        self._loop.call_soon(self._close, task)

    def _close(self, task: AgentTask) -> None:
        try:
            task.coro.close()  # runs the agent's finally blocks; traps yielded now are refused
        except BaseException:  # noqa: BLE001
            log.info("agent %d yielded while being closed; its cleanup was cut short", task.pid)
        loader.unload(task.pid)
