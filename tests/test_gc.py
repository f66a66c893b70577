"""``agentos gc --keep-since POINT|DURATION`` (``kernel/gc.py``, ``kernel/base.py``).

What a person relies on: the history before the point is gone and the bytes it held are freed;
everything from the point on still works — the live state, a boot, ``at`` points after the base,
rewind, switching to another branch, a file's history, ``agentos verify`` (the hash chain from the
base) — and a point before the base is a typed ``ECOMPACTED`` error, never a wrong answer. The
audit trail and the journals of agents still alive are kept; checkpoints before the point make gc
refuse, naming them.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from test_vfs_syscalls import ok

from agentos.kernel.boot import load_state
from agentos.kernel.exports import world_hash
from agentos.kernel.kernel import Kernel
from agentos.state import events as ev
from agentos.state.world import state_hash
from agentos.store.home import Home
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig


async def durable(r: KernelRig) -> int:
    await r.k.committer.durable(r.k.head_seq)
    return r.k.head_seq


def test_gc_frees_bytes_and_the_rest_of_history_still_works(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def body(r: KernelRig) -> None:
        p = r.person
        for _ in range(4):  # old versions of a big file: their chunks go with the history
            r.put(p, "/shared/big.bin", os.urandom(400_000))
        agent = r.agent()  # alive across the cut: its journal stays (a record as the runner writes one)
        done = ev.SyscallDone(pid=agent.pid, epoch=0, task=0, n=1, call="time", args_digest="-", result=1)
        r.k.emit(done, agent.pid)
        early = await durable(r)
        side = await r.call(p, "rewind", point=str(early), name="side")  # a branch forked before the cut
        r.put(p, "/shared/side.txt", b"on the side")
        await r.call(p, "switch", branch=1)
        r.put(p, "/shared/keep.txt", b"kept")
        await r.call(p, "checkpoint", name="old")
        cut = await durable(r)
        r.put(p, "/shared/keep.txt", b"kept, then changed")
        after = await durable(r)
        at_after = world_hash(r.k.past.rebuild(1, after))
        side_world = world_hash(r.k.past.rebuild(side["branch"], cut))

        err = r.fails(p, "EBUSY", "gc", keep_since=str(cut + 1))
        assert "old" in str(err)
        await r.call(p, "checkpoint_rm", name="old")
        dry = await r.call(p, "gc", keep_since=str(cut), dry_run=True)
        assert dry["dropped"] > 0 and dry["blobs"] > 0 and dry["blob_bytes"] >= 3 * 400_000
        assert r.k.log.count() >= cut, "a dry run changes nothing"
        got = await r.call(p, "gc", keep_since=str(cut))
        assert got["rows_deleted"] == dry["dropped"] and got["bytes_freed"] >= 3 * 400_000, got
        assert sorted(got["branches"]) == [1, side["branch"]]

        assert r.cat("/shared/keep.txt") == b"kept, then changed" and len(r.cat("/shared/big.bin")) == 400_000
        assert world_hash(r.k.past.rebuild(1, after)) == at_after, "`at` after the base: the same world"
        assert world_hash(r.k.past.rebuild(side["branch"], cut)) == side_world, "other branches too"
        e = r.fails(p, "ECOMPACTED", "at", point=str(cut - 1), what="ps")
        assert f"base at seq {cut}" in str(e)
        hist = await r.call(p, "fs_history", path="/shared/keep.txt")
        assert hist, "a file's history from the base on"
        assert agent.pid in r.k.state.world.procs.procs
        journal = [x for x in r.k.log.journal_of(agent.pid, 0, r.k.reader) if x.seq <= cut]
        assert journal, "the journal of an agent alive at the cut is kept"
        audit = r.k.reader.execute(
            "SELECT count(*) FROM events WHERE seq <= ? AND kind = 'cap.granted'", (cut,)
        )
        assert audit.fetchall()[0][0] > 0, "the audit trail is kept"

        moved = await r.call(p, "rewind", point=str(cut), name="from-the-base")
        assert r.cat("/shared/keep.txt") == b"kept" and moved["fork_seq"] == cut
        await r.call(p, "switch", branch=side["branch"])
        assert r.cat("/shared/side.txt") == b"on the side"
        await r.rebuilt_equals_live()
        seen["hash"] = state_hash(r.k.state)
        seen["cut"] = cut

    run_rig(KernelRig(tmp_path), body)  # ends with agentos verify: the chain from the base holds
    k = Kernel(Home(tmp_path / "home"))
    k._open_store()  # a boot's fold: from the base (no snapshot before it survives)
    try:
        assert state_hash(k.state) == seen["hash"]
        again, _ = load_state(k.log)
        assert state_hash(again) == seen["hash"]
    finally:
        k.reader.close()
        k.log.close()


def test_gc_refuses_points_it_cannot_use(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        r.put(p, "/shared/a", b"a")
        cut = await durable(r)
        r.fails(p, "EINVAL", "gc", keep_since="0")
        r.fails(p, "ENOENT", "gc", keep_since="not-a-point")
        await r.call(p, "gc", keep_since=str(cut))
        r.fails(p, "EINVAL", "gc", keep_since=str(cut))  # the base is there already
        r.put(p, "/shared/a", b"b")
        await durable(r)
        await asyncio.sleep(0.01)
        got = await r.call(p, "gc", keep_since="0s")
        assert got["seq"] > cut  # a duration: everything up to now
        assert r.cat("/shared/a") == b"b"

    run_rig(KernelRig(tmp_path), body)


def test_cli_gc_then_boot_and_verify(kernel: KernelProcess) -> None:
    home = kernel.home
    for _ in range(3):
        ok(home, "fs", "put", "-", "/shared/x", stdin=os.urandom(200_000))
    ok(home, "checkpoint", "c1")
    out = ok(home, "gc", "--keep-since=c1", "--dry-run").decode()
    assert out.startswith("would drop")
    got = json.loads(ok(home, "gc", "--keep-since=c1", "--json"))
    assert got["bytes_freed"] > 300_000, got
    kernel.shutdown()
    kernel.boot()
    assert len(ok(home, "fs", "cat", "/shared/x")) == 200_000
    assert len(ok(home, "at", "c1", "fs", "cat", "/shared/x")) == 200_000
    report = json.loads(ok(home, "verify", "--json"))
    assert report["ok"] and "from the base" in report["detail"], report
    asyncio.run(asyncio.sleep(0))
