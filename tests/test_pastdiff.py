"""``agentos diff A B`` (``kernel/pastdiff.py``, ``kernel/pastfiles.py``): what changed between two points.

In-process first: a workload that spawns, exits, writes, renames, unlinks, grants and revokes
between two points, and a diff that reports exactly those; then the bounds, the refusals, and the
CLI on a real kernel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_vfs_syscalls import WRITER, agentos, ok

from agentos.kernel.past import PastView
from agentos.kernel.pastfiles import Side
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig
from agentos.user.cli_diff import render


async def durable(r: KernelRig) -> int:
    await r.k.committer.durable(r.k.head_seq)
    return r.k.committer.durable_seq


def by_path(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in d["files"]["changes"]}


def test_a_diff_reports_exactly_what_the_workload_did(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        r.put(p, "/shared/keep.txt", b"one\ntwo\n")
        r.put(p, "/shared/old.txt", b"moved\n")
        r.put(p, "/shared/gone.txt", b"bye\n")
        r.put(p, "/shared/bin.dat", b"\xff\x00\x01")
        r.put(p, "/shared/same.txt", b"same\n")
        r(p, "mkdir", path="/shared/d")
        r.put(p, "/shared/d/inner.txt", b"in\n")
        sleeper = r.agent(name="sleeper")
        helper = r.agent(name="helper")
        a = await durable(r)

        three = r.agent(name="three")
        r(three, "exit", status=3)
        assert r(p, "wait", pid=three.pid)["status"] == 3
        r.put(p, "/shared/keep.txt", b"one\nTWO\n")
        r(p, "rename", src="/shared/old.txt", dst="/shared/new.txt")
        r(p, "rename", src="/shared/d", dst="/shared/e")  # the directory, not its file, is reported
        r(p, "unlink", path="/shared/gone.txt")
        r(p, "mkdir", path="/shared/t")
        r.put(p, "/shared/t/tmp.txt", b"x")  # came and went in between
        r(p, "unlink", path="/shared/t/tmp.txt")
        r(p, "rmdir", path="/shared/t")
        r.put(p, "/shared/fresh.txt", b"hello\n")
        r.put(p, "/shared/bin.dat", b"\xff\x00\x02")
        r.put(p, "/shared/same.txt", b"same\n")  # rewritten with the same bytes: no change
        r(p, "chmod", path="/shared/new.txt", mode=0o600)
        r(p, "symlink", target="/shared/new.txt", path="/shared/ln")
        held = r(
            p, "cap_delegate", to=sleeper.pid, spec={"resource": "fs:/shared/new.txt", "rights": ["read"]}
        )
        x = r(
            p,
            "cap_delegate",
            to=sleeper.pid,
            spec={"resource": "secret:K", "rights": ["read", "grant"], "depth": 1},
        )["cap"]
        y = r(sleeper, "cap_delegate", to=helper.pid, spec={"cap": x, "rights": ["read"]})["cap"]
        r(p, "cap_revoke", cap=x, reason="enough")
        b = await durable(r)

        d = r(p, "diff", a=str(a), b=str(b))
        assert (d["a"], d["b"], d["events"]) == (a, b, b - a)

        files = by_path(d)
        assert set(files) == {
            "/shared/keep.txt",
            "/shared/new.txt",
            "/shared/e",
            "/shared/gone.txt",
            "/shared/fresh.txt",
            "/shared/bin.dat",
            "/shared/ln",
        }, files
        keep = files["/shared/keep.txt"]
        assert (keep["status"], keep["size"], keep["text"]) == ("changed", [8, 8], True)
        assert keep["diff"] == (
            f"--- /shared/keep.txt@{a}\n+++ /shared/keep.txt@{b}\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n"
        )
        moved = files["/shared/new.txt"]
        assert (moved["from"], moved["content"], moved["mode"]) == ("/shared/old.txt", False, [0o644, 0o600])
        assert (files["/shared/e"]["from"], files["/shared/e"]["kind"]) == ("/shared/d", "dir")
        gone = files["/shared/gone.txt"]
        assert (gone["status"], gone["size"]) == ("removed", [4, None])
        assert gone["diff"].endswith("@@ -1 +0,0 @@\n-bye\n") and "+++ /dev/null" in gone["diff"]
        fresh = files["/shared/fresh.txt"]
        assert (fresh["status"], fresh["size"], fresh["diff"].splitlines()[-1]) == (
            "created",
            [None, 6],
            "+hello",
        )
        binary = files["/shared/bin.dat"]
        assert binary["text"] is False and "diff" not in binary
        assert len(set(binary["sha256"])) == 2 and all(len(h) == 64 for h in binary["sha256"])
        assert (files["/shared/ln"]["status"], files["/shared/ln"]["target"]) == (
            "created",
            [None, "/shared/new.txt"],
        )
        assert d["files"]["count"] == 7 and not d["files"]["truncated"]
        assert [(t["path"], t["kind"]) for t in d["files"]["transient"]] == [
            ("/shared/t", "dir"),
            ("/shared/t/tmp.txt", "file"),
        ]
        assert all(t["removed"] for t in d["files"]["transient"])

        procs = d["processes"]
        assert [(r_["pid"], r_["name"]) for r_ in procs["born"]["rows"]] == [(three.pid, "three")]
        assert [(r_["pid"], r_["status"]) for r_ in procs["exited"]["rows"]] == [(three.pid, 3)]
        assert procs["alive"][0] == procs["alive"][1]

        caps = d["capabilities"]
        delegated = [g for g in caps["granted"]["rows"] if g["origin"] == "delegate"]
        assert [g["cap"] for g in delegated] == [held["cap"], x, y]
        assert {g["holder"] for g in caps["granted"]["rows"] if g["origin"] != "delegate"} == {three.pid}
        (revoked,) = caps["revoked"]["rows"]
        assert (revoked["cap"], revoked["by"], revoked["reason"], revoked["resource"]) == (
            x,
            p.pid,
            "enough",
            "secret:K",
        )
        assert revoked["cut_off"] == [y], "the capability derived from it went with it"

        usage = d["usage"]
        assert usage["groups"]["/"]["spawns"] == 1 and usage["groups"][f"/agent-{three.pid}"] == {
            "spawns": 1.0
        }
        assert usage["groups"]["/"]["file_bytes"] == len(
            b"one\nTWO\n" + b"x" + b"hello\n" + b"\xff\x00\x02" + b"same\n"
        )
        assert usage["groups_created"] == [f"/agent-{three.pid}"]
        assert d["llm_calls"]["calls"] == [] and "issue 8" in d["llm_calls"]["note"]

        text = "\n".join(render(d))  # what `agentos diff` prints for it
        assert "  RM /shared/old.txt → /shared/new.txt  (mode 644 → 600)" in text
        assert "  R  /shared/d → /shared/e/" in text and "inner.txt" not in text
        assert "  ~  /shared/t/tmp.txt  (file: created at seq " in text
        assert f"  - cap {x:<4} pid {sleeper.pid}  secret:K " in text and f"cut off with it: {y}" in text
        assert f"  + pid {three.pid}: " in text and f"  - {three.pid:<5} three  exit 3" in text

        assert r(p, "diff", a=str(a), b=str(a))["files"]["changes"] == [], "a point against itself"
        assert r.cat("/shared/keep.txt") == b"one\nTWO\n", "a diff changes nothing"

    run_rig(KernelRig(tmp_path), body)


def test_bounds_and_refusals(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        a = await durable(r)
        for i in range(6):
            r.put(p, f"/shared/f{i}.txt", "".join(f"line {n}\n" for n in range(200)).encode())
        b = await durable(r)

        d = r(p, "diff", a=str(a), b="now", max_files=4, max_diff_bytes=3000)
        f = d["files"]
        assert d["b"] == b and [e["path"] for e in f["changes"]] == [f"/shared/f{i}.txt" for i in range(4)]
        assert (f["count"], f["truncated"], f["diff_truncated"]) == (6, True, True)
        assert sum(len(e.get("diff", "").encode()) for e in f["changes"]) <= 3000
        first, second, third = f["changes"][:3]
        assert not first["diff_truncated"] and first["diff"].count("\n") == 203  # 3 header lines
        assert second["diff_truncated"] and second["diff"].endswith("\n"), "whole lines only"
        assert third["diff_truncated"] and third["diff"] == "" and len(third["sha256"][1]) == 64

        quiet = r(p, "diff", a=str(a), b=str(b), content=False, files_only=True)
        assert set(quiet) == {"a", "b", "ts_a", "ts_b", "events", "files"}
        assert all("diff" not in e and len(e["sha256"][1]) == 64 for e in quiet["files"]["changes"])

        r.fails(p, "EINVAL", "diff", a=str(b), b=str(a))  # A after B: history runs one way
        r.fails(p, "EINVAL", "diff", a=str(a), b=str(b + 1000))  # not durable yet
        r.fails(p, "ENOENT", "diff", a="no-such-point", b=str(b))
        agent = r.agent()
        r.fails(agent, "EACCES", "diff", a=str(a), b=str(b))  # an admin call: agents hold no admin right
        assert r(p, "at", point="now", what="readdir", args={"path": "/shared"})["result"][0] == "f0.txt"

    run_rig(KernelRig(tmp_path), body)


def test_a_diff_from_the_first_event_sees_the_whole_tree_made(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        p = r.person
        r(p, "mkdir", path="/shared/a")
        r(p, "mkdir", path="/shared/a/b")
        r.put(p, "/shared/a/b/x", b"x\n")
        r(p, "link", src="/shared/a/b/x", dst="/shared/a/y")
        r(p, "link", src="/shared/a/b/x", dst="/shared/z")
        r(p, "unlink", path="/shared/z")  # x's last name is now stale: its path is searched for
        r(p, "rename", src="/shared/a", dst="/shared/c")
        await durable(r)
        d = r(p, "diff", a="0", b="now")
        made = {e["path"]: e["status"] for e in d["files"]["changes"]}
        assert made["/"] == made["/shared"] == made["/shared/c/b"] == "created"
        assert {"/shared/c/b/x", "/shared/c/y"} & made.keys(), made  # one of its two names
        assert {row["name"] for row in d["processes"]["born"]["rows"]} >= {"init", "person"}

        fs = r.k.state.world.vfs  # the diff's remembered directory paths agree with the tree's own walk
        side = Side(0, fs, PastView(r.k, r.k.state))
        assert {ino: side.path(ino) for ino in fs.inodes} == {ino: fs.path_of(ino) for ino in fs.inodes}

    run_rig(KernelRig(tmp_path), body)


def test_cli_diff(kernel: KernelProcess, agent_file: Any) -> None:
    home = kernel.home
    ok(home, "fs", "put", "-", "/shared/notes.txt", stdin=b"first\n")
    a = kernel.wait_for(lambda c: c.call("status")["durable_seq"])
    pid = int(kernel.call("spawn", target=agent_file(WRITER), argv=["/shared/notes.txt", "first\nsecond\n"]))
    with kernel.client() as c:
        assert c.call("wait", pid=pid, timeout=20)["status"] == 0
    seq = kernel.call("status")["seq"]
    kernel.wait_for(lambda c: c.call("status")["durable_seq"] >= seq)

    text = ok(home, "diff", str(a), str(seq)).decode()
    assert f"diff seq {a} → {seq}" in text
    assert f"  + {pid:<5} " in text and f"  - {pid:<5} " in text and "exit 0" in text
    assert "  M  /shared/notes.txt  (6 → 13 bytes)" in text
    assert f"--- /shared/notes.txt@{a}\n+++ /shared/notes.txt@{seq}\n" in text and "\n+second\n" in text
    assert "llm calls: none" in text

    got = json.loads(ok(home, "diff", "--json", "--files-only", "--no-content", str(a), str(seq)))
    assert [e["path"] for e in got["files"]["changes"]] == ["/shared/notes.txt"] and "processes" not in got
    assert "diff" not in got["files"]["changes"][0]

    refused = agentos(home, "diff", str(seq), str(a))
    assert refused.returncode == 1 and b"history runs one way" in refused.stderr
