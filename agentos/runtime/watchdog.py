"""A watchdog thread that interrupts an in-kernel agent running too long without yielding.

Cooperative scheduling in one Python thread cannot preempt: the watchdog raises
``WatchdogInterrupt`` asynchronously in the kernel thread (``PyThreadState_SetAsyncExc``),
which takes effect at the next Python bytecode the agent runs. It cannot interrupt a long C
call (``time.sleep(100)``, a huge regex); CPU-heavy or untrusted work belongs in a sandboxed
worker. The exception is a BaseException, so ``except Exception`` in the agent won't hide it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time

from agentos import param

log = logging.getLogger("agentos.watchdog")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)


class WatchdogInterrupt(BaseException):
    """Raised inside an agent that ran longer than the watchdog allows without a syscall."""


class Watchdog:
    def __init__(self, limit_seconds: float) -> None:
        self.limit = limit_seconds
        self.thread_id = threading.get_ident()
        self.fired = 0
        self._lock = threading.Lock()
        self._step_started: float | None = None
        self._step_fired = False
        self._fired_this_step = 0
        self._step_began = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="agentos-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def begin_step(self) -> None:
        with self._lock:
            self._step_started = self._step_began = time.monotonic()
            self._step_fired = False
            self._fired_this_step = 0

    def end_step(self) -> bool:
        """Mark the step over; return whether the watchdog fired during it."""
        with self._lock:
            fired = self._step_fired
            self._step_started = None
            if fired:  # a pending interrupt must not land in kernel code after the step
                _set_async_exc(self.thread_id, ctypes.py_object())
            return fired

    def _watch(self) -> None:
        tick = min(0.05, self.limit / 4)
        while not self._stop.wait(tick):
            with self._lock:
                started = self._step_started
                if started is None or time.monotonic() - started < self.limit:
                    continue
                self._step_started = time.monotonic()  # fire again after another full period
                self._step_fired = True
                self.fired += 1
                self._fired_this_step += 1
                stuck = time.monotonic() - self._step_began
                if (
                    self._fired_this_step > param.WATCHDOG_KILL_AFTER
                    and stuck >= param.WATCHDOG_GIVE_UP_SECONDS
                ):
                    self._give_up(stuck)
                _set_async_exc(self.thread_id, ctypes.py_object(WatchdogInterrupt))

    def _give_up(self, stuck: float) -> None:
        """The kernel thread has been stuck in one agent step for WATCHDOG_GIVE_UP_SECONDS despite
        the interrupts (the agent swallows them, or sits in a long C call): the last resort is to
        end the kernel process. Nothing acknowledged is lost (output waits for the log), the next
        boot resumes everyone, and an agent that wedges every resume is quarantined."""
        log.critical(
            "the kernel has been stuck in one agent step for %.0fs despite %d watchdog interrupts"
            " (the agent swallows them or is in a long C call); killing the wedged kernel",
            stuck,
            self._fired_this_step - 1,
        )
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
