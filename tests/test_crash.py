"""The headline durability test: kill -9 of a real kernel at random moments loses nothing.

A campaign boots a kernel on a fresh home, starts a syscall-heavy workload (agents looping over
``time``/``random``/``write_console``/``sleep``/``print`` and ``spawn`` + ``wait`` of children)
and, every round, lets a client thread hammer the socket (spawning and reaping short agents,
reading events and ``ps``) while recording every reply's ``seq`` — then kill -9s the kernel
at a random moment and checks, on the log file the dead kernel left behind and again after the
reboot:

* every event a client saw acknowledged is there (seq <= the highest acknowledged seq), with
  the digest the client was shown; every acknowledged spawn and wait is in the process table;
* the sequence is contiguous from 1 and the hash chain (and its signed head) verifies;
* the state rebuilt from the log alone hashes equal to the live kernel's ``state_hash`` taken
  at the same seq before the crash;
* agents resume: none faults or diverges, and at the end (TERM, which they catch) each exits
  0 with every expected console line exactly once, in order, and reports a digest of the
  random bytes it received that equals the digest of the ``random`` results in its journal;
* after a clean shutdown the snapshot the kernel wrote loads to the same state as a rebuild.

The seed is printed (``-s`` or on failure) and can be fixed with ``AGENTOS_CRASH_SEED``. About
one round in five kills the kernel right after boot, while agents are still being replayed
(never two such rounds in a row, so no agent is quarantined for the test's own kills).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentos.abi.frames import read_frame
from agentos.errors import AgentOSError, NetworkError, error_from_wire
from agentos.kernel.boot import load_state, rebuild_state, replay_into
from agentos.sdk.client import Client
from agentos.state.world import State, state_hash
from agentos.store.home import Home
from agentos.store.log import EventLog
from agentos.testing.kernelproc import KernelProcess

WORKLOAD = """
import hashlib

from agentos import sdk


async def child(tag, i):
    await sdk.write_console(f"{tag} child {i} start\\n")
    await sdk.sleep(0.005)
    await sdk.random(4)
    await sdk.write_console(f"{tag} child {i} end\\n")
    return int(i) % 7


async def main(tag):
    digest = hashlib.sha256()
    i, child_pid = 0, None
    try:
        while True:
            await sdk.time()
            digest.update(await sdk.random(8))
            await sdk.write_console(f"{tag} step {i}\\n")
            await sdk.sleep(0.02)
            if i % 4 == 0:
                child_pid = await sdk.spawn("work.py:child", tag, str(i))
                st = await sdk.wait(child_pid)
                child_pid = None
                await sdk.write_console(f"{tag} reaped {i} {st['status']}\\n")
            print(f"{tag} print {i}")
            i += 1
    except sdk.AgentCancelled:
        if child_pid is not None:
            await sdk.wait(child_pid)
        await sdk.write_console(f"{tag} stopped in step {i} digest {digest.hexdigest()}\\n")
        return 0
"""

QUICK = """
from agentos import sdk


async def main(n):
    await sdk.write_console(f"quick {n}\\n")
    return int(n) % 5
"""

AGENTS_PER_GENERATION = 3
ROUNDS_PER_GENERATION = 20


def step_lines(tag: str, i: int) -> list[str]:
    """The console lines one loop iteration of the workload agent prints, in order."""
    lines = [f"{tag} step {i}"]
    if i % 4 == 0:
        lines += [f"{tag} child {i} start", f"{tag} child {i} end", f"{tag} reaped {i} {i % 7}"]
    return [*lines, f"{tag} print {i}"]


class Session:
    """A socket session that keeps each reply's ``seq`` (``Client.call`` drops it)."""

    def __init__(self, home: Path, name: str) -> None:
        self.client = Client.connect(home, name, timeout=30)

    def call(self, call: str, **args: Any) -> tuple[Any, int | None]:
        req = self.client.send(call, **args)
        items: list[Any] = []
        while True:
            msg = read_frame(self.client.sock)
            if msg is None:
                raise NetworkError("the kernel closed the connection", code="ECONNRESET")
            if msg.get("id") not in (req, None):
                continue
            if "err" in msg:
                raise error_from_wire(msg["err"])
            if "more" in msg:
                items.append(msg["more"])
                continue
            result = msg.get("ok")
            if isinstance(result, list):
                result = items + result
            elif items:
                result = items
            return result, msg.get("seq")

    def close(self) -> None:
        self.client.close()


@dataclass
class Observed:
    """What clients were told during one kernel incarnation: all of it must survive kill -9."""

    max_seq: int = 0
    digests: dict[int, str] = field(default_factory=dict)  # seq -> digest shown by `events`
    spawned: dict[int, int] = field(default_factory=dict)  # quick agent pid -> its argument
    waited: dict[int, int] = field(default_factory=dict)  # quick agent pid -> status reported

    def ack(self, seq: int | None) -> None:
        if seq is not None:
            self.max_seq = max(self.max_seq, seq)


class Hammer(threading.Thread):
    """A client issuing calls as fast as it can until the kernel dies under it."""

    def __init__(self, home: Path, quick: str, first_n: int) -> None:
        super().__init__(name="crash-hammer", daemon=True)
        self.home, self.quick, self.n = home, quick, first_n
        self.seen = Observed()
        self.calls = 0
        self.error: Exception | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            s = Session(self.home, "hammer")
        except (OSError, AgentOSError):
            return
        since = 0
        try:
            while not self.stop.is_set():
                self.n += 1
                pid, seq = s.call("spawn", target=self.quick, argv=[str(self.n)])
                self.seen.ack(seq)
                self.seen.spawned[pid] = self.n
                st, seq = s.call("wait", pid=pid, timeout=10)
                self.seen.ack(seq)
                self.seen.waited[pid] = st["status"]
                rows, seq = s.call("events", since=max(since, self.seen.max_seq - 200), limit=500)
                self.seen.ack(seq)
                for e in rows or []:  # an empty streamed answer ends with ok=None
                    self.seen.digests[e["seq"]] = e["digest"]
                    since = max(since, e["seq"])
                _, seq = s.call("ps")
                self.seen.ack(seq)
                self.calls += 4
        except (OSError, AgentOSError):
            return  # the kernel was killed under us: what was acknowledged so far is what counts
        except Exception as exc:  # noqa: BLE001 - a bug in the client: reported by the campaign
            self.error = exc
        finally:
            s.close()


class Campaign:
    def __init__(self, home: Path, agents_dir: Path, seed: int, *, verify_every: int = 1) -> None:
        self.home = home
        self.seed = seed
        self.rng = random.Random(seed)
        self.k = KernelProcess(home)
        self.work = agents_dir / "work.py"
        self.work.write_text(WORKLOAD)
        self.quick = agents_dir / "quick.py"
        self.quick.write_text(QUICK)
        self.verify_every = verify_every
        self.round = 0
        self.generation = 0
        self.workload: dict[int, str] = {}  # pid -> tag
        self.pending = Observed()  # acknowledged in the last incarnation, not yet checked after reboot
        self.all_spawned: dict[int, int] = {}
        self.all_waited: dict[int, int] = {}
        self.quick_n = 0
        self.live: tuple[int, str] | None = None  # (seq, state hash) reported by the live kernel
        self.rebuilt = State()
        self.kills_during_replay = 0  # rounds that kill right after boot
        self.kills_mid_replay = 0  # kills that, as the log shows, interrupted a replay
        self.hammer_calls = 0

    def where(self) -> str:
        return f"[seed={self.seed} round={self.round} generation={self.generation}]"

    # -- the workload ------------------------------------------------------------------------

    def start_generation(self) -> None:
        self.generation += 1
        with self.k.client("setup") as c:
            self.workload = {
                c.call("spawn", target=str(self.work), argv=[tag]): tag
                for tag in (f"g{self.generation}a{j}" for j in range(AGENTS_PER_GENERATION))
            }

        def started(c: Client) -> bool:  # from now on, every boot resumes them by replay
            procs = {p["pid"]: p for p in c.call("ps")}
            return all(procs[pid]["state"] in ("ready", "blocked") for pid in self.workload)

        self.k.wait_for(started, timeout=30)

    def finish_generation(self) -> None:
        """TERM the workload (which it catches) and check every agent's console and journal."""
        with self.k.client("finish") as c:
            for pid in self.workload:
                c.call("kill", pid=pid, sig="TERM")
            for pid, tag in self.workload.items():
                st = c.call("wait", pid=pid, timeout=30)
                out = "".join(i["data"] for i in c.stream("logs", pid=pid))
                assert (st["status"], st["fault"]) == (0, None), f"{self.where()} {tag}: {st}\n{out[-2000:]}"
                reported = self._check_console(tag, out)
                journal = list(c.stream("events", pid=pid, kind="sys.done", limit=100_000))
                self._check_journal(tag, journal, reported)

    def _check_console(self, tag: str, out: str) -> str:
        lines = out.splitlines()
        m = re.fullmatch(rf"{tag} stopped in step (\d+) digest ([0-9a-f]{{64}})", lines[-1] if lines else "")
        assert m, f"{self.where()} {tag}: no final line:\n{out[-2000:]}"
        steps = int(m[1])
        expected = [line for i in range(steps) for line in step_lines(tag, i)]
        got = lines[: len(expected)]
        if got != expected:
            padded = got + [""] * (len(expected) - len(got))
            bad = next(i for i, (a, b) in enumerate(zip(padded, expected, strict=True)) if a != b)
            pytest.fail(
                f"{self.where()} {tag}: console differs at line {bad}: "
                f"got {lines[max(0, bad - 3) : bad + 3]}, expected {expected[max(0, bad - 3) : bad + 3]}"
            )
        partial = lines[len(expected) : -1]
        full = step_lines(tag, steps)
        assert len(partial) < len(full) and partial == full[: len(partial)], (
            f"{self.where()} {tag}: the interrupted step {steps} printed {partial}"
        )
        assert steps > 0, f"{self.where()} {tag} never ran"
        return m[2]

    def _check_journal(self, tag: str, journal: list[dict[str, Any]], reported: str) -> None:
        calls = [e["payload"] for e in journal]
        numbers = [(p["epoch"], p["n"]) for p in calls]
        assert len(numbers) == len(set(numbers)), f"{self.where()} {tag}: a call was journaled twice"
        randoms = sorted(
            (p["n"], base64.b64decode(p["result"]))
            for p in calls
            if p["call"] == "random" and not p.get("cancelled")
        )
        digest = hashlib.sha256(b"".join(data for _, data in randoms)).hexdigest()
        assert digest == reported, (
            f"{self.where()} {tag}: the agent saw other random bytes than its journal holds"
        )

    # -- one round ---------------------------------------------------------------------------

    def run_round(self, *, during_replay: bool) -> None:
        self.round += 1
        head_before = self._head()
        self.k.boot()
        if during_replay:
            self.kills_during_replay += 1
            delay = self.rng.uniform(0.0, 0.03)
        else:
            self.wait_replayed(since=head_before)
            self.check_live(full_verify=self.round % self.verify_every == 0)
            delay = self.rng.uniform(0.02, 0.6)
        hammer = Hammer(self.home, str(self.quick), self.quick_n)
        hammer.start()
        time.sleep(delay)
        self.k.kill9()
        hammer.stop.set()
        hammer.join(30)
        assert not hammer.is_alive(), f"{self.where()} the client hangs on a dead kernel"
        assert hammer.error is None, f"{self.where()} the client failed: {hammer.error!r}"
        self.quick_n = hammer.n
        self.hammer_calls += hammer.calls
        self._merge(hammer.seen)
        self.check_file(full_verify=self.round % self.verify_every == 0, booted_after=head_before)

    def _merge(self, seen: Observed) -> None:
        self.pending.ack(seen.max_seq)
        self.pending.digests.update(seen.digests)
        self.pending.spawned.update(seen.spawned)
        self.pending.waited.update(seen.waited)

    def _head(self) -> int:
        if not (self.home / "log.db").exists():
            return 0
        log = EventLog(self.home / "log.db", hmac_key=Home(self.home).hmac_key())
        try:
            return log.head()[0]
        finally:
            log.close()

    def wait_replayed(self, since: int) -> None:
        """Until every agent resumed at this boot has finished replaying its journal."""

        def done(c: Client) -> bool:
            started = {
                e["payload"]["pid"] for e in c.stream("events", since=since, kind="proc.resume_started")
            }
            resumed = {e["payload"]["pid"] for e in c.stream("events", since=since, kind="proc.resumed")}
            return set(self.workload) <= started <= resumed  # the workload is always resumed

        self.k.wait_for(done, timeout=30, interval=0.01)

    # -- checks ------------------------------------------------------------------------------

    def check_live(self, *, full_verify: bool) -> None:
        """After a reboot: what was acknowledged before the crash is there; agents still run."""
        w = self.where()
        with self.k.client("checker") as c:
            st = c.call("status")
            assert st["seq"] >= self.pending.max_seq, (
                f"{w} head {st['seq']} < acknowledged {self.pending.max_seq}"
            )
            if full_verify:
                v = c.call("verify")
                assert v["ok"], f"{w} {v}"
            procs = {p["pid"]: p for p in c.call("ps", all=True)}
            for pid, n in self.pending.spawned.items():
                row = procs.get(pid, {})
                assert row.get("argv") == [str(n)], (
                    f"{w} acknowledged spawn of quick {n} as {pid} lost: {row}"
                )
            for pid, status in self.pending.waited.items():
                row = procs[pid]
                assert (row["state"], row["status"]) == ("dead", status), f"{w} acknowledged wait lost: {row}"
            for pid, tag in self.workload.items():
                row = procs.get(pid, {})
                assert row.get("argv") == [tag], f"{w} acknowledged spawn of {tag} as {pid} lost: {row}"
                assert row["state"] in ("ready", "blocked"), f"{w} workload agent {tag} is {row}"
            self.all_spawned.update(self.pending.spawned)
            self.all_waited.update(self.pending.waited)
            self.pending = Observed(max_seq=self.pending.max_seq, digests=self.pending.digests)
            h = c.call("state_hash")
            self.live = (h["seq"], h["hash"])

    def check_file(self, *, full_verify: bool, booted_after: int | None = None) -> None:
        """On the log the killed kernel left: contiguous, chained, holding all it acknowledged."""
        w = self.where()
        log = EventLog(self.home / "log.db", hmac_key=Home(self.home).hmac_key())
        try:
            if booted_after is not None:  # did this kill land while some agent was still replaying?
                kinds = ("proc.resume_started", "proc.resumed")
                marks = [r.kind for r in log.read(booted_after, kinds=kinds)]
                if marks.count("proc.resume_started") > marks.count("proc.resumed"):
                    self.kills_mid_replay += 1
            head, _ = log.head()
            assert log.count() == head, f"{w} the log has a gap: {log.count()} events, head {head}"
            assert next(log.read(0, limit=1)).seq == 1
            assert head >= self.pending.max_seq, f"{w} acknowledged seq {self.pending.max_seq} > head {head}"
            if full_verify:
                ok, detail = log.verify_chain()
                assert ok, f"{w} {detail}"
            if self.pending.digests:
                lo, hi = min(self.pending.digests), max(self.pending.digests)
                for r in log.read(lo - 1, until=hi):
                    shown = self.pending.digests.get(r.seq)
                    assert shown is None or shown == r.digest.hex(), (
                        f"{w} event {r.seq} changed after kill -9"
                    )
                self.pending.digests = {}
            if self.live is not None:
                seq, live_hash = self.live
                replay_into(self.rebuilt, log, self.rebuilt.seq, until=seq)
                assert self.rebuilt.seq == seq
                assert state_hash(self.rebuilt) == live_hash, (
                    f"{w} rebuild at {seq} differs from the live state"
                )
                self.live = None
        finally:
            log.close()

    def check_quick_agents(self) -> None:
        """Every acknowledged short agent ran to its end exactly once, resumed or not."""

        def settled(c: Client) -> dict[int, dict[str, Any]] | None:
            procs = {p["pid"]: p for p in c.call("ps", all=True)}
            alive = [pid for pid in self.all_spawned if procs[pid]["state"] not in ("zombie", "dead")]
            return None if alive else procs

        procs = self.k.wait_for(settled, timeout=30)
        for pid, n in self.all_spawned.items():
            assert procs[pid]["status"] == n % 5, f"{self.where()} quick agent {pid}: {procs[pid]}"
        with self.k.client("quick") as c:
            for pid, n in list(self.all_spawned.items())[:: max(1, len(self.all_spawned) // 20)]:
                out = "".join(i["data"] for i in c.stream("logs", pid=pid))
                assert out == f"quick {n}\n", f"{self.where()} quick agent {pid} printed {out!r}"

    def final_checks(self) -> None:
        """After a clean shutdown: rebuild == live state == the snapshot the kernel wrote."""
        with self.k.client("final") as c:
            h = c.call("state_hash")
        self.k.shutdown()
        log = EventLog(self.home / "log.db", hmac_key=Home(self.home).hmac_key())
        try:
            ok, detail = log.verify_chain()
            assert ok, f"{self.where()} {detail}"
            assert state_hash(rebuild_state(log, until=h["seq"])) == h["hash"]
            head, _ = log.head()
            from_log = rebuild_state(log)
            assert from_log.seq == head
            loaded, snapshot_seq = load_state(log)
            # The shutdown's snapshot is at (or, after the last sessions' exits, just below) the head.
            assert 0 < snapshot_seq <= head and head - snapshot_seq < 10, (snapshot_seq, head)
            assert state_hash(loaded) == state_hash(from_log)
        finally:
            log.close()


def run_campaign(home: Path, agents_dir: Path, rounds: int, *, verify_every: int = 1) -> Campaign:
    seed = int(os.environ.get("AGENTOS_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash campaign seed: {seed} (set AGENTOS_CRASH_SEED={seed} to repeat)")
    c = Campaign(home, agents_dir, seed, verify_every=verify_every)
    try:
        _campaign(c, rounds)
    finally:  # a failed check leaves no kernel running behind the test
        if c.k.os_pid is not None:
            c.k.kill9()
    return c


def _campaign(c: Campaign, rounds: int) -> None:
    c.k.boot()
    c.start_generation()
    c.k.kill9()
    while c.round < rounds:
        todo = min(ROUNDS_PER_GENERATION, rounds - c.round)
        # about one kill in five lands while agents replay; never two in a row (quarantine)
        odd = range(1, todo, 2)
        early = set(c.rng.sample(odd, k=min(len(odd), max(1, todo // 5))))
        for i in range(todo):
            c.run_round(during_replay=i in early)
        head_before = c._head()
        c.k.boot()
        c.wait_replayed(since=head_before)
        c.check_live(full_verify=True)
        c.finish_generation()
        c.check_quick_agents()
        if c.round < rounds:
            c.start_generation()
            c.k.kill9()
            c.check_file(full_verify=False)
    c.final_checks()


def test_kill_9_at_random_moments_loses_no_acknowledged_event(home: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    c = run_campaign(home, tmp_path, ROUNDS_PER_GENERATION)
    assert c.round == ROUNDS_PER_GENERATION and c.kills_during_replay >= 1
    assert c.hammer_calls > 0 and len(c.all_spawned) > 0, "the client never got a reply in"
    print(
        f"{c.round} kills ({c.kills_mid_replay} mid-replay), {c.hammer_calls} client calls, "
        f"{len(c.all_spawned)} client spawns, {time.monotonic() - t0:.1f}s"
    )


@pytest.mark.soak
@pytest.mark.timeout(6 * 3600)
@pytest.mark.parametrize("rounds", [1000])
def test_kill_9_soak(home: Path, tmp_path: Path, rounds: int) -> None:
    c = run_campaign(home, tmp_path, rounds, verify_every=25)
    assert c.round == rounds
