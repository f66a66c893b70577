"""``agentos verify``: the hash chain, then the state rebuilt from the log alone against every stored
snapshot and the live state, through the kernel or — with none serving — on the log opened read-only.

A snapshot whose state was altered (and correctly signed) is a divergence that names what differs
and the first event that changed it; an edited event row breaks the chain at its seq; the exit
status says which.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw

from agentos.kernel.boot import rebuild_state
from agentos.kernel.calls import Block
from agentos.state.snapshot import to_pieces
from agentos.state.world import PROJECTION_VERSION, State
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig
from tests.conftest import EXAMPLES


def agentos_verify(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentos", "verify", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def report_of(home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = agentos_verify(home, "--json", *args)
    return done.returncode, json.loads(done.stdout)


async def forge_snapshot(rig: KernelRig, alter: Any) -> int:
    """A snapshot at the head whose state ``alter`` changed, written and signed as the kernel does."""
    k = rig.k
    seq = k.head_seq
    await k.committer.durable(seq)
    state = rebuild_state(k.log, until=seq, conn=k.reader)  # on the live branch's lineage
    state.world.branch = k.state.world.branch
    alter(state)
    digest = next(k.log.read(seq - 1, until=seq, conn=k.reader)).digest
    manifest, pieces = to_pieces(state, digest)
    await k.committer.write(
        k.log.write_snapshot, state.world.branch, seq, PROJECTION_VERSION, manifest, pieces
    )
    return seq


def spawn_seq(rig: KernelRig, pid: int) -> int:
    spawned = rig.k.log.read(0, kinds=["proc.spawned"], conn=rig.k.reader)
    return next(r.seq for r in spawned if json.loads(r.payload)["pid"] == pid)


def test_a_clean_home_verifies_against_its_snapshots_and_live_state(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def body(rig: KernelRig) -> None:
        for i in range(3):  # a snapshot after each round
            rig.agent()
            rig.put(rig.person, f"/f{i}", b"x" * i)
            await rig.k.snapshot()
        assert isinstance(rig.k.call(rig.person, "verify", {}), Block), "it runs off the loop thread"
        seen.update(await rig.call(rig.person, "verify"))
        seen["head"] = rig.k.state.seq

    run_rig(KernelRig(tmp_path), body)
    assert seen["ok"] is True and seen["mode"] == "kernel" and seen["problems"] == []
    assert seen["events"] >= seen["head"] and seen["replayed"] >= seen["events"]
    assert seen["snapshots"]["compared"] >= 3 and seen["snapshots"]["agreed"] == seen["snapshots"]["compared"]
    assert seen["live"]["hash"] == seen["live"]["rebuilt"] and seen["live"]["seq"] == seen["head"]
    assert seen["divergence"] is None and seen["detail"] == f"{seen['events']} events verified"


def test_a_forged_snapshot_names_what_differs_and_the_first_event_that_changed_it(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def body(rig: KernelRig) -> None:
        rig.put(rig.person, "/a", b"one")
        seen["agreed"] = await rig.k.snapshot()  # a good snapshot: the rebuild agrees here
        born = rig.agent()  # born after it
        rig.put(rig.person, "/b", b"two")

        def rename(state: State) -> None:
            state.world.procs.procs[born.pid].name = "forged"

        seen["seq"] = await forge_snapshot(rig, rename)
        seen["pid"], seen["spawned"] = born.pid, spawn_seq(rig, born.pid)
        seen["report"] = await rig.call(rig.person, "verify")

    run_rig(KernelRig(tmp_path), body, verify=False)
    r = seen["report"]
    assert r["ok"] is False and r["chain"]["ok"] is True, "the chain holds: only the cache lies"
    d = r["divergence"]
    assert (d["what"], d["seq"], d["agreed_seq"]) == ("snapshot", seen["seq"], seen["agreed"])
    assert [i["item"] for i in d["differs"]] == [f"process {seen['pid']}"]
    assert d["event"]["seq"] == seen["spawned"] and d["event"]["kind"] == "proc.spawned"
    assert d["event"]["touched"] == [f"process {seen['pid']}"]
    assert r["live"]["hash"] == r["live"]["rebuilt"], "the live state still equals the log's"

    # the same, from the command line with the kernel gone: exit 1 and the event named
    home = tmp_path / "home"
    out = agentos_verify(home)
    assert out.returncode == 1 and out.stdout.startswith("FAILED: "), out
    assert f"differs: process {seen['pid']}" in out.stdout
    assert f"first differing event: seq {seen['spawned']} proc.spawned" in out.stdout
    assert f"they last agreed at seq {seen['agreed']}" in out.stdout
    assert "no kernel serves" in out.stdout


def test_a_change_no_event_made_is_reported_as_such(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def body(rig: KernelRig) -> None:
        seen["agreed"] = await rig.k.snapshot()
        rig.put(rig.person, "/a", b"one")

        def more_boots(state: State) -> None:
            state.ledger.boots += 5  # only kernel.booted changes it, and none came after the snapshot

        seen["seq"] = await forge_snapshot(rig, more_boots)
        seen["report"] = await rig.call(rig.person, "verify")

    run_rig(KernelRig(tmp_path), body, verify=False)
    d = seen["report"]["divergence"]
    assert [i["item"] for i in d["differs"]] == ["ledger.boots"]
    assert (d["seq"], d["agreed_seq"], d["event"]) == (seen["seq"], seen["agreed"], None)
    out = agentos_verify(tmp_path / "home")
    assert out.returncode == 1 and "differs: ledger.boots" in out.stdout
    assert f"no event between seq {seen['agreed']} and seq {seen['seq']} changed it" in out.stdout


def test_after_a_rewind_each_snapshot_is_compared_on_its_own_branch(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def body(rig: KernelRig) -> None:
        p = rig.person
        rig.put(p, "/a", b"one")
        await rig.k.committer.durable(rig.k.head_seq)
        point = rig.k.head_seq
        rig.put(p, "/a", b"two")
        rig.agent()
        await rig.k.snapshot()  # on main, holding the future the rewind leaves behind
        assert (await rig.call(p, "rewind", point=str(point)))["branch"] == 2
        rig.put(p, "/c", b"new work")
        seen["agreed"] = await rig.k.snapshot()  # on branch 2
        born = rig.agent()
        seen["clean"] = await rig.call(p, "verify")

        def rename(state: State) -> None:
            state.world.procs.procs[born.pid].name = "forged"

        seen["seq"] = await forge_snapshot(rig, rename)
        seen["pid"], seen["spawned"] = born.pid, spawn_seq(rig, born.pid)
        seen["forged"] = await rig.call(p, "verify")

    run_rig(KernelRig(tmp_path), body, verify=False)
    clean = seen["clean"]
    assert clean["ok"] and clean["snapshots"]["compared"] >= 2 and clean["live"]["branch"] == 2, clean
    d = seen["forged"]["divergence"]
    assert (d["branch"], d["seq"], d["agreed_seq"]) == (2, seen["seq"], seen["agreed"])
    assert [i["item"] for i in d["differs"]] == [f"process {seen['pid']}"]
    assert (d["event"]["seq"], d["event"]["kind"]) == (seen["spawned"], "proc.spawned")


def test_an_edited_event_breaks_the_chain_at_its_seq(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def body(rig: KernelRig) -> None:
        rig.put(rig.person, "/a", b"one")
        await rig.k.committer.durable(rig.k.head_seq)
        seen["head"] = rig.k.head_seq
        editor = apsw.Connection(str(rig.k.log.path))  # someone with the file, not the key
        editor.set_busy_timeout(5000)
        with editor:
            editor.execute("UPDATE events SET ts = ts + 1 WHERE seq = 7")
        editor.close()
        seen["report"] = await rig.call(rig.person, "verify")

    run_rig(KernelRig(tmp_path), body, verify=False)
    r = seen["report"]
    assert r["ok"] is False and r["chain"] == {
        "ok": False,
        "detail": "digest mismatch at seq 7",
        "first_bad_seq": 7,
    }
    assert r["snapshots"]["compared"] == 0 and r["replayed"] == 0, "nothing is rebuilt from an edited log"

    home = tmp_path / "home"
    code, offline = report_of(home)
    assert code == 1 and offline["mode"] == "offline" and offline["chain"]["first_bad_seq"] == 7
    out = agentos_verify(home)
    assert out.returncode == 1 and "FAILED: digest mismatch at seq 7" in out.stdout
    assert "first bad seq: 7" in out.stdout


def test_verify_through_the_kernel_and_with_the_kernel_down(kernel: KernelProcess) -> None:
    home = kernel.home
    with kernel.client() as c:
        pid = c.call("spawn", target=str(EXAMPLES / "hello.py"))
        assert c.call("wait", pid=pid, timeout=20)["status"] == 0
    code, live = report_of(home)
    assert code == 0 and live["ok"] and live["mode"] == "kernel" and live["live"] is not None
    text = agentos_verify(home)
    assert text.returncode == 0 and text.stdout.startswith("ok: ") and "events verified" in text.stdout
    assert "via the kernel" in text.stdout and "the rebuild equals the live state" in text.stdout

    code, forced = report_of(home, "--offline")  # a kernel serves, but the log is read directly
    assert code == 0 and forced["mode"] == "offline" and forced["live"] is None

    kernel.shutdown()  # a clean shutdown leaves a snapshot at the head
    files = sorted(p for p in home.iterdir() if p.name.startswith("log.db"))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    code, down = report_of(home)
    assert code == 0 and down["ok"] and down["mode"] == "offline" and down["snapshots"]["compared"] >= 1
    assert down["events"] >= live["events"] and down["live"] is None
    text = agentos_verify(home)
    assert text.returncode == 0 and f"no kernel serves {home}" in text.stdout
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert after == before and not (home / "kernel.sock").exists(), "verify wrote nothing"


def test_verify_of_a_directory_that_is_no_home_fails_clearly(tmp_path: Path) -> None:
    out = agentos_verify(tmp_path / "nothing")
    assert out.returncode == 1 and "not an AgentOS home" in out.stderr
    assert not (tmp_path / "nothing").exists(), "nothing was created"
