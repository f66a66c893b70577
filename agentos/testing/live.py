"""A kernel shared by a test module, and the health check to run after each hostile client.

``assert_serving`` proves the kernel survived whatever was thrown at it: the same OS process
still serves, the hash chain verifies, and the state rebuilt from the log up to the sequence
seen before is unchanged (nothing committed was lost or altered).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentos.kernel.boot import rebuild_state
from agentos.state.world import state_hash
from agentos.store.log import EventLog
from agentos.testing.kernelproc import KernelProcess


class LiveKernel:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.kp = KernelProcess(home).boot()
        self.os_pid = self.kp.os_pid

    def alive(self) -> bool:
        """The kernel's OS process exists and is not a zombie."""
        try:
            with open(f"/proc/{self.os_pid}/stat") as f:
                return f.read().split(") ")[-1][:1] != "Z"
        except OSError:
            return False

    def snapshot(self) -> dict[str, Any]:
        with self.kp.client() as c:
            return c.call("state_hash")

    def assert_serving(self, before: dict[str, Any]) -> None:
        assert self.alive(), "the kernel died"
        with self.kp.client() as c:
            status = c.call("status")
            assert status["os_pid"] == self.os_pid and status["boot"] == 1
            assert status["seq"] >= before["seq"]
            verified = c.call("verify")
            assert verified["ok"], verified
            assert int(verified["detail"].split()[0]) >= before["seq"]
        log = EventLog(self.home / "log.db")
        try:  # nothing committed before the bad client was lost or changed
            assert state_hash(rebuild_state(log, until=before["seq"])) == before["hash"]
        finally:
            log.close()

    def assert_clean_log(self) -> None:
        text = (self.home / "kernel.log").read_text()
        assert "Traceback" not in text and "internal error" not in text, text[-4000:]


@contextlib.contextmanager
def live_kernel(cls: type[LiveKernel] = LiveKernel) -> Iterator[Any]:
    """A LiveKernel (or subclass) on a fresh home; shut down cleanly at the end, kill -9 on failure."""
    with tempfile.TemporaryDirectory(prefix="aos-") as d:
        lv = cls(Path(d) / "home")
        try:
            yield lv
            assert lv.alive()
            lv.kp.shutdown()  # shutdown is exercised last, for real
            lv.assert_clean_log()
        finally:
            if lv.kp.os_pid is not None:
                lv.kp.kill9()
