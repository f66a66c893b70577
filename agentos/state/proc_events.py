"""Process agents' own events: a run that ended and is restarted, and a clean-up done.

A process agent (``kind="process"``, a real Linux program: ``runtime/procagents.py``) keeps its pid
across restarts: ``proc.restarting`` records how one run ended (the same fields as ``proc.exited``)
and the restart decided by its policy, with the backoff delay, so a boot or a rewind folds the same
decision; the process stays alive. ``proc.cleaned`` records what the runner released after the host
program ended (counts only; it changes no state).
"""

from __future__ import annotations

from agentos.state.payload import Payload, event


@event("proc.restarting")
class ProcRestarting(Payload):
    """Run ``run`` of process agent ``pid`` ended (``status``/``signal``/``fault``/``reason``);
    its restart policy starts run ``run + 1`` after ``delay_ns``. ``streak`` counts the runs in a row
    that ended quickly (it drives the exponential backoff; a long run resets it)."""

    pid: int
    run: int
    status: int
    signal: str | None = None
    fault: str | None = None
    reason: str = ""
    delay_ns: int = 0
    streak: int = 1


@event("proc.cleaned")
class ProcCleaned(Payload):
    """What ending host program ``pid``'s run released, in dependency order: ``fds`` (output pipes,
    the channel, the pidfd), ``cgroups`` (directories removed), ``host_pids`` (killed by the cgroup
    kill: descendants left behind), ``dirs`` (its work directory when empty; one with files is kept)."""

    pid: int
    fds: int = 0
    cgroups: int = 0
    host_pids: int = 0
    dirs: int = 0
    kept: str = ""  # the work directory kept (it holds the program's files), "" when removed
    mounts: int = 0  # FUSE views of the VFS ended (its /work), 0 with the host-directory fallback
