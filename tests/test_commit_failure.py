"""A failed commit stops the kernel: live state is ahead of the log and must not be served.

One test in process (a store whose commits fail), one with a real full disk: a kernel whose
home lies on a 2 MiB tmpfs runs an agent until SQLite gets ENOSPC; the kernel must exit, no
reply for the failed events may have left, and the log must still verify.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from agentos.errors import AgentOSError, InternalError, NetworkError
from agentos.kernel.kernel import Kernel
from agentos.sdk.client import Client
from agentos.state import events as ev
from agentos.store.home import Home
from agentos.store.log import EventLog, StoreError


def test_a_failed_commit_stops_the_kernel_and_releases_nothing(tmp_path: Path) -> None:
    async def scenario() -> int:
        k = Kernel(Home(tmp_path / "home"))
        k.boot()
        k.start()
        await k.committer.durable(k.head_seq)
        committed = k.committer.durable_seq

        def broken(*_: object) -> None:
            raise StoreError("disk on fire")

        k.log.write_events = broken  # type: ignore[method-assign]
        seq = k.emit(ev.CpuCharged(pid=1, ns=1))
        with pytest.raises(StoreError):
            await k.committer.durable(seq)  # whoever waited to send an output gets an error, not a go
        assert k.shutdown_requested.is_set() and k.fatal is not None
        assert k.committer.durable_seq == committed  # nothing was declared durable
        with pytest.raises(InternalError) as info:
            k.emit(ev.CpuCharged(pid=1, ns=2))  # no state change after the failure
        assert info.value.code == "ESTORE"
        await k.close(clean=False)
        return committed

    committed = asyncio.run(scenario())
    log = EventLog(tmp_path / "home" / "log.db", hmac_key=Home(tmp_path / "home").hmac_key())
    try:  # the failed transaction was rolled back whole: the log ends at the last durable event
        assert log.head()[0] == committed
        assert log.verify_chain()[0]
    finally:
        log.close()


FILLER = """
from agentos import sdk

async def main():
    i = 0
    while True:
        i += 1
        await sdk.write_console(("x" * 4000) + str(i))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_a_full_disk_stops_the_kernel_with_the_log_intact() -> None:
    with tempfile.TemporaryDirectory(prefix="aos-") as d:
        mnt = Path(d) / "small"
        mnt.mkdir()
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc}")
        try:
            home = mnt / "home"
            agent = Path(d) / "filler.py"
            agent.write_text(FILLER)
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            kernel = subprocess.Popen(
                ["python3", "-m", "agentos.runtime", "--home", str(home)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            client = None
            deadline = time.monotonic() + 20
            while client is None:
                try:
                    client = Client.connect(home, "test")
                except AgentOSError:
                    assert time.monotonic() < deadline, "the kernel did not start"
                    time.sleep(0.05)
            client.call("spawn", target=str(agent))
            assert kernel.wait(timeout=60) == 70  # EX_SOFTWARE: stopped on a failed commit
            with pytest.raises(NetworkError):  # no reply leaves a kernel whose log failed
                client.call("getpid")
            client.close()
            log = EventLog(home / "log.db", hmac_key=(home / "hmac.key").read_bytes())
            try:
                ok, detail = log.verify_chain()
                assert ok, detail  # whatever was committed is intact and still signed
            finally:
                log.close()
            assert kernel.stderr is not None and b"commit failed" in kernel.stderr.read()
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
