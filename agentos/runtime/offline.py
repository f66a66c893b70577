"""Run an SDK agent's code offline against a recorded journal: no kernel, no model calls.

Every trap is answered from the journal exactly as replay-to-resume answers it (``replay.consult``):
the recorded result, error or cancellation when the call and its argument digest match, the
fixed answer of a ``counter`` call (getpid), and a divergence otherwise. The driver stops at the
first divergence — a different call or other arguments at call n, code that ends before the
recording did or runs on past its end, another exit status — and says what the journal had and
what the code did now. Used by ``agentos replay --fixture`` (regression tests for agents) and to
recover the arguments of recorded calls (the log keeps only their digests).

``print()`` output is captured, never shown; an agent that runs ``timeout`` seconds in all is
interrupted (in the main thread only: SIGALRM).
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from agentos.abi.traps import Trap
from agentos.errors import AgentCancelled, InvalidArgument
from agentos.kernel.syscall import SYSCALLS
from agentos.kernel.sysproc import SIGNALS
from agentos.runtime.agents import Journal
from agentos.runtime.replay import consult

SUMMARY_CHARS = 160  # one call's arguments, summarised
_VALUE_CHARS = 48  # one argument's value within that


class _OutOfTime(BaseException):
    """Raised in the agent's code when the replay runs past its time (not catchable as Exception)."""


def summarize_args(args: Any) -> str:
    """A call's arguments for a person: ``path='/a', flags=['write'], data=<12 bytes>``."""
    if not isinstance(args, dict):
        return _value(args)
    text = ", ".join(f"{k}={_value(v)}" for k, v in args.items())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."


def _value(v: Any) -> str:
    if isinstance(v, bytes | bytearray):
        return repr(bytes(v)) if len(v) <= 24 else f"<{len(v)} bytes>"
    text = repr(v)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def describe(call: str | None, args: str) -> str:
    return f"{call}({args})" if call else "(no call)"


_LABELS = {
    "call": "another call",
    "args": "other arguments",
    "early": "ended early",
    "late": "ran past the recording",
    "status": "another exit status",
    "load": "does not load",
}


@dataclass(frozen=True, slots=True)
class Divergence:
    n: int | None  # the call at which it diverged (None: the exit status)
    what: str  # call | args | early | late | status
    expected: str  # what the journal had
    got: str  # what the code did now

    def report(self) -> str:
        at = f"at call {self.n}" if self.n is not None else "at its exit"
        return f"{at} ({_LABELS.get(self.what, self.what)}): the recording has {self.expected}; the code now {self.got}"


@dataclass(slots=True)
class Outcome:
    calls: int = 0  # traps answered from the journal
    status: int | None = None  # the exit status the code reached (None: stopped at the recording's end)
    how: str = ""  # how the code ended: returned, exit(), signal, exception, recording-end
    divergence: Divergence | None = None
    args: dict[int, str] = field(default_factory=dict)  # call n -> its arguments, summarised
    names: dict[int, str] = field(default_factory=dict)  # call n -> the call the code made
    output: str = ""  # what the code printed

    @property
    def matched(self) -> bool:
        return self.divergence is None


@dataclass(frozen=True, slots=True)
class Recording:
    """What the driver replays against: the journal, whose pid it was, how the recorded run ended."""

    journal: Journal
    pid: int
    exit: dict[str, Any] | None  # {status, signal, fault, reason}; None: still running when recorded
    args: dict[int, str] = field(default_factory=dict)  # recorded calls' arguments, where known


def _expected(rec: Recording, n: int) -> str:
    done, intent = rec.journal.done.get(n), rec.journal.intents.get(n)
    call = done.call if done is not None else intent.call if intent is not None else None
    return describe(call, rec.args.get(n, "?")) + f" as call {n}"


def _exit_status(how: str, detail: Any) -> int:
    if how == "signal":
        return 128 + SIGNALS.get(detail, 15)
    if how == "exception":
        return 1
    if detail is None:
        return 0
    return int(detail) & 0xFF if isinstance(detail, int) else 1  # as sys.exit("message")


def _recorded_exit(rec: Recording) -> str:
    ex = rec.exit or {}
    text = f"exit status {ex.get('status')}"
    if ex.get("signal"):
        text += f" (SIG{ex['signal']})"
    if ex.get("fault"):
        text += f" [{ex['fault']}: {ex.get('reason', '')}]"
    return text


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise _OutOfTime

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def drive(
    coro: Coroutine[Any, Any, Any],
    rec: Recording,
    *,
    timeout: float = 60.0,
    on_trap: Callable[[int, Trap], None] | None = None,
) -> Outcome:
    """Step ``coro`` to its end, answering each trap from ``rec``; stop at the first divergence."""
    out = Outcome()
    printed = io.StringIO()
    try:
        with _time_limit(timeout), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            _run(coro, rec, out, on_trap)
    except _OutOfTime:
        out.divergence = Divergence(
            out.calls, "late", "no more than its recorded calls", f"ran over {timeout:g}s (stuck, or a loop?)"
        )
    finally:
        coro.close()
        out.output = printed.getvalue()
    return out


def _run(coro: Any, rec: Recording, out: Outcome, on_trap: Callable[[int, Trap], None] | None) -> None:
    n, value, exc = 0, None, None
    while True:
        try:
            trap = coro.throw(exc) if exc is not None else coro.send(value)
        except StopIteration as stop:
            return _ended(rec, out, n, "returned", stop.value)
        except SystemExit as stop:
            return _ended(rec, out, n, "exit()", stop.code)
        except AgentCancelled as cancel:
            return _ended(rec, out, n, "signal", cancel.signal)
        except _OutOfTime:
            raise
        except BaseException as err:  # noqa: BLE001 - the agent's crash is an outcome, not ours
            return _ended(rec, out, n, "exception", err)
        value = exc = None
        if not isinstance(trap, Trap) or not isinstance(trap.call, str):
            exc = InvalidArgument(f"an agent may only await agentos.sdk calls, not {type(trap).__name__}")
            continue
        if on_trap is not None:
            on_trap(n, trap)
        answer = consult(rec.journal, n, trap)
        now = describe(trap.call, summarize_args(trap.args))
        if answer.kind == "diverged":
            done = rec.journal.done.get(n) or rec.journal.intents.get(n)
            same = done is not None and done.call == trap.call
            out.divergence = Divergence(n, "args" if same else "call", _expected(rec, n), f"calls {now}")
            return None
        out.args[n], out.names[n] = summarize_args(trap.args), trap.call
        if answer.kind == "end":
            return _past_the_end(rec, out, n, trap, now)
        out.calls += 1
        if answer.kind == "live":  # a call whose result is fixed for the caller
            value = rec.pid if trap.call == "getpid" else None
        else:
            value, exc = answer.value, answer.exc
            if exc is None and SYSCALLS[trap.call].journal == "secret":
                name = trap.args.get("name", "") if isinstance(trap.args, dict) else ""
                value = f"<secret {name}: not in the recording>".encode()  # the log never holds a value
        n += 1


def _past_the_end(rec: Recording, out: Outcome, n: int, trap: Trap, now: str) -> None:
    """The code made call ``n``, which the journal does not answer: where the recording ends."""
    if rec.exit is None:  # recorded while still running: everything recorded matched
        out.how = "recording-end"
        return
    if n in rec.journal.intents and (rec.exit.get("signal") or rec.exit.get("fault")):
        out.how = "recording-end"  # killed inside this very call, as recorded
        return
    if trap.call == "exit" and n > rec.journal.last_n:  # exit() leaves no journal record
        status = trap.args.get("status", 0) if isinstance(trap.args, dict) else 0
        out.calls += 1
        _ended(rec, out, n + 1, "exit()", status)
        return
    if rec.exit.get("signal") and n > rec.journal.last_n:
        out.how = "recording-end"  # killed after its last recorded call: the code got as far
        return
    out.divergence = Divergence(
        n,
        "late",
        f"no call {n} (its last was call {rec.journal.last_n}, then {_recorded_exit(rec)})",
        f"calls {now}",
    )


def _ended(rec: Recording, out: Outcome, n: int, how: str, detail: Any) -> None:
    out.how, out.status = how, _exit_status(how, detail)
    why = f"{how} with status {out.status}"
    if how == "exception":
        why = f"raised {type(detail).__name__}: {str(detail)[:200]} (status 1)"
    elif how == "signal":
        why = f"was cancelled by SIG{detail} (status {out.status})"
    if n <= rec.journal.last_n:
        out.divergence = Divergence(n, "early", _expected(rec, n), f"ends there: it {why}")
    elif rec.exit is None:
        out.divergence = Divergence(n, "early", "a run still going after its last call", f"ends: it {why}")
    elif rec.exit.get("status") != out.status:
        out.divergence = Divergence(None, "status", _recorded_exit(rec), f"{why}")
