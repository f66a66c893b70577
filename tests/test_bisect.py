"""``agentos bisect`` (``kernel/bisect.py``): the first event at which a predicate became true.

A planted first-bad event is found, at the edges of the range too, with at most ceil(log2(n)) + 1
probes for n events between good and bad — by SQL over the log's views, by SQL over a state-backed
table (each probe a state rebuilt at its seq), and by a Python predicate through the API. Then the
refusals, and the CLI on a real kernel process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from test_vfs_syscalls import agentos, ok

from agentos.errors import AgentOSError
from agentos.kernel.bisect import bisect
from agentos.state.world import State
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig

BY_EVENT = "SELECT 1 FROM events WHERE kind = 'vfs.created' AND json_extract(payload, '$.name') = 'BAD'"
BY_FILES = "SELECT 1 FROM files WHERE path = '/shared/BAD'"


def has_bad(state: State) -> bool:
    return any(n.name == "BAD" and n.nlink > 0 for n in state.world.vfs.inodes.values())


def bound(good: int, bad: int) -> int:
    return math.ceil(math.log2(bad - good)) + 1


def test_bisect_finds_a_planted_first_bad_event(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        for i in range(40):
            r.put(p, f"/shared/f{i}", b"x")
        await r.k.committer.durable(r.k.head_seq)
        good = r.k.head_seq
        for i in range(30):
            r.put(p, f"/shared/g{i}", b"y")
        await r.k.snapshot()  # probes on both sides of a snapshot
        r.put(p, "/shared/BAD", b"!")
        for i in range(70):
            r.put(p, f"/shared/h{i}", b"z")
        await r.k.committer.durable(r.k.head_seq)
        bad = r.k.head_seq
        planted = next(
            e.seq for e in r.k.log.read(good, kinds=["vfs.created"], conn=r.k.reader) if b'"BAD"' in e.payload
        )
        for lo, hi in [(good, bad), (planted - 1, bad), (good, planted), (planted - 1, planted)]:
            for sql in (BY_EVENT, BY_FILES):
                got = await r.call(p, "bisect", sql=sql, good=str(lo), bad=str(hi))
                assert got["first_bad"] == planted, (lo, hi, sql, got)
                assert len(got["probes"]) <= bound(lo, hi), (lo, hi, got["probes"])
                assert got["probes"][0] == {**got["probes"][0], "seq": hi, "bad": True}
                assert all(lo < probe["seq"] <= hi for probe in got["probes"])
                assert got["event"]["seq"] == planted and got["event"]["kind"] == "vfs.created"
            api = bisect(r.k, lo, hi, has_bad)
            assert api.first_bad == planted and len(api.probes) <= bound(lo, hi)
        assert bound(good, bad) * 40 < bad - good, "far fewer probes than events"

    run_rig(KernelRig(tmp_path), body)


def test_bisect_refuses_what_it_cannot_answer(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        r.put(r.person, "/shared/a", b"x")
        await r.k.committer.durable(r.k.head_seq)
        head = r.k.head_seq

        async def fails(code: str, **args: Any) -> None:
            try:
                await r.call(r.person, "bisect", **args)
            except AgentOSError as err:
                assert err.code == code, (args, err)
                return
            raise AssertionError(f"bisect {args} did not fail")

        await fails("EINVAL", sql=BY_EVENT, good="0", bad=str(head))  # never true: nothing to find
        await fails("EINVAL", sql="SELECT 1", good=str(head), bad=str(head))  # good must come first
        await fails("EINVAL", sql="SELECT 1", good="0", bad=str(head + 100))  # bad not in the log yet
        await fails("EACCES", sql="DELETE FROM events", good="0", bad=str(head))
        try:
            bisect(r.k, 0, head, has_bad)
        except AgentOSError as err:
            assert err.code == "EINVAL"
        else:
            raise AssertionError("a predicate never true was not refused")

    run_rig(KernelRig(tmp_path), body)


REFUSED_LATE = """
from agentos import sdk
from agentos.errors import PermissionDenied

async def main():
    for i in range(20):
        await sdk.time()
    try:
        await sdk.secret("NOT_MINE")
    except PermissionDenied:
        return 0
    return 1
"""


def test_cli_bisect_prints_each_probe(kernel: KernelProcess, agent_file: Any) -> None:
    home = kernel.home
    pid = int(kernel.call("spawn", target=agent_file(REFUSED_LATE)))
    with kernel.client() as c:
        assert c.call("wait", pid=pid, timeout=30)["status"] == 0
    sql = "SELECT 1 FROM audit WHERE kind = 'audit.denied'"
    denied = json.loads(ok(home, "query", "--json", "SELECT seq FROM audit WHERE kind = 'audit.denied'"))
    head = kernel.call("status")["durable_seq"]
    out = ok(home, "bisect", f"--sql={sql}").decode().splitlines()
    probes = [line.split() for line in out if line.startswith("probe")]  # probe N: seq S bad|good (T ms)
    hi = int(probes[0][3])
    assert hi >= head and probes[0][4] == "bad", "the bad end (now) is checked first"
    assert 1 <= len(probes) <= bound(0, hi), out
    assert f"first bad event: seq {denied[0]['seq']} " in out[len(probes)], out
    assert "audit.denied" in out[-1], out
    got = json.loads(ok(home, "bisect", "--json", f"--sql={sql}", "--good", "1", "--bad", str(head)))
    assert got["first_bad"] == denied[0]["seq"] and len(got["probes"]) <= bound(1, head)
    r = agentos(home, "bisect", "--sql=SELECT 1 WHERE 0")
    assert r.returncode == 1 and b"does not hold at bad" in r.stderr, r.stderr
