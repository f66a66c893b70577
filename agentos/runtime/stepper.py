"""The dispatcher for in-kernel SDK agents (ARCHITECTURE.md §4.2, §4.1).

Agents are not asyncio tasks: the dispatcher asks the scheduling policy for the next ready
agent and steps its coroutine with ``send()`` to its next trap, charging the step's CPU time
to it, and gives the asyncio loop a turn about every millisecond so sockets are served.

Each trap is answered in one of three ways (replay itself lives in ``replay.py``, starting and
resuming agents in ``lifecycle.py``):

* **replay** — while the agent is being resumed after a restart, from its journal: if the
  recorded call and argument digest match, the recorded result (or error, or cancellation)
  is returned without running the handler; otherwise the agent has broken determinism and is
  ended with a ``ReplayDivergence`` fault;
* **live** — through ``Kernel.call``; the result is journaled as ``sys.done`` (calls whose
  result is fixed for the caller journal nothing but the counter);
* **parked** — a blocking call journals its intent (``sys.blocked``) and waits in the kernel.

Discussion: a call's effect events and its ``sys.done`` are emitted in one synchronous step,
so the group committer always writes them in the same transaction — after a crash a call has
either fully happened (and is replayed from the journal) or not at all (and runs live again).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Any

from agentos import param
from agentos.abi.traps import Trap
from agentos.errors import (
    AgentCancelled,
    AgentOSError,
    InternalError,
    InvalidArgument,
    ReplayDivergence,
)
from agentos.kernel import sysproc
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.kernel import Kernel
from agentos.kernel.sched import RoundRobin
from agentos.kernel.syscall import SYSCALLS
from agentos.runtime import replay
from agentos.runtime.agents import AgentTask, args_digest, encode_result
from agentos.runtime.console import ConsoleCapture
from agentos.runtime.lifecycle import Lifecycle
from agentos.runtime.watchdog import Watchdog, WatchdogInterrupt
from agentos.state import events as ev
from agentos.state.proc import Process

log = logging.getLogger("agentos.stepper")
_CANCEL_SIGNALS = sysproc.CANCELLING
_LIFECYCLE = frozenset(
    {
        ev.ProcSpawned,
        ev.ProcExited,
        ev.ProcStopped,
        ev.ProcQuarantined,
        ev.ProcContinued,
        ev.ProcSignaled,
        ev.ProcContinuedAsNew,
    }
)


class AgentRunner(Lifecycle):
    def __init__(self, kernel: Kernel, watchdog: Watchdog, capture: ConsoleCapture) -> None:
        self.k = kernel
        self.watchdog = watchdog
        self.capture = capture
        self.policy = RoundRobin()
        self.tasks: dict[int, AgentTask] = {}
        self.deferred: dict[int, Process] = {}  # stopped when the kernel stopped: resumed at CONT
        self.resuming: set[int] = set()  # resume attempt not yet durable
        self.early_term: dict[int, str] = {}  # TERM that arrived while resuming
        self.moves = 0
        self._work = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        kernel.instruments.append(self)

    # -- instrument hooks (called synchronously as events are applied) -------------------------

    def on_event(self, seq: int, e: ev.Payload) -> None:
        if type(e) not in _LIFECYCLE:
            return
        match e:
            case ev.ProcSpawned(kind="agent"):
                self._loop.call_soon(self._start, e.pid)
            case ev.ProcExited() if e.pid in self.tasks:
                self._discard(self.tasks.pop(e.pid))
            case ev.ProcStopped() | ev.ProcQuarantined() if e.pid in self.tasks:
                self.tasks[e.pid].stopped = True
                self.policy.discard(e.pid)
            case ev.ProcContinued() if e.pid in self.deferred:
                self._loop.call_soon(self.resume, self.deferred.pop(e.pid))
            case ev.ProcContinued() if e.pid in self.tasks:
                self.tasks[e.pid].stopped = False
                self._ready(self.tasks[e.pid])
            case ev.ProcSignaled(sig=sig) if sig in _CANCEL_SIGNALS and (
                e.pid in self.tasks or e.pid in self.deferred or e.pid in self.resuming
            ):
                self._loop.call_soon(self._cancel, e.pid, sig)
                if e.kill_at_ns is not None:
                    self.arm_kill(e.pid, e.kill_at_ns)
            case ev.ProcExited() if e.pid in self.deferred:
                del self.deferred[e.pid]
            case ev.ProcContinuedAsNew() if e.pid in self.tasks:
                old = self.tasks[e.pid]
                old.dead = True  # the old coroutine never runs again
                self.policy.discard(e.pid)
                self._loop.call_soon(self._restart_as_new, old, e.epoch)

    def on_committed(self, batch: list[Any]) -> None:
        pass

    # -- signals ----------------------------------------------------------------------------

    def arm_kill(self, pid: int, kill_at_ns: int) -> None:
        """KILL at the recorded end of a TERM's grace period (re-armed at boot from the state)."""
        delay = max(0.0, (kill_at_ns - time.time_ns()) / 1e9)
        self._loop.call_later(delay, self._kill_after_grace, pid, self.moves)

    def _cancel(self, pid: int, sig: str) -> None:
        if pid in self.resuming:
            self.early_term[pid] = sig
            return
        task = self.tasks.get(pid)
        if task is None or task.dead:
            return
        if task.parked_call is not None:
            self.k.unpark(pid)
            self._journal_cancel(task, sig)
        else:
            task.term_pending = sig

    def _journal_cancel(self, task: AgentTask, sig: str) -> None:
        n, call, digest = task.parked_call or (task.n - 1, "?", "")
        task.parked_call = None
        self._emit_done(task, n, call, digest, cancelled=sig)
        task.resume_with(exc=AgentCancelled(sig))
        self._ready(task)

    def _kill_after_grace(self, pid: int, moves: int) -> None:
        p = self.k.state.world.procs.get(pid)
        if moves != self.moves:  # armed on a branch the kernel has left (resume re-arms its own)
            return
        if p is not None and p.alive and (pid in self.tasks or pid in self.deferred or pid in self.resuming):
            try:
                self.k.call(
                    Caller(param.KERNEL_PID, "kernel", request="term-grace"),
                    "kill",
                    {"pid": pid, "sig": "KILL"},
                )
            except AgentOSError as err:
                log.info("KILL after TERM grace for %d failed: %s", pid, err)

    def _ready(self, task: AgentTask) -> None:
        if task.runnable and not task.dead and not task.stopped:
            self.policy.push(task.pid)
            self._work.set()

    # -- the dispatcher ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._work.wait()
            slice_end = time.perf_counter() + param.STEP_SLICE_SECONDS
            while time.perf_counter() < slice_end:
                pid = self.policy.pick()
                if pid is None:
                    self._work.clear()
                    break
                task = self.tasks.get(pid)
                if task is not None and task.runnable and not task.dead:
                    try:
                        self._step(task)
                    except WatchdogInterrupt:  # landed just after the agent's step returned
                        self._exit(task, 128 + 24, fault="watchdog", reason="ran too long without a syscall")
                    except Exception as exc:  # a kernel bug: it ends this agent, never the dispatcher
                        log.exception("internal error while stepping agent %d", pid)
                        self._exit(
                            task, 1, fault="internal", reason=f"kernel error: {type(exc).__name__}: {exc}"
                        )
            await asyncio.sleep(0)

    def _step(self, task: AgentTask) -> None:
        task.runnable = False
        value, exc = task.send_value, task.throw
        task.send_value = task.throw = None
        self.capture.begin()
        self.watchdog.begin_step()
        t0 = time.thread_time_ns()
        outcome: tuple[str, Any]
        try:
            try:
                trap = task.coro.throw(exc) if exc is not None else task.coro.send(value)
                outcome = ("trap", trap)
            except StopIteration as stop:
                outcome = ("return", stop.value)
            except SystemExit as stop:
                outcome = ("return", stop.code)
            except AgentCancelled as cancel:
                outcome = ("signal", cancel.signal)
            except WatchdogInterrupt:
                outcome = ("watchdog", None)
            except BaseException as err:  # noqa: BLE001 - an agent's crash never crashes the kernel
                outcome = ("crash", err)
        finally:
            fired = self.watchdog.end_step()
            task.cpu_unflushed_ns += time.thread_time_ns() - t0
            printed = self.capture.end()
        if fired and outcome[0] == "trap":
            outcome = ("watchdog", None)
        self._flush_print(task, printed)
        if task.cpu_unflushed_ns >= param.CPU_CHARGE_EVERY_NS:
            self._flush_cpu(task)
        kind, detail = outcome
        if kind == "trap":
            self._trap(task, detail)
        elif kind == "return":
            self._exit(task, _exit_status(detail))
        elif kind == "signal":
            self._exit(
                task, 128 + sysproc.SIGNALS[detail], signal=detail, reason=f"terminated by SIG{detail}"
            )
        elif kind == "watchdog":
            limit = self.watchdog.limit
            self._exit(
                task,
                128 + 24,
                fault="watchdog",
                reason=f"ran over {limit}s without a syscall and was interrupted",
            )
        else:
            self._console(task, "".join(traceback.format_exception(detail)), "stderr")
            self._exit(task, 1, fault="exception", reason=f"{type(detail).__name__}: {detail}")

    def _flush_print(self, task: AgentTask, printed: list[tuple[str, str]]) -> None:
        if not printed or task.dead:
            return
        n = task.n
        if (task.replaying and n <= task.journal.last_n) or n in task.journal.printed:
            return  # shown before the restart; never print a line twice
        for stream in ("stdout", "stderr"):
            text = "".join(s for st, s in printed if st == stream)
            if text:
                events, blobs = sysproc.console_events(self.k, task.pid, text, stream, n=n, epoch=task.epoch)
                try:  # print() is a console write: the same capability and quota as write_console
                    self.k.authority.authorise(
                        Caller(task.pid, "agent", task.epoch, 0, n), "print", "sys:console", "write"
                    )
                    self.k.quotas.check_bytes(task.pid, events[0].size)
                except AgentOSError as err:  # dropped: the denial is audited; a quota is visible in `groups`
                    log.info("print() of agent %d dropped: %s", task.pid, err)
                    continue
                self.k.emit_all(events, task.pid, blobs=blobs)

    def _console(self, task: AgentTask, text: str, stream: str) -> None:
        events, blobs = sysproc.console_events(self.k, task.pid, text, stream)
        self.k.emit_all(events, task.pid, blobs=blobs)

    def _flush_cpu(self, task: AgentTask) -> None:
        if task.cpu_unflushed_ns > 0:
            self.k.emit(ev.CpuCharged(pid=task.pid, ns=task.cpu_unflushed_ns), task.pid)
            task.cpu_unflushed_ns = 0

    def _exit(self, task: AgentTask, status: int, **why: Any) -> None:
        p = self.k.state.world.procs.get(task.pid)
        if task.replaying:
            self._end_replay(task)
        if p is not None and p.alive:
            events, blobs = sysproc.exit_events(self.k, p, status, **why)
            self.k.emit_all(events, task.pid, blobs=blobs)

    def _end_replay(self, task: AgentTask) -> None:
        task.replaying = False
        self.k.emit(ev.ProcResumed(pid=task.pid, replayed_calls=task.replayed), task.pid)
        self.k.resumed_at_boot.append(task.pid)

    # -- one trap ----------------------------------------------------------------------------

    def _trap(self, task: AgentTask, trap: Any) -> None:
        if not isinstance(trap, Trap):
            task.resume_with(
                exc=InvalidArgument(
                    f"an agent may only await agentos.sdk calls, not {type(trap).__name__} (no asyncio inside agents)"
                )
            )
            self._ready(task)
            return
        if not isinstance(trap.call, str) or not trap.call.isascii():  # unknown, and not journalable
            task.resume_with(exc=InvalidArgument(f"unknown syscall {trap.call!r}", code="ENOSYS"))
            self._ready(task)
            return
        if trap.cap is not None and (type(trap.cap) is not int or not 0 < trap.cap < 2**62):
            task.resume_with(
                exc=InvalidArgument(f"a capability handle is a positive int, not {trap.cap!r:.32}")
            )
            self._ready(task)
            return
        n = task.n
        task.n += 1
        if task.replaying and self._replay(task, n, trap):
            return
        if task.term_pending:
            sig, task.term_pending = task.term_pending, None
            task.parked_call = (n, trap.call, args_digest(trap.args))
            self._journal_cancel(task, sig)
            return
        self._live(task, n, trap)

    def _replay(self, task: AgentTask, n: int, trap: Trap) -> bool:
        """Answer trap n from the journal; False when it must run live (the journal has ended,
        or its result is fixed for the caller)."""
        answer = replay.consult(task.journal, n, trap)
        if answer.kind == "diverged":
            self._diverged(task, n, answer.detail)
        elif answer.kind == "end":
            self._end_replay(task)  # the journal ends here; a parked call resumes with its intent
        elif answer.kind == "answer":
            task.replayed += 1
            value, exc = answer.value, answer.exc
            if exc is None and SYSCALLS[trap.call].journal == "secret":
                value, exc = self._reread_secret(task, value, trap.cap)
            task.resume_with(value, exc)
            self._ready(task)
        return answer.kind in ("diverged", "answer")

    def _reread_secret(
        self, task: AgentTask, ref: Any, use_cap: int | None
    ) -> tuple[Any, BaseException | None]:
        """A journaled secret is a reference: the value comes from the store again, never the log —
        and only while the agent still holds a capability for it (a revocation holds across replay)."""
        try:
            self.k.authority.authorise(
                Caller(task.pid, "agent"), "secret_get", f"secret:{ref['secret']}", "read"
            )
            return self.k.secrets.get(ref["secret"]), None
        except AgentOSError as exc:
            return None, exc

    def _diverged(self, task: AgentTask, n: int, detail: str) -> None:
        err = ReplayDivergence(f"agent {task.pid} is not deterministic: {detail}")
        self._console(task, f"agentos: {err}\n", "stderr")
        self._exit(task, 1, fault="ReplayDivergence", reason=str(err))

    def _live(self, task: AgentTask, n: int, trap: Trap) -> None:
        task.call_started_ns = time.perf_counter_ns()  # its sys.done records how long it took
        caller = Caller(task.pid, "agent", task.epoch, 0, n, task.journal.intents.get(n), use_cap=trap.cap)
        digest = args_digest(trap.args)
        try:
            outcome = self.k.call(caller, trap.call, trap.args)
        except Exception as exc:
            if isinstance(exc, AgentOSError):
                err = exc
            else:  # a handler bug: a typed error for the agent, a traceback for the kernel log
                log.exception("internal error in %s for agent %d", trap.call, task.pid)
                err = InternalError(f"{trap.call} failed inside the kernel: {type(exc).__name__}")
            if not task.dead:
                self._emit_done(task, n, trap.call, digest, error=err.to_wire())
                task.resume_with(exc=err)
                self._ready(task)
            return
        if task.dead or task.pid not in self.tasks or self.tasks[task.pid] is not task:
            return  # the call ended this agent (exit, KILL of itself, continue_as_new)
        if isinstance(outcome, Done):
            journaled = outcome.result
            if SYSCALLS[trap.call].journal == "secret":
                journaled = {"secret": trap.args["name"]}  # never the value
            self._emit_done(task, n, trap.call, digest, result=journaled)
            task.resume_with(outcome.result)
            self._ready(task)
        elif isinstance(outcome, Block):
            if caller.intent is None:
                self.k.emit(
                    ev.SyscallBlocked(
                        pid=task.pid,
                        epoch=task.epoch,
                        task=0,
                        n=n,
                        call=trap.call,
                        deadline_ns=outcome.deadline_ns,
                    ),
                    task.pid,
                    syscall=caller.syscall_id,
                )
            task.parked_call = (n, trap.call, digest)
            self.k.park(task.pid, caller, outcome, lambda result, exc: self._unparked(task, result, exc))
        else:
            err = InvalidArgument(f"{trap.call} streams, which only sessions can use")
            self._emit_done(task, n, trap.call, digest, error=err.to_wire())
            task.resume_with(exc=err)
            self._ready(task)

    def _unparked(self, task: AgentTask, result: Any, exc: BaseException | None) -> None:
        if task.dead or task.parked_call is None:
            return
        n, call, digest = task.parked_call
        task.parked_call = None
        if isinstance(exc, AgentOSError):
            self._emit_done(task, n, call, digest, error=exc.to_wire())
        else:
            self._emit_done(task, n, call, digest, result=result)
        task.resume_with(result, exc)
        self._ready(task)

    def _emit_done(
        self,
        task: AgentTask,
        n: int,
        call: str,
        digest: str,
        *,
        result: Any = None,
        error: dict | None = None,
        cancelled: str | None = None,
    ) -> None:
        started, task.call_started_ns = task.call_started_ns, 0
        row = SYSCALLS.get(call)
        if row is not None and row.journal == "counter" and error is None and not cancelled:
            return
        value, is_bytes = encode_result(result)
        done = ev.SyscallDone(
            pid=task.pid,
            epoch=task.epoch,
            task=0,
            n=n,
            call=call,
            args_digest=digest,
            result=value,
            result_bytes=is_bytes,
            error=error,
            cancelled=cancelled is not None,
            signal=cancelled,
            duration_ns=time.perf_counter_ns() - started if started else 0,
        )
        self.k.emit(done, task.pid, syscall=f"{task.pid}:{task.epoch}:0:{n}")


def _exit_status(value: Any) -> int:
    if value is None:
        return 0
    if not isinstance(value, int):  # as sys.exit("message")
        return 1
    return int(value) & 0xFF
