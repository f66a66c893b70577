"""kill -9 of a real kernel during file writes loses no acknowledged write and duplicates none.

A real kernel process (``KernelProcess``) runs an in-kernel SDK agent that appends numbered records
to a file, fsyncs now and then, and every few records closes it, renames it to a numbered segment
and opens a new one; it prints each record's number on its console once the write returned (so a
console line is the acknowledgement). Each round a socket client does the same over its own
session, remembering every write the kernel answered. Then the kernel is kill -9'd at a random
moment (about one round in five right after boot, while the agent is still being replayed), and
after the reboot:

* the client's files hold exactly the records it was answered for, in order, plus at most the one
  it sent and never heard back about; its renames landed or not, whole;
* with the agent stopped (SIGSTOP), its files hold records 0..m-1 exactly — none lost, none twice
  (a replayed write is answered from the journal, not redone) — where m is its last console
  number plus one or two (killed between a write and its console line);
* ``verify`` passes, and the state rebuilt from the log the dead kernel left equals the state the
  live kernel reported at the same seq.

At the end the agent is stopped with TERM, closes its file and reports its count: its files then
hold records 0..count-1 exactly. The seed is printed; ``AGENTOS_VFS_CRASH_SEED`` repeats it.
"""

from __future__ import annotations

import inspect
import os
import random
import threading
import time
from pathlib import Path

import pytest
from test_crash import Session

from agentos.errors import AgentOSError
from agentos.kernel.boot import rebuild_state
from agentos.param import MAX_ARG_BYTES
from agentos.sdk.client import Client
from agentos.state.world import state_hash
from agentos.store.home import Home
from agentos.store.log import EventLog
from agentos.testing.kernelproc import KernelProcess

DIR = "/shared/vc"
SEGMENT = 10  # records per file before it is closed and renamed


def record(tag: str, i: int) -> str:
    """Record ``i`` of writer ``tag``: its number, then padding (every 25th spans several chunks)."""
    pad = 50_000 if i % 25 == 24 else i % 37
    return f"{tag} {i} " + "z" * pad + "\n"


AGENT = f"""
from agentos import sdk

DIR, SEGMENT = {DIR!r}, {SEGMENT}

{inspect.getsource(record)}

async def main(tag):
    cur = f"{{DIR}}/{{tag}}.cur"
    fd = await sdk.open(cur, ["write", "create", "append"])
    i = 0
    try:
        while True:
            await sdk.write(fd, record(tag, i).encode())
            await sdk.write_console(f"{{i}}\\n")
            i += 1
            if i % SEGMENT == 0:
                await sdk.close(fd)
                await sdk.rename(cur, f"{{DIR}}/{{tag}}.{{i // SEGMENT - 1:04d}}")
                fd = await sdk.open(cur, ["write", "create", "append"])
            elif i % 4 == 0:
                await sdk.fsync(fd)
            await sdk.sleep(0.004)
    except sdk.AgentCancelled:
        await sdk.close(fd)
        await sdk.write_console(f"done {{i}}\\n")
        return 0
"""


def cat(c: Client, path: str) -> bytes:
    fd = c.call("open", path=path)
    data = b""
    while piece := c.call("read", fd=fd, n=MAX_ARG_BYTES):
        data += piece
    c.call("close", fd=fd)
    return data


def records_of(c: Client, tag: str) -> list[str]:
    """Writer ``tag``'s records, as its files hold them: its numbered segments in order, then ``.cur``."""
    names = [n for n in c.call("readdir", path=DIR) if n.startswith(f"{tag}.")]
    segments = sorted(n for n in names if n != f"{tag}.cur")
    ordered = segments + ([f"{tag}.cur"] if f"{tag}.cur" in names else [])
    text = b"".join(cat(c, f"{DIR}/{n}") for n in ordered).decode()
    return text.splitlines(keepends=True)


class Writer(threading.Thread):
    """A socket client writing records until the kernel dies under it; what it was told is kept."""

    def __init__(self, home: Path, tag: str) -> None:
        super().__init__(name=f"vfs-writer-{tag}", daemon=True)
        self.home, self.tag = home, tag
        self.acked: list[str] = []  # records whose write was answered, in order
        self.in_flight: str | None = None  # a record sent with no answer yet
        self.error: Exception | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        cur = f"{DIR}/{self.tag}.cur"
        try:
            s = Session(self.home, self.tag)
        except (OSError, AgentOSError):
            return
        try:
            fd, _ = s.call("open", path=cur, flags=["write", "create", "append"])
            while not self.stop.is_set():
                i = len(self.acked)
                self.in_flight = record(self.tag, i)
                s.call("write", fd=fd, data=self.in_flight.encode())
                self.acked.append(self.in_flight)
                self.in_flight = None
                if (i + 1) % SEGMENT == 0:
                    s.call("close", fd=fd)
                    s.call("rename", src=cur, dst=f"{DIR}/{self.tag}.{i // SEGMENT:04d}")
                    fd, _ = s.call("open", path=cur, flags=["write", "create", "append"])
                elif (i + 1) % 4 == 0:
                    s.call("fsync", fd=fd)
        except (OSError, AgentOSError):
            return  # killed under us: what was answered so far is what counts
        except Exception as exc:  # noqa: BLE001 - a bug in the client: reported by the test
            self.error = exc
        finally:
            s.close()


class Campaign:
    def __init__(self, home: Path, agents: Path, seed: int) -> None:
        self.k = KernelProcess(home)
        self.home, self.seed, self.rng = home, seed, random.Random(seed)
        self.target = agents / "vfs_writer.py"
        self.target.write_text(AGENT)
        self.pid = 0
        self.round = 0
        self.writers: list[Writer] = []  # each round's client, checked after the next boot
        self.live: tuple[int, str] | None = None  # (seq, state hash) the live kernel reported
        self.client_writes = 0  # acknowledged, over all rounds

    def where(self) -> str:
        return f"[seed={self.seed} round={self.round}]"

    def head(self) -> int:
        log = EventLog(self.home / "log.db", hmac_key=Home(self.home).hmac_key())
        try:
            return log.head()[0]
        finally:
            log.close()

    def console(self, c: Client) -> list[str]:
        return "".join(item["data"] for item in c.stream("logs", pid=self.pid)).splitlines()

    def start(self) -> None:
        self.k.boot()
        with self.k.client("setup") as c:
            c.call("mkdir", path=DIR)
            self.pid = int(c.call("spawn", target=str(self.target), argv=["agent"]))
        self.k.wait_for(lambda c: len(self.console(c)) >= 3)

    def wait_resumed(self, since: int) -> None:
        def resumed(c: Client) -> bool:
            done = {e["payload"]["pid"] for e in c.stream("events", since=since, kind="proc.resumed")}
            return self.pid in done

        self.k.wait_for(resumed, timeout=30, interval=0.01)

    def one_round(self, *, during_replay: bool) -> None:
        self.round += 1
        head = self.head()
        self.k.boot()
        if not during_replay:
            self.wait_resumed(since=head)
            self.check()
        writer = Writer(self.home, f"c{self.round}")
        writer.start()
        time.sleep(self.rng.uniform(0.0, 0.03) if during_replay else self.rng.uniform(0.05, 0.8))
        self.k.kill9()
        writer.stop.set()
        writer.join(30)
        assert not writer.is_alive(), f"{self.where()} the client hangs on a dead kernel"
        assert writer.error is None, f"{self.where()} the client failed: {writer.error!r}"
        self.writers.append(writer)
        self.client_writes += len(writer.acked)
        self.check_log()

    def check(self) -> None:
        """On the rebooted kernel: every client's acknowledged writes, the agent's records, verify."""
        w = self.where()
        with self.k.client("checker") as c:
            for writer in self.writers:
                got = records_of(c, writer.tag)
                extra = [writer.in_flight] if writer.in_flight is not None else []
                assert got in (writer.acked, writer.acked + extra), (
                    f"{w} client {writer.tag}: {len(writer.acked)} acknowledged writes, the files hold "
                    f"{len(got)} records; first difference at {first_difference(got, writer.acked)}"
                )
            self.writers = []
            c.call("kill", pid=self.pid, sig="STOP")
            try:
                numbers = [int(line) for line in self.console(c)]
                assert numbers == list(range(len(numbers))), f"{w} console lines lost or repeated"
                got = records_of(c, "agent")
                want = [record("agent", i) for i in range(len(got))]
                assert got == want, f"{w} agent: records differ at {first_difference(got, want)}"
                assert len(numbers) <= len(got) <= len(numbers) + 1, (
                    f"{w} agent: {len(numbers)} acknowledged on its console, {len(got)} in its files"
                )
                v = c.call("verify")
                assert v["ok"], f"{w} {v}"
                h = c.call("state_hash")
                self.live = (h["seq"], h["hash"])
            finally:
                c.call("kill", pid=self.pid, sig="CONT")

    def check_log(self) -> None:
        """On the log the killed kernel left: the state rebuilt from it equals the live one's."""
        if self.live is None:
            return
        seq, live_hash = self.live
        log = EventLog(self.home / "log.db", hmac_key=Home(self.home).hmac_key())
        try:
            assert state_hash(rebuild_state(log, until=seq)) == live_hash, (
                f"{self.where()} the state rebuilt at {seq} differs from the live one"
            )
        finally:
            log.close()
        self.live = None

    def finish(self) -> None:
        head = self.head()
        self.k.boot()
        self.wait_resumed(since=head)
        self.check()
        with self.k.client("finish") as c:
            c.call("kill", pid=self.pid, sig="TERM")
            st = c.call("wait", pid=self.pid, timeout=30)
            lines = self.console(c)
            assert (st["status"], st["fault"]) == (0, None), f"{self.where()} {st} {lines[-5:]}"
            count = int(lines[-1].removeprefix("done "))
            assert lines[:-1] == [str(i) for i in range(count)]
            assert records_of(c, "agent") == [record("agent", i) for i in range(count)]
            assert "agent.cur" in c.call("readdir", path=DIR), "closed at exit, not removed"
        self.k.shutdown()
        print(f"{self.round} kills: {self.client_writes} client writes, {count} agent records")


def first_difference(got: list[str], want: list[str]) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"record {i}: {a[:40]!r} != {b[:40]!r}"
    return f"record {min(len(got), len(want))} (one list ends)"


def run_campaign(home: Path, agents: Path, kills: int) -> Campaign:
    seed = int(os.environ.get("AGENTOS_VFS_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"vfs crash seed: {seed} (AGENTOS_VFS_CRASH_SEED={seed} repeats it)")
    c = Campaign(home, agents, seed)
    try:
        c.start()
        c.k.kill9()
        early = set(c.rng.sample(range(1, kills, 2), k=max(1, kills // 5))) if kills > 1 else set()
        for i in range(kills):
            c.one_round(during_replay=i in early)  # never two in a row: no quarantine for our kills
        c.finish()
    finally:
        if c.k.os_pid is not None:
            c.k.kill9()
    return c


def test_kill_9_during_writes_loses_no_acknowledged_write(home: Path, tmp_path: Path) -> None:
    c = run_campaign(home, tmp_path, kills=5)
    assert c.round == 5 and c.client_writes > 0, "the client never got a write in"


@pytest.mark.soak
@pytest.mark.timeout(4 * 3600)
def test_kill_9_during_writes_soak(home: Path, tmp_path: Path) -> None:
    kills = int(os.environ.get("AGENTOS_VFS_CRASH_KILLS", "300"))
    assert run_campaign(home, tmp_path, kills=kills).round == kills
