"""What a syscall handler sees and returns: the caller, and an outcome (done or blocked).

Handlers decide and mutate nothing: they read state and return ``Done(result, events)`` — the
events the call causes, which the kernel stamps, applies and commits — or ``Block``, which
parks the caller until ``poll`` returns an outcome or the deadline passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentos.state import events as ev


@dataclass(slots=True)
class Caller:
    """Who is calling. What it may do is not here: it is the capabilities its pid holds."""

    pid: int
    kind: str  # "agent" | "process" (a real program, on its channel) | "session" | "kernel"
    epoch: int = 0
    task: int = 0
    n: int = 0
    intent: ev.SyscallBlocked | None = None  # this call's intent recorded before a crash
    request: str | None = None  # a session's request id, for correlation
    cap: Any = None  # the capability that authorised this call (set by the dispatcher)
    use_cap: int | None = None  # the caller names the capability to use: only that one may authorise

    @property
    def confined(self) -> bool:
        """An agent, in the kernel or a real program: its quotas and file modes bind it."""
        return self.kind == "agent" or self.kind == "process"

    @property
    def syscall_id(self) -> str | None:
        return f"{self.pid}:{self.epoch}:{self.task}:{self.n}" if self.kind == "agent" else None

    @property
    def correlation(self) -> str:
        """Links the events and the error of one call: ``pid:epoch:task:n`` for an agent's
        syscall, ``s<pid>:<request id>`` for a session's request, ``kernel:<why>`` for the kernel's own."""
        if self.kind == "kernel":
            return f"kernel:{self.request}"
        return self.syscall_id or f"s{self.pid}:{self.request}"


@dataclass(slots=True)
class Done:
    result: Any = None
    events: list[ev.Payload] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class Block:
    """Park the caller. ``poll`` returns an outcome when it can proceed (or raises)."""

    call: str
    poll: Callable[[], Done | None] | None = None
    deadline_ns: int | None = None
    on_deadline: Callable[[], Done] | None = None  # default: Done(None)
    events: list[ev.Payload] = field(default_factory=list)  # caused by the call itself (a request filed)
    blobs: dict[str, bytes] = field(default_factory=dict)  # written with those events
    emitted: int = 0  # the seq of the last of ``events``, once the kernel has emitted them


@dataclass(slots=True)
class Stream:
    """A streamed reply (sessions only): ``backlog`` items now, then one item per committed event
    that ``follow`` maps to something other than None, until ``until`` says stop."""

    backlog: list[Any]
    follow: Callable[[Any], Any] | None = None
    until: Callable[[Any], bool] | None = None
