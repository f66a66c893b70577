"""A real kernel in its own OS process, for tests and the demo: boot, talk, kill -9, reboot."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from agentos.errors import AgentOSError
from agentos.sdk.client import Client
from agentos.user.boot import boot_detached


class KernelProcess:
    def __init__(self, home: Path, *, durability: str | None = None) -> None:
        self.home = Path(home)
        self.durability = durability
        self.os_pid: int | None = None

    def boot(self, *, resume: bool = True) -> KernelProcess:
        self.os_pid = boot_detached(self.home, durability=self.durability, resume=resume)
        return self

    def client(self, name: str = "test") -> Client:
        return Client.connect(self.home, name)

    def call(self, call: str, **args: Any) -> Any:
        with self.client() as c:
            return c.call(call, **args)

    def kill9(self) -> None:
        """kill -9 the kernel and wait until the OS has reaped it."""
        assert self.os_pid is not None
        os.kill(self.os_pid, signal.SIGKILL)
        self._wait_gone()

    def shutdown(self, *, kill: bool = False) -> None:
        if self.os_pid is None:
            return
        try:
            self.call("shutdown", kill=kill)
        except AgentOSError:
            pass
        self._wait_gone()

    def _wait_gone(self, timeout: float = 30) -> None:
        assert self.os_pid is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.os_pid, os.WNOHANG)
                if pid == self.os_pid:
                    break
            except ChildProcessError:  # not our child (re-exec keeps the pid, so it usually is)
                if not os.path.exists(f"/proc/{self.os_pid}"):
                    break
            time.sleep(0.01)
        else:
            raise TimeoutError(f"kernel {self.os_pid} did not exit within {timeout}s")
        self.os_pid = None

    def wait_for(self, predicate: Any, timeout: float = 20, interval: float = 0.02) -> Any:
        """Poll ``predicate(client)`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                value = predicate(c)
                if value:
                    return value
                if time.monotonic() > deadline:
                    raise TimeoutError("condition not reached in time")
                time.sleep(interval)

    def proc(self, c: Client, pid: int) -> dict[str, Any]:
        return next(p for p in c.call("ps", all=True) if p["pid"] == pid)
