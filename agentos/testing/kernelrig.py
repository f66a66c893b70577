"""An in-process kernel for tests: booted on a fresh home, with a session (the person, who holds
root) and agents, driven through ``Kernel.call`` as the runtimes drive it.

The file-system tests each add what they look at (history, /proc tables, watches ...) to this
one base: ``class Rig(KernelRig)``, and ``run_rig(Rig(tmp_path), body)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from agentos import param
from agentos.errors import AgentOSError
from agentos.kernel.boot import rebuild_state
from agentos.kernel.calls import Block, Caller
from agentos.kernel.kernel import Kernel
from agentos.state import events as ev
from agentos.state.world import state_hash
from agentos.store.home import Home

AGENT_SOURCE = "async def main(*argv):\n    return 0\n"
R = TypeVar("R", bound="KernelRig")


class KernelRig:
    request: str | None = None  # the person's request id (a session call's correlation names it)

    def __init__(self, root: Path, durability: str | None = None) -> None:
        self.root, self.durability = root, durability
        root.mkdir(parents=True, exist_ok=True)
        self.target = str(root / "agent.py")
        Path(self.target).write_text(AGENT_SOURCE)

    def boot(self) -> None:
        self.k = Kernel(Home(self.root / "home"), durability=self.durability)
        self.k.boot()
        self.k.start()
        pid = self.k.state.ledger.next_pid
        self.k.emit(ev.ProcSpawned(pid=pid, ppid=param.INIT_PID, name="person", kind="session"), pid)
        self.k.emit(ev.ProcStarted(pid=pid), pid)
        self.person = Caller(pid=pid, kind="session", request=self.request)

    def __call__(self, who: Caller, name: str, /, **args: Any) -> Any:
        return self.k.call(who, name, args).result

    def fails(self, who: Caller, code: str, name: str, /, **args: Any) -> AgentOSError:
        """The typed error the call raises, which must have ``code``."""
        try:
            self(who, name, **args)
        except AgentOSError as err:
            assert err.code == code, (name, args, err)
            return err
        raise AssertionError(f"{name}({args!r}) did not fail with {code}")

    def agent(self, **spawn: Any) -> Caller:
        return Caller(pid=self(self.person, "spawn", target=self.target, **spawn), kind="agent")

    def cat(self, path: str) -> bytes:
        fd = self(self.person, "open", path=path)
        data = self(self.person, "read", fd=fd, n=param.MAX_ARG_BYTES)
        self(self.person, "close", fd=fd)
        return bytes(data)

    def put(self, who: Caller, path: str, data: bytes, mode: int = 0o644) -> None:
        fd = self(who, "open", path=path, flags=["write", "create", "truncate"], mode=mode)
        self(who, "write", fd=fd, data=data)
        self(who, "close", fd=fd)

    async def call(self, who: Caller, name: str, /, **args: Any) -> Any:
        """One call as the runtime makes it: a parked call waits for its answer (or error)."""
        out = self.k.call(who, name, args)
        if not isinstance(out, Block):
            return out.result
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def reply(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        self.k.park(object(), who, out, reply)
        return await asyncio.wait_for(fut, 10)

    async def rebuilt_equals_live(self) -> None:
        """The state rebuilt from the log alone equals the live one."""
        await self.k.committer.durable(self.k.head_seq)
        live, seq = state_hash(self.k.state), self.k.state.seq
        assert state_hash(rebuild_state(self.k.log, until=seq, conn=self.k.reader)) == live

    async def verified(self) -> dict[str, Any]:
        """``agentos verify`` on this kernel: the chain, every snapshot and the live state agree."""
        report = await self.call(self.person, "verify")
        assert report["ok"], report
        return report


def run_rig(
    rig: R, body: Callable[[R], Awaitable[None] | None], *, check_rebuild: bool = False, verify: bool = True
) -> None:
    """Boot ``rig``, run ``body`` (sync or async) in the loop, ``agentos verify`` it (unless the body
    broke the kernel or asks not to), close the kernel (as a crash would)."""

    async def main() -> None:
        rig.boot()
        try:
            out = body(rig)
            if out is not None:
                await out
            if check_rebuild:
                await rig.rebuilt_equals_live()
            if verify and rig.k.fatal is None:
                await rig.verified()
        finally:
            await rig.k.close(clean=False)

    asyncio.run(main())
