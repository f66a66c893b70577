"""What agents import: every syscall as an async function of the same name.

    from agentos import sdk

    async def main(*argv):
        await sdk.write_console("hello\\n")
        await sdk.sleep(0.5)
        return 0

Each call yields one trap to the kernel, which schedules, journals and answers it. **The one
rule for agent code:** everything nondeterministic — time, randomness, the environment, files,
other processes, the network, models — must come through an ``sdk`` call, so that replaying
the journal reproduces the same run. ``print()`` goes to the agent's console through the
kernel. A TERM arrives as ``AgentCancelled`` (a BaseException) at the agent's current call.
"""

from __future__ import annotations

from typing import Any

from agentos.abi.traps import trap
from agentos.errors import AgentCancelled

__all__ = [
    "AgentCancelled",
    "continue_as_new",
    "exit",
    "getpid",
    "getppid",
    "kill",
    "monotonic",
    "ps",
    "random",
    "sched_yield",
    "sleep",
    "spawn",
    "time",
    "wait",
    "write_console",
]


async def getpid() -> int:
    return await trap("getpid", {})


async def getppid() -> int:
    return await trap("getppid", {})


async def spawn(target: str, *argv: str, name: str | None = None) -> int:
    """Start a child agent (``file.py``, ``file.py:func`` or ``module:func``); return its pid."""
    args: dict[str, Any] = {"target": target, "argv": list(argv)}
    if name is not None:
        args["name"] = name
    return await trap("spawn", args)


async def exit(status: int = 0) -> None:  # noqa: A001 - the syscall's name
    await trap("exit", {"status": status})


async def wait(pid: int = -1, *, nohang: bool = False, timeout: float | None = None) -> dict[str, Any] | None:
    """Reap a child that has exited (any child if pid is -1): ``{pid, status, signal, ...}``."""
    args: dict[str, Any] = {"pid": pid, "nohang": nohang}
    if timeout is not None:
        args["timeout"] = timeout
    return await trap("wait", args)


async def kill(pid: int, sig: str | int = "TERM") -> None:
    await trap("kill", {"pid": pid, "sig": sig})


async def sleep(seconds: float) -> None:
    await trap("sleep", {"seconds": float(seconds)})


async def sched_yield() -> None:
    await trap("sched_yield", {})


async def time() -> int:
    """Wall-clock nanoseconds since the epoch (UTC), recorded for replay."""
    return await trap("time", {})


async def monotonic() -> int:
    return await trap("monotonic", {})


async def random(n: int) -> bytes:
    """``n`` random bytes, recorded for replay."""
    return await trap("random", {"n": n})


async def write_console(data: str, *, stream: str = "stdout") -> None:
    await trap("write_console", {"data": data, "stream": stream})


async def ps(*, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
    return await trap("ps", {"all": all})


async def continue_as_new(*argv: str) -> None:
    """Restart this agent from a fresh journal with new arguments (keeps boot time bounded)."""
    await trap("continue_as_new", {"argv": list(argv)})
