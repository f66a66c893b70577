"""How a sandboxed program ended: a wait status decoded into status, signal and typed fault.

``decode_waitstatus(ws)`` is exact: it is given the raw status the program's own parent saw
(``agentos-stage`` writes it to a pipe). ``decode_bwrap(ws)`` reads bubblewrap's status when no
stage status came back (no stage on this host, or the stage itself was killed): bubblewrap reports a
signal death as exit 128+N, so an exit above 128 is read as signal N and marked ``exact=False``.

The fault kinds (``FAULTS``) are the signals a program gets for its own misbehaviour: ``segv``,
``bus``, ``ill``, ``fpe``, and ``sys`` (a seccomp kill). A status reads 128+N for signal N, the
convention of the shell and of AgentOS's SDK agents (ARCHITECTURE.md §9).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

FAULTS: dict[int, str] = {
    signal.SIGSEGV: "segv",
    signal.SIGBUS: "bus",
    signal.SIGILL: "ill",
    signal.SIGFPE: "fpe",
    signal.SIGSYS: "sys",
}


@dataclass(frozen=True)
class ExitInfo:
    """The end of a sandboxed program. ``fault`` is a FAULTS kind, ``"setup"`` when the sandbox
    could not be built (bubblewrap or the stage failed before the program ran), else None."""

    status: int
    signal: int | None = None
    fault: str | None = None
    core: bool = False
    exact: bool = True

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signal).name if self.signal else None

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "signal": self.signal, "fault": self.fault, "exact": self.exact}


def decode_waitstatus(ws: int) -> ExitInfo:
    """A raw wait status (as from ``os.waitpid``) as status / signal / fault."""
    if os.WIFEXITED(ws):
        return ExitInfo(status=os.WEXITSTATUS(ws))
    if os.WIFSIGNALED(ws):
        sig = os.WTERMSIG(ws)
        return ExitInfo(status=128 + sig, signal=sig, fault=FAULTS.get(sig), core=os.WCOREDUMP(ws))
    raise ValueError(f"wait status {ws:#x} is neither an exit nor a signal death")


def decode_bwrap(ws: int, *, staged: bool) -> ExitInfo:
    """Bubblewrap's own wait status when the stage reported nothing.

    With a stage (``staged``), any exit of 1..128 means the sandbox never ran the program: bwrap
    or the stage failed during setup (its message is on the agent's stderr)."""
    info = decode_waitstatus(ws)
    if info.signal is not None:  # bwrap itself was killed (by us, the OOM killer, ...)
        return info
    code = info.status
    if code > 128 and code - 128 < signal.NSIG:
        sig = code - 128
        return ExitInfo(status=code, signal=sig, fault=FAULTS.get(sig), exact=False)
    if staged and code != 0:
        return ExitInfo(status=code, fault="setup", exact=False)
    return ExitInfo(status=code, exact=not staged)


def typed(info: ExitInfo, usage: Any) -> tuple[int, str | None, str | None, str]:
    """(status, signal name, fault, reason) of an ended run; an OOM kill is typed from the cgroup's
    counters (``usage``: a ``cgroups.Usage`` or None)."""
    sig = signal.Signals(info.signal).name.removeprefix("SIG") if info.signal else None
    fault = info.fault
    if info.signal == signal.SIGKILL and usage is not None and usage.fault == "oom":
        fault = "oom"
    if fault == "oom":
        why = "killed by the OOM killer: the memory limit of its cgroup"
    elif fault == "setup":
        why = "the sandbox could not be set up (its stderr says why)"
    elif sig is not None:
        why = f"killed by SIG{sig}" + (" (core dumped)" if info.core else "")
    else:
        why = f"exited with status {info.status}" if info.status else ""
    return info.status, sig, fault, why
