"""``watch``: change notifications on a path (``agentos/kernel/syswatch.py``).

In-process first (a kernel on a fresh home, driven through ``Kernel.call``, blocked calls parked
with ``Kernel.park`` as the runtimes park them): the changes and their order, the ``next`` cursor,
the scope (a directory's entries, ``recursive``, renames in and out), a parked watch woken by a
change and only by one in scope, its timeout, what an agent cannot see, revocation while parked,
``lost`` after the feed overflowed or the kernel rebooted, and the per-call limit. Then a real
kernel process: an agent parked in ``watch`` is woken by a file the person writes, and across
kill -9 its resumed watch says ``lost`` rather than inventing or dropping changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agentos import param
from agentos.errors import PermissionDenied
from agentos.kernel import syswatch
from agentos.kernel.calls import Caller, Done
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig


class Rig(KernelRig):
    def __call__(self, who: Caller, name: str, /, **args: Any) -> Any:
        outcome = self.k.call(who, name, args)
        assert isinstance(outcome, Done), f"{name} blocked"
        return outcome.result

    def agent(self, caps: list[dict[str, Any]]) -> Caller:  # type: ignore[override]
        return Caller(pid=self(self.person, "spawn", target=self.target, caps=caps), kind="agent")

    def put(self, path: str, data: bytes = b"x") -> None:  # type: ignore[override] - the person's
        super().put(self.person, path, data)

    def park(self, who: Caller, **args: Any) -> list[Any]:
        """Make a watch call; if it blocks, park it as the runtimes do. The box gets the answer."""
        box: list[Any] = []
        outcome = self.k.call(who, "watch", args)
        if isinstance(outcome, Done):
            box.append(outcome.result)
        else:
            self.k.park(object(), who, outcome, lambda result, exc: box.append(exc or result))
        return box


def run(tmp_path: Path, body: Callable[[Rig], Awaitable[None] | None]) -> None:
    run_rig(Rig(tmp_path), body)


async def settle() -> None:
    """Let the loop run the kernel's wait recheck (call_soon) and anything it schedules."""
    for _ in range(5):
        await asyncio.sleep(0)


def ops(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (c["op"], c["path"], c["kind"]) + ((c["from"],) if "from" in c else ()) for c in result["changes"]
    ]


def test_watch_reports_changes_in_order_and_next_resumes(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        r(p, "mkdir", path="/w/sub")
        start = r(p, "watch", path="/w", timeout=0)
        assert start == {"changes": [], "next": r.k.head_seq, "lost": False, "more": False}
        r.put("/w/a", b"hello")
        r(p, "mkdir", path="/w/sub/deep")
        r.put("/w/sub/deep/f")
        flat = r(p, "watch", path="/w", since=start["next"])
        assert ops(flat) == [
            ("created", "/w/a", "file"),
            ("written", "/w/a", "file"),
            ("version", "/w/a", "file"),
        ], "a directory's own entries, not what is below them"
        assert all(c["pid"] == p.pid for c in flat["changes"])
        seqs = [c["seq"] for c in flat["changes"]]
        assert seqs == sorted(seqs) and seqs[0] > start["next"]
        assert flat["next"] == r.k.head_seq and not flat["lost"] and not flat["more"]
        deep = r(p, "watch", path="/w/", since=start["next"], recursive=True)
        assert ops(deep) == [
            ("created", "/w/a", "file"),
            ("written", "/w/a", "file"),
            ("version", "/w/a", "file"),
            ("created", "/w/sub/deep", "dir"),
            ("created", "/w/sub/deep/f", "file"),
            ("written", "/w/sub/deep/f", "file"),
            ("version", "/w/sub/deep/f", "file"),
        ]
        assert r(p, "watch", path="/w", since=deep["next"], recursive=True, timeout=0)["changes"] == []
        assert ops(r(p, "watch", path="/w/a", since=start["next"])) == ops(flat), "a file: its own changes"
        r(p, "unlink", path="/w/a")
        gone = r(p, "watch", path="/w/a", since=deep["next"])
        assert ops(gone) == [("unlinked", "/w/a", "file")]
        r.fails(p, "EINVAL", "watch", path="/w", since=r.k.head_seq + 1)
        r.fails(p, "EINVAL", "watch", path="w")

    run(tmp_path, body)


def test_a_parked_watch_wakes_on_a_change_in_scope_only_and_times_out(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        r(p, "mkdir", path="/w/sub")
        box = r.park(p, path="/w/sub")
        assert box == [], "nothing has changed yet: it blocks"
        r.put("/w/a")  # outside the watched directory
        r(p, "mkdir", path="/w/sub/x/")
        await settle()
        assert len(box) == 1 and ops(box[0]) == [("created", "/w/sub/x", "dir")], box
        quiet = r.park(p, path="/w/sub", timeout=0.05)
        r.put("/w/b")
        await asyncio.sleep(0.2)
        assert quiet == [{"changes": [], "next": r.k.head_seq, "lost": False, "more": False}]
        # a transaction's changes arrive together, in one answer
        whole = r.park(p, path="/w", recursive=True)
        done = r(
            p,
            "fs_transaction",
            ops=[
                {"op": "mkdir", "path": "/w/t"},
                {"op": "write", "path": "/w/t/f", "data": b"1"},
                {"op": "rename", "src": "/w/t/f", "dst": "/w/t/g"},
            ],
        )
        await settle()
        assert [c["seq"] for c in whole[0]["changes"]] == list(range(done["first_seq"], done["last_seq"] + 1))
        assert ops(whole[0])[-1] == ("renamed", "/w/t/g", "file", "/w/t/f")

    run(tmp_path, body)


def test_renames_in_and_out_and_nothing_an_agent_cannot_see(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        for d in ("/w", "/w/pub", "/w/secret"):
            r(p, "mkdir", path=d)
        r.put("/w/secret/a", b"secret")
        a = r.agent([{"resource": "fs:/w/pub", "rights": ["list", "read"]}, {"resource": "sys:fd"}])
        with pytest.raises(PermissionDenied):
            r.k.call(a, "watch", {"path": "/w", "recursive": True})
        since = r(a, "watch", path="/w/pub", recursive=True, timeout=0)["next"]
        r(p, "rename", src="/w/secret/a", dst="/w/pub/a")  # in, from somewhere it cannot see
        r.put("/w/secret/b")  # out of scope and out of sight
        r(p, "rename", src="/w/pub/a", dst="/w/secret/c")  # out, to somewhere it cannot see
        r(p, "mkdir", path="/w/pub/d")
        seen = r(a, "watch", path="/w/pub", since=since, recursive=True)
        assert ops(seen) == [
            ("renamed", "/w/pub/a", "file", None),
            ("renamed", None, "file", "/w/pub/a"),
            ("created", "/w/pub/d", "dir"),
        ]
        assert "/w/secret" not in json.dumps(seen)
        everything = r(p, "watch", path="/w/pub", since=since, recursive=True)  # the person holds root
        assert ops(everything)[:2] == [
            ("renamed", "/w/pub/a", "file", "/w/secret/a"),
            ("renamed", "/w/secret/c", "file", "/w/pub/a"),
        ]
        # the watched path's ancestor moves: the path moved with it
        mark = r.k.head_seq
        r(p, "rename", src="/w/pub", dst="/w/public")
        moved = r(p, "watch", path="/w/pub/d", since=mark)
        assert ops(moved) == [("renamed", "/w/public", "dir", "/w/pub")]
        r(p, "rename", src="/w/public", dst="/w/pub")
        # revoked while parked: the next change ends the wait with EACCES, and shows nothing
        box = r.park(a, path="/w/pub", recursive=True)
        cap = next(c for c in r.k.state.world.caps.held_by(a.pid) if c.resource == "fs:/w/pub")
        r(p, "cap_revoke", cap=cap.id)
        r(p, "mkdir", path="/w/pub/after")
        await settle()
        assert len(box) == 1 and isinstance(box[0], PermissionDenied) and box[0].code == "EACCES"
        assert "after" not in str(box[0])

    run(tmp_path, body)


def test_lost_after_the_feed_overflowed_or_a_reboot(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        since = r(p, "watch", path="/w", timeout=0)["next"]
        syswatch.feed_of(r.k).capacity = 4
        for i in range(4):
            r.put(f"/w/f{i}")  # 12 changes: the first 8 fall out of the feed
        lost = r(p, "watch", path="/w", since=since)
        assert lost == {"changes": [], "next": r.k.head_seq, "lost": True, "more": False}
        r.put("/w/again")
        fresh = r(p, "watch", path="/w", since=lost["next"])
        assert not fresh["lost"] and ops(fresh)[0] == ("created", "/w/again", "file")
        await r.k.committer.durable(r.k.head_seq)
        await r.k.close(clean=False)
        r.boot()  # the feed is memory: what came before the boot is not in it
        assert r(p, "watch", path="/w", since=lost["next"], timeout=0)["lost"]
        assert not r(p, "watch", path="/w", since=fresh["next"], timeout=0)["lost"], "the head at the crash"
        assert not r(p, "watch", path="/w", timeout=0)["lost"]

    run(tmp_path, body)


def test_the_limit_bounds_an_answer_and_more_says_so(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        since = r(p, "watch", path="/w", timeout=0)["next"]
        for i in range(3):
            r(p, "mkdir", path=f"/w/d{i}")
        first = r(p, "watch", path="/w", since=since, limit=2)
        assert ops(first) == [("created", "/w/d0", "dir"), ("created", "/w/d1", "dir")]
        assert first["more"] and first["next"] == first["changes"][-1]["seq"]
        rest = r(p, "watch", path="/w", since=first["next"], limit=2)
        assert ops(rest) == [("created", "/w/d2", "dir")] and not rest["more"]
        r.fails(p, "EINVAL", "watch", path="/w", limit=param.WATCH_MAX_CHANGES + 1)
        r.fails(p, "EINVAL", "watch", path="/w", limit=0)

    run(tmp_path, body)


@pytest.mark.parametrize(
    ("watched", "recursive", "path", "naming", "expected"),
    [
        ("/w", False, "/w", False, True),
        ("/w", False, "/w/a", False, True),
        ("/w", False, "/w/a/b", False, False),
        ("/w", True, "/w/a/b", False, True),
        ("/w", True, "/wx", False, False),  # component boundaries, not string prefixes
        ("/", False, "/a", False, True),
        ("/", False, "/a/b", False, False),
        ("/", True, "/a/b", False, True),
        ("/w/a/b", False, "/w", True, True),  # an ancestor renamed, created or removed
        ("/w/a/b", False, "/w", False, False),  # ... but not written to
        ("/w", True, None, True, False),
    ],
)
def test_scope(watched: str, recursive: bool, path: str | None, naming: bool, expected: bool) -> None:
    assert syswatch.in_scope(watched, recursive, path, naming) is expected


# -- a real kernel process ----------------------------------------------------------------------------

WATCHER = """
import json
from agentos import sdk

async def main():
    since = None
    for _ in range(3):
        got = await sdk.watch("/w", since=since, recursive=True)
        print(json.dumps({"lost": got["lost"], "changes": [[c["op"], c["path"]] for c in got["changes"]]}))
        since = got["next"]
    return 0
"""


def _lines(c: Any, pid: int) -> list[dict[str, Any]]:
    return [json.loads(x) for x in "".join(i["data"] for i in c.stream("logs", pid=pid)).splitlines()]


def _blocked(c: Any, pid: int) -> bool:
    return next(p for p in c.call("ps") if p["pid"] == pid)["state"] == "blocked"


def test_an_agent_parked_in_watch_wakes_and_after_kill_9_is_told_it_lost(
    kernel: KernelProcess, agent_file: Any
) -> None:
    kernel.call("mkdir", path="/w")
    caps = [
        {"resource": "fs:/w", "rights": ["list", "read"]},
        {"resource": "sys:console", "rights": ["write"]},
    ]
    pid = int(kernel.call("spawn", target=agent_file(WATCHER), caps=caps))
    with kernel.client() as c:
        poll(lambda: _blocked(c, pid))
        c.call("mkdir", path="/w/one")
        poll(lambda: len(_lines(c, pid)) == 1 and _blocked(c, pid))
        assert _lines(c, pid) == [{"lost": False, "changes": [["created", "/w/one"]]}]
    kernel.kill9()
    kernel.boot()
    with kernel.client() as c:
        # replay answered the first watch from the journal; the second, parked at the crash, cannot
        # know what happened meanwhile: it says so at once
        poll(lambda: len(_lines(c, pid)) == 2 and _blocked(c, pid))
        assert _lines(c, pid)[1] == {"lost": True, "changes": []}
        c.call("mkdir", path="/w/two")
        assert c.call("wait", pid=pid, timeout=20)["status"] == 0
        assert _lines(c, pid)[2] == {"lost": False, "changes": [["created", "/w/two"]]}


def test_fs_watch_prints_the_changes_as_they_land(kernel: KernelProcess) -> None:
    kernel.call("mkdir", path="/w")
    since = kernel.call("status")["seq"]
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    argv = ["fs", "watch", "--home", str(kernel.home), "-r", "-n", "3", "--since", str(since), "/w"]
    watcher = subprocess.Popen([sys.executable, "-m", "agentos", *argv], stdout=subprocess.PIPE, env=env)
    try:
        kernel.call(
            "fs_transaction",
            ops=[{"op": "mkdir", "path": "/w/d"}, {"op": "rename", "src": "/w/d", "dst": "/w/e"}],
        )
        kernel.call("mkdir", path="/w/e/f")
        out, _ = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0
    lines = [line.split() for line in out.decode().splitlines()]
    assert [line[1:3] for line in lines] == [["created", "/w/d"], ["renamed", "/w/e"], ["created", "/w/e/f"]]
    assert "(from /w/d)" in out.decode()
