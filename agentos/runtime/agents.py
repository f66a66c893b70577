"""One in-kernel SDK agent as the stepper sees it: its coroutine, call counter and journal.

``Journal`` holds what a previous run of this agent recorded (for its current epoch), keyed
by call number: the ``sys.done`` results answered during replay, the ``sys.blocked`` intents
(so a resumed sleep keeps its deadline) and which steps' ``print()`` output was already shown.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agentos.state import events as ev

_args_encoder = msgspec.json.Encoder(order="deterministic")


def args_digest(args: Any) -> str:
    """Canonical, versioned digest of a call's arguments (what replay compares)."""
    try:
        data = _args_encoder.encode(args)
    except (TypeError, ValueError, msgspec.EncodeError):  # ValueError: a lone surrogate in a str
        data = repr(args).encode()
    return "v1:" + hashlib.sha256(data).hexdigest()[:32]


def encode_result(result: Any) -> tuple[Any, bool]:
    if isinstance(result, bytes | bytearray):
        return base64.b64encode(result).decode(), True
    return result, False


def decode_result(done: ev.SyscallDone) -> Any:
    return base64.b64decode(done.result) if done.result_bytes else done.result


@dataclass(slots=True)
class Journal:
    done: dict[int, ev.SyscallDone] = field(default_factory=dict)
    intents: dict[int, ev.SyscallBlocked] = field(default_factory=dict)
    printed: set[int] = field(default_factory=set)

    @property
    def last_n(self) -> int:
        return max([*self.done, *self.intents], default=-1)


@dataclass(slots=True)
class AgentTask:
    pid: int
    epoch: int
    coro: Coroutine[Any, Any, Any]
    journal: Journal = field(default_factory=Journal)
    n: int = 0  # number of the next trap
    replaying: bool = False
    replayed: int = 0
    send_value: Any = None
    throw: BaseException | None = None
    runnable: bool = True  # has a value to be resumed with (not parked)
    stopped: bool = False
    dead: bool = False
    term_pending: str | None = None  # a cancelling signal to raise at the next trap
    cpu_unflushed_ns: int = 0
    parked_call: tuple[int, str, str] | None = None  # (n, call, args digest) while parked
    call_started_ns: int = 0  # perf_counter_ns when the live call now in progress was trapped (0: none)

    def resume_with(self, value: Any = None, exc: BaseException | None = None) -> None:
        self.send_value, self.throw, self.runnable = value, exc, True
