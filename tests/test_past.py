"""The state at a past point (``kernel/past.py``) and ``agentos at POINT ...``.

A property first: for random workloads and random points, the state ``at`` rebuilds (from the
newest snapshot at or before the point, then the log) equals the log prefix replayed from scratch.
Then the calls answered from the past, their refusals, time points, and the CLI on a real kernel.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_vfs_syscalls import ok

from agentos.kernel.boot import rebuild_state
from agentos.state.world import state_hash
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b", "c"]), st.binary(max_size=40)),
        st.tuples(st.just("mkdir"), st.sampled_from(["d", "e"]), st.just(b"")),
        st.tuples(st.just("rm"), st.sampled_from(["a", "b", "c"]), st.just(b"")),
        st.tuples(st.just("spawn"), st.just(""), st.just(b"")),
        st.tuples(st.just("snapshot"), st.just(""), st.just(b"")),
    ),
    min_size=1,
    max_size=25,
)


def test_at_a_random_point_equals_the_log_prefix_replayed(tmp_path: Path) -> None:
    counter = iter(range(10_000))

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops=OPS, picks=st.lists(st.floats(0, 1), min_size=1, max_size=4))
    def one(ops: list[tuple[str, str, bytes]], picks: list[float]) -> None:
        async def body(r: KernelRig) -> None:
            p = r.person
            for op, name, data in ops:
                try:
                    if op == "put":
                        r.put(p, f"/shared/{name}", data)
                    elif op == "mkdir":
                        r(p, "mkdir", path=f"/shared/{name}")
                    elif op == "rm":
                        r(p, "unlink", path=f"/shared/{name}")
                    elif op == "spawn":
                        r.agent()
                    else:
                        await r.k.snapshot()
                except Exception:  # noqa: BLE001 - EEXIST, ENOENT: part of a random workload
                    pass
            await r.k.committer.durable(r.k.head_seq)
            for f in picks:
                seq = max(1, int(f * r.k.committer.durable_seq))
                past = r.k.past.state_at(seq)
                replayed = rebuild_state(r.k.log, until=seq, conn=r.k.reader)
                assert past.seq == replayed.seq == seq and state_hash(past) == state_hash(replayed), seq

        run_rig(KernelRig(tmp_path / str(next(counter))), body)

    one()


def test_calls_against_the_past_and_their_refusals(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        r.put(p, "/shared/a.txt", b"one")
        await r.k.committer.durable(r.k.head_seq)
        before, t_before = r.k.head_seq, time.time()
        time.sleep(0.01)
        r.agent()
        r.put(p, "/shared/a.txt", b"two")
        r(p, "mkdir", path="/shared/d")
        await r.k.committer.durable(r.k.head_seq)
        now = r.k.head_seq

        def at(point: Any, call: str, **args: Any) -> Any:
            got = r(p, "at", point=str(point), what=call, args=args)
            return got["result"]

        assert at(before, "cat", path="/shared/a.txt") == b"one"
        assert at(now, "cat", path="/shared/a.txt") == b"two"
        assert at(before, "readdir", path="/shared") == ["a.txt"]
        assert at(now, "readdir", path="/shared") == ["a.txt", "d"]
        assert len(at(before, "ps")) + 1 == len(at(now, "ps")) == len(r(p, "ps"))
        assert at(f"@{t_before}", "readdir", path="/shared") == ["a.txt"]
        assert at(0, "ps") == [], "before the first event nothing existed"
        assert at(now, "stat", path="/shared/a.txt")["size"] == 3
        r.fails(p, "EINVAL", "at", point=str(now + 1000), what="ps")
        r.fails(p, "ENOENT", "at", point="no-such-checkpoint", what="ps")
        r.fails(p, "EINVAL", "at", point=str(before), what="open", args={"path": "/shared/a.txt"})
        r.fails(p, "EINVAL", "at", point=str(before), what="unlink", args={"path": "/shared/a.txt"})
        r.fails(p, "ENOENT", "at", point=str(before), what="cat", args={"path": "/shared/d"})
        r.fails(p, "EXDEV", "at", point=str(before), what="readdir", args={"path": "/proc"})
        assert r.cat("/shared/a.txt") == b"two", "nothing changed"

    run_rig(KernelRig(tmp_path), body)


def test_cli_at(kernel: KernelProcess) -> None:
    home = kernel.home
    ok(home, "fs", "put", "-", "/shared/x", stdin=b"first\n")
    seq = kernel.call("status")["seq"]
    kernel.wait_for(lambda c: c.call("status")["durable_seq"] >= seq)
    ok(home, "fs", "put", "-", "/shared/x", stdin=b"second\n")
    assert ok(home, "at", str(seq), "fs", "cat", "/shared/x") == b"first\n"
    assert ok(home, "fs", "cat", "/shared/x") == b"second\n"
    assert "x" in ok(home, "at", str(seq), "fs", "ls", "/shared").decode()
    rows = json.loads(ok(home, "at", "--json", str(seq), "ps", "-a"))
    assert {r["name"] for r in rows} >= {"init"}
