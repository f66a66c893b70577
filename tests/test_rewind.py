"""Rewind, branches, switching back, checkpoints (``kernel/timeline.py``, ``kernel/systime.py``).

What a person relies on: a rewind makes the live world the one at the point, on a new branch; the
future it left is intact and can be switched back to; the ledger is never rewound (a revoked
capability stays revoked, spend is not refunded, no identifier is reused); a boot after it folds
the same world; an SDK agent alive at the point resumes there by replay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_vfs_syscalls import ok

from agentos.kernel.boot import load_state, rebuild_state
from agentos.kernel.calls import Caller
from agentos.state.world import state_hash
from agentos.store.lineage import Lineage
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig


async def durable(r: KernelRig) -> int:
    await r.k.committer.durable(r.k.head_seq)
    return r.k.head_seq


async def rebuilt_equals_live(r: KernelRig) -> None:
    seq = await durable(r)
    assert state_hash(rebuild_state(r.k.log, until=seq, conn=r.k.reader)) == state_hash(r.k.state)


def world_hash(state: Any) -> str:
    return state_hash(type(state)(seq=0, world=state.world))


def test_rewind_then_new_work_then_switch_back_leaves_the_future_intact(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        r.put(p, "/shared/a.txt", b"one")
        point = await durable(r)
        r.put(p, "/shared/a.txt", b"two")
        r.put(p, "/shared/b.txt", b"bee")
        agent = r.agent()
        head = await durable(r)
        future = world_hash(r.k.state)

        got = await r.call(p, "rewind", point=str(point), name="try-again")
        assert (got["branch"], got["parent"], got["fork_seq"], got["from_branch"]) == (2, 1, point, 1)
        assert got["from_seq"] >= head and got["name"] == "try-again"
        assert r.cat("/shared/a.txt") == b"one" and r(p, "readdir", path="/shared") == ["a.txt"]
        assert r.k.state.world.procs.get(agent.pid) is None, "an agent born after the point is gone"
        r.put(p, "/shared/c.txt", b"new work")
        newer = r.agent()
        assert newer.pid > agent.pid, "pids are never reused on any branch"
        await rebuilt_equals_live(r)

        rows = await r.call(p, "branches")
        assert [(b["branch"], b["current"]) for b in rows] == [(1, False), (2, True)]
        got = await r.call(p, "switch", branch=1)
        assert got["head"] == head or got["head"] > head  # the session's own events may follow
        assert r.cat("/shared/a.txt") == b"two" and r(p, "readdir", path="/shared") == ["a.txt", "b.txt"]
        assert (
            r.k.state.world.procs.get(agent.pid) is not None and r.k.state.world.procs.get(newer.pid) is None
        )
        r.fails(p, "EALREADY", "switch", branch=1)
        r.fails(p, "ENOENT", "switch", branch=99)
        await rebuilt_equals_live(r)
        # the future left on branch 1, folded again: the same files and processes as before the rewind
        again = r.k.past.rebuild(1, head)
        assert world_hash(again) == future

    run_rig(KernelRig(tmp_path), body)


def test_the_ledger_carries_across_a_rewind(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        agent = r.agent()
        cap = r(p, "cap_delegate", to=agent.pid, spec={"resource": "fs:/shared", "rights": ["list"]})["cap"]
        with_cap = Caller(pid=agent.pid, kind="agent", use_cap=cap)
        assert r(with_cap, "stat", path="/shared")["kind"] == "dir"
        point = await durable(r)
        r(p, "cap_revoke", cap=cap)
        revoked_at = r.k.state.ledger.revoked[cap]
        r.put(p, "/shared/spent", b"x" * 1000)
        spent = json.dumps(msgspec.to_builtins(r.k.state.ledger.usage), sort_keys=True)
        ledger = r.k.state.ledger
        before = (ledger.next_pid, ledger.next_cap, ledger.next_ino, ledger.cpu_total_ns)
        await r.call(p, "rewind", point=str(point))
        assert r.k.state.world.caps.get(cap) is not None, "the world at the point held the capability"
        assert r.k.state.ledger.revoked[cap] == revoked_at, "but its revocation is ledger"
        r.fails(with_cap, "EACCES", "stat", path="/shared")
        assert json.dumps(msgspec.to_builtins(r.k.state.ledger.usage), sort_keys=True) == spent, "no refund"
        ledger = r.k.state.ledger
        assert (ledger.next_pid, ledger.next_cap, ledger.next_ino, ledger.cpu_total_ns) >= before
        assert r.agent().pid >= before[0], "no pid is reused"
        await rebuilt_equals_live(r)

    run_rig(KernelRig(tmp_path), body)


def test_checkpoints_restore_and_points_on_other_branches(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        r.put(p, "/shared/a.txt", b"v1")
        await durable(r)
        made = r(p, "checkpoint", name="good")
        assert made["branch"] == 1
        r.fails(p, "EEXIST", "checkpoint", name="good")
        r.fails(p, "EINVAL", "checkpoint", name="12")  # would read as a seq
        r.put(p, "/shared/a.txt", b"v2")
        await durable(r)
        assert [c["name"] for c in r(p, "checkpoints")] == ["good"]
        assert r(p, "at", point="good", what="cat", args={"path": "/shared/a.txt"})["result"] == b"v1"
        got = await r.call(p, "restore", name="good")
        assert got["branch"] == 2 and got["fork_seq"] == made["seq"] and got["name"] == "restore-good"
        assert r.cat("/shared/a.txt") == b"v1"
        r.put(p, "/shared/a.txt", b"v3")
        head1 = r(p, "branches")[0]["head"]
        # a point on the branch left behind, read from here
        assert r(p, "at", point=f"1:{head1}", what="cat", args={"path": "/shared/a.txt"})["result"] == b"v2"
        r.fails(p, "ENOENT", "at", point="7:3", what="ps")
        r(p, "checkpoint_rm", name="good")
        r.fails(p, "ENOENT", "restore", name="good")
        await rebuilt_equals_live(r)

    run_rig(KernelRig(tmp_path), body)


def test_an_agent_cannot_move_the_kernel_it_runs_in(tmp_path: Path) -> None:
    def body(r: KernelRig) -> None:
        agent = r.agent()
        r.k.emit  # noqa: B018
        root = Caller(pid=agent.pid, kind="agent")
        for call, args in (("rewind", {"point": "1"}), ("switch", {"branch": 1}), ("restore", {"name": "x"})):
            try:
                r.k.check_call  # noqa: B018
                r(root, call, **args)
            except Exception as err:  # noqa: BLE001
                assert getattr(err, "code", "") in ("EPERM", "EACCES"), err
            else:
                raise AssertionError(f"an agent's {call} was not refused")

    run_rig(KernelRig(tmp_path), body)


def test_a_boot_after_rewinds_folds_the_same_world(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        r.put(p, "/shared/a.txt", b"one")
        first = await durable(r)
        r.put(p, "/shared/a.txt", b"two")
        await durable(r)
        await r.call(p, "rewind", point=str(first))
        r.put(p, "/shared/b.txt", b"b")
        second = await durable(r)
        await r.call(p, "rewind", point=str(first + 1))  # a point inside main, from branch 2
        r.put(p, "/shared/c.txt", b"c")
        await r.call(p, "rewind", point=f"2:{second}")  # back into branch 2's own events
        await durable(r)
        live = state_hash(r.k.state)
        state, _ = load_state(r.k.log)
        assert state_hash(state) == live
        await r.k.snapshot()
        state, snap = load_state(r.k.log)
        assert snap > 0 and state_hash(state) == live
        assert r.cat("/shared/b.txt") == b"b" and r(p, "readdir", path="/shared") == ["a.txt", "b.txt"]

    run_rig(KernelRig(tmp_path), body)


BRANCHY = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b"]), st.binary(max_size=20)),
        st.tuples(st.just("rm"), st.sampled_from(["a", "b"]), st.just(b"")),
        st.tuples(st.just("spawn"), st.just(""), st.just(b"")),
        st.tuples(st.just("rewind"), st.just(""), st.just(b"")),
        st.tuples(st.just("switch"), st.just(""), st.just(b"")),
        st.tuples(st.just("snapshot"), st.just(""), st.just(b"")),
    ),
    min_size=1,
    max_size=20,
)


def test_random_branching_workloads_rebuild_exactly(tmp_path: Path) -> None:
    """Property: whatever rewinds and switches happen, the live state equals the log folded along
    the live branch's lineage, and the state at any point equals its prefix folded from scratch."""
    counter = iter(range(10_000))

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops=BRANCHY, picks=st.lists(st.floats(0, 1), min_size=2, max_size=8))
    def one(ops: list[tuple[str, str, bytes]], picks: list[float]) -> None:
        async def body(r: KernelRig) -> None:
            p, choices = r.person, iter(picks * 4)
            for op, name, data in ops:
                try:
                    if op == "put":
                        r.put(p, f"/shared/{name}", data)
                    elif op == "rm":
                        r(p, "unlink", path=f"/shared/{name}")
                    elif op == "spawn":
                        r.agent()
                    elif op == "rewind":
                        seq = max(1, int(next(choices) * await durable(r)))
                        await r.call(p, "rewind", point=str(seq))
                    elif op == "switch":
                        branches = [b["branch"] for b in r(p, "branches") if not b["current"]]
                        if branches:
                            await r.call(
                                p,
                                "switch",
                                branch=branches[int(next(choices) * len(branches)) % len(branches)],
                            )
                    else:
                        await r.k.snapshot()
                except Exception as err:  # noqa: BLE001 - ENOENT and the like: part of a random workload
                    assert getattr(err, "code", None), err
            await rebuilt_equals_live(r)
            here = Lineage.of(
                r.k.state.world.branch,
                {b.id: (b.parent, b.fork_seq) for b in r.k.state.ledger.branches.values()},
            )
            for f in picks:
                seq = max(1, int(f * r.k.committer.durable_seq))
                past = r.k.past.state_at(seq)
                replayed = rebuild_state(r.k.log, until=seq, conn=r.k.reader, lineage=here)
                replayed.world.branch = here.branch
                assert state_hash(past) == state_hash(replayed), seq

        run_rig(KernelRig(tmp_path / str(next(counter))), body)

    one()


def test_cli_rewind_branches_events_switch(kernel: KernelProcess, agent_file: Any) -> None:
    home = kernel.home
    ok(home, "fs", "put", "-", "/shared/x", stdin=b"first\n")
    ok(home, "checkpoint", "first")
    ok(home, "fs", "put", "-", "/shared/x", stdin=b"second\n")
    out = ok(home, "rewind", "first", "--name", "retry").decode()
    assert "now on branch 2 (retry)" in out and "still readable" in out
    assert ok(home, "fs", "cat", "/shared/x") == b"first\n"
    table = ok(home, "branches").decode()
    assert "* 2" in table and "retry" in table and "1@" in table
    rows = json.loads(ok(home, "branches", "--json"))
    assert [r["current"] for r in rows] == [False, True]
    left = [
        json.loads(line)
        for line in ok(home, "events", "--json", "--branch", "1", "--limit", "100000").splitlines()
    ]
    assert all(e["branch"] == 1 for e in left) and any(e["kind"] == "vfs.version" for e in left)
    here = [
        json.loads(line)
        for line in ok(home, "events", "--json", "--branch", "2", "--limit", "100000").splitlines()
    ]
    assert here[-1]["branch"] == 2 and {e["branch"] for e in here} == {1, 2}
    assert ok(home, "switch", "1").decode().startswith("switched to branch 1")
    assert ok(home, "fs", "cat", "/shared/x") == b"second\n"
    assert "first" in ok(home, "checkpoints").decode()


COUNTER = """
from agentos import sdk


async def main(n="40"):
    for i in range(1, int(n) + 1):
        fd = await sdk.open("/shared/count", ["write", "append", "create"])
        await sdk.write(fd, f"{i}\\n".encode())
        await sdk.close(fd)
        await sdk.sleep(0.15)
    return 0
"""


def lines(c: Any) -> list[int]:
    got = c.call("at", point="now", what="cat", args={"path": "/shared/count"})["result"]
    return [int(x) for x in got.split()]


def test_an_sdk_agent_alive_at_the_point_resumes_there_by_replay(
    kernel: KernelProcess, agent_file: Any
) -> None:
    """It goes on from where it was at the point: the file it appends to ends 1..N, each once."""
    home, target = kernel.home, agent_file(COUNTER, "counter_rw.py")
    pid = int(ok(home, "run", "-d", target, "40").split()[-1])
    with kernel.client() as c:
        kernel.wait_for(lambda _: len(lines(c)) >= 5, timeout=60)
        then = len(lines(c))
        c.call("checkpoint", name="mid")
        kernel.wait_for(lambda _: len(lines(c)) >= then + 5, timeout=60)
    got = json.loads(ok(home, "restore", "mid", "--json"))
    assert pid in got["agents"], got
    at_mid = [int(x) for x in ok(home, "at", "mid", "fs", "cat", "/shared/count").split()]
    left = [int(x) for x in ok(home, "at", f"1:{got['from_seq']}", "fs", "cat", "/shared/count").split()]
    assert 5 <= len(at_mid) < len(at_mid) + 5 <= len(left) < 40, (
        "the point is mid-run; the branch left went further"
    )
    ok(home, "wait", str(pid))
    with kernel.client() as c:
        assert lines(c) == list(range(1, 41)), "resumed at the point: no line lost, none twice"
    procs = json.loads(ok(home, "at", "--json", f"1:{got['from_seq']}", "ps", "-a"))
    assert any(p["pid"] == pid for p in procs), "the branch left behind still has it"
