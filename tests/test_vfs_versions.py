"""File versions, provenance, restore and undo: ``fs_history``, ``fs_read_version``, ``fs_restore``,
``fs_undo`` and ``agentos fs history|cat PATH@SEQ|diff|restore|get``, ``agentos undo``.

In-process first (a kernel on a fresh home driven through ``Kernel.call``): who made each version,
a file's bytes as of a seq, history across renames and deletion, restore (also of a deleted file),
undo of each kind of change (create, modify, unlink, rename, mkdir, rmdir, an atomic replace, a
killed agent's last writes), ``--tree``, one call by its correlation, conflicts left alone,
capabilities, and the state rebuilt from the log equal to the live one. Then a real kernel process:
an SDK agent writes, the CLI shows, compares, restores and undoes, across a kill -9.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos import param
from agentos.errors import AgentOSError
from agentos.kernel.calls import Caller
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig

# -- in-process ---------------------------------------------------------------------------------------


class Rig(KernelRig):
    n = 0

    def __call__(self, who: Caller, call: str, /, **args: Any) -> Any:
        if who.kind == "agent":  # each call of an agent has its own syscall id, as the stepper gives
            self.n += 1
            who.n = self.n
        return self.k.call(who, call, args).result

    def spawn(self, name: str, by: Caller | None = None, **more: Any) -> Caller:
        pid = self(by or self.person, "spawn", target=self.target, name=name, **more)
        return Caller(pid=pid, kind="agent")

    def cat(self, path: str, seq: int | None = None) -> bytes:
        if seq is not None:
            return self(self.person, "fs_read_version", path=path, seq=seq)["data"]
        return super().cat(path)

    def history(self, path: str) -> list[dict[str, Any]]:
        return self(self.person, "fs_history", path=path)["versions"]

    def versions(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.history(path) if r["op"] == "version"]

    def undo(self, **args: Any) -> dict[str, Any]:
        return self(self.person, "fs_undo", **args)

    def ls(self, path: str) -> list[str]:
        return self(self.person, "readdir", path=path)


def run(tmp_path: Path, body: Callable[[Rig], Awaitable[None] | None]) -> None:
    run_rig(Rig(tmp_path), body)


def test_history_names_who_made_each_version(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        alice, bob = r.spawn("alice"), r.spawn("bob")
        r.put(alice, "/shared/doc", b"one\n")
        r.put(bob, "/shared/doc", b"two\n")
        fd = r(bob, "open", path="/shared/doc", flags=["write", "append"])
        r(bob, "write", fd=fd, data=b"three\n")
        r(bob, "fsync", fd=fd)
        r(bob, "write", fd=fd, data=b"four\n")
        r(bob, "exit", status=0)  # its fd is closed at exit: a version cut by the exit
        rows = r.history("/shared/doc")
        assert [(x["op"], x.get("cut"), x["pid"], x["process"], x["size"]) for x in rows] == [
            ("create", "create", alice.pid, "alice", 0),
            ("version", "close", alice.pid, "alice", 4),
            ("version", "close", bob.pid, "bob", 4),
            ("version", "fsync", bob.pid, "bob", 10),
            ("version", "exit", bob.pid, "bob", 15),
        ]
        assert all(x["seq"] < y["seq"] for x, y in zip(rows, rows[1:], strict=False)), "oldest first"
        assert all(x["ts"] > 0 and x["ino"] == rows[0]["ino"] for x in rows)
        assert rows[1]["syscall"] == rows[1]["correlation"] and rows[1]["syscall"].startswith(f"{alice.pid}:")
        assert rows[1]["hash"] != rows[2]["hash"] and len(rows[1]["hash"]) == 64, "the manifest's hash"
        assert r.history("/shared/doc") == rows, "the same answer twice (and once committed)"
        page = r(r.person, "fs_history", path="/shared/doc", since=rows[1]["seq"], limit=2)
        assert [x["seq"] for x in page["versions"]] == [rows[2]["seq"], rows[3]["seq"]] and page["more"]
        r.fails(r.person, "ENOENT", "fs_history", path="/shared/never")
        r.fails(r.person, "EISDIR", "fs_history", path="/shared")
        r.fails(r.person, "EINVAL", "fs_history", path="/dev/null")

    run(tmp_path, body)


def test_read_a_version_as_of_a_seq_or_exactly(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/f", b"first")
        mark = r.k.head_seq
        r(p, "mkdir", path="/shared/elsewhere")  # events between versions
        r.put(p, "/shared/f", b"second, longer")
        v1, v2 = (x["seq"] for x in r.versions("/shared/f"))
        made = r.history("/shared/f")[0]["seq"]
        assert r.cat("/shared/f", v1) == b"first"
        assert r.cat("/shared/f", mark + 1) == b"first", "as of a seq: the last version at or before it"
        assert r.cat("/shared/f", v2) == r.cat("/shared/f", 10**9) == b"second, longer"
        assert r.cat("/shared/f", made) == b"", "its creation is its empty first version"
        got = r(p, "fs_read_version", path="/shared/f", seq=v2, offset=8, n=3)
        assert (got["data"], got["seq"], got["size"]) == (b"lon", v2, 14)
        assert r(p, "fs_read_version", path="/shared/f", seq=v2, offset=99)["data"] == b""
        assert r(p, "fs_read_version", path="/shared/f", seq=v1, exact=True)["data"] == b"first"
        r.fails(p, "ENOENT", "fs_read_version", path="/shared/f", seq=mark + 1, exact=True)
        r.fails(p, "ENOENT", "fs_read_version", path="/shared/f", seq=made - 1)
        r.fails(p, "EINVAL", "fs_read_version", path="/shared/f", seq=-1)
        r.fails(p, "EINVAL", "fs_read_version", path="/shared/f", seq=1, n=param.MAX_ARG_BYTES + 1)

    run(tmp_path, body)


def test_history_follows_renames_and_outlives_deletion(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/a", b"v1")
        r(p, "rename", src="/shared/a", dst="/shared/b")
        r.put(p, "/shared/b", b"v2")
        rows = r.history("/shared/b")
        assert [(x["op"], x.get("name"), x.get("from")) for x in rows] == [
            ("create", "a", None),
            ("version", None, None),
            ("rename", "b", "a"),
            ("version", None, None),
        ]
        r(p, "unlink", path="/shared/b")
        gone = r(p, "fs_history", path="/shared/b")
        assert not gone["exists"] and gone["versions"][-1]["op"] == "unlink"
        assert r.cat("/shared/b", rows[1]["seq"]) == b"v1", "a deleted file's versions are readable"
        # an atomic replace (write a new file, rename it over the old): one history for the path
        r.put(p, "/shared/cfg", b"old")
        r.put(p, "/shared/cfg.tmp", b"new")
        r(p, "rename", src="/shared/cfg.tmp", dst="/shared/cfg")
        sizes = [(x["op"], x["size"]) for x in r.history("/shared/cfg")]
        assert sizes == [("create", 0), ("version", 3), ("create", 0), ("version", 3), ("rename", 3)]
        old = r.versions("/shared/cfg")[0]["seq"]
        assert r.cat("/shared/cfg", old) == b"old"

    run(tmp_path, body)


def test_restore_is_a_new_version_and_brings_back_a_deleted_file(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/f", b"good")
        r.put(p, "/shared/f", b"bad")
        good = r.versions("/shared/f")[0]["seq"]
        ino = r(p, "stat", path="/shared/f")["ino"]
        assert r(p, "fs_restore", path="/shared/f", seq=good) == {
            "changed": True,
            "seq": good,
            "size": 4,
            "ino": ino,
        }
        assert r.cat("/shared/f") == b"good"
        rows = r.versions("/shared/f")
        assert [x["cut"] for x in rows] == ["close", "close", "restore"], "history kept, one more version"
        assert rows[-1]["hash"] == rows[0]["hash"], "the same content: nothing new stored"
        assert r(p, "fs_restore", path="/shared/f", seq=good)["changed"] is False
        r(p, "unlink", path="/shared/f")
        r.fails(p, "ENOENT", "stat", path="/shared/f")
        assert r(p, "fs_restore", path="/shared/f", seq=good)["ino"] == ino, "its own inode number back"
        assert r.cat("/shared/f") == b"good"
        assert r(p, "stat", path="/shared/f")["ino"] == ino
        assert [x["op"] for x in r.history("/shared/f")][-3:] == ["unlink", "create", "version"]
        r.fails(p, "ENOENT", "fs_restore", path="/shared/f", seq=good + 1, exact=True)
        r.fails(p, "ENOENT", "fs_restore", path="/shared/nothing", seq=good)
        await r.rebuilt_equals_live()

    run(tmp_path, body)


def test_undo_reverts_create_modify_unlink_rename_mkdir_rmdir(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/shared/old")
        r.put(p, "/shared/old/inside", b"inside")
        r.put(p, "/shared/edit", b"original")
        r.put(p, "/shared/keep", b"keep me")
        r.put(p, "/shared/r1", b"moved")
        inos = {name: r(p, "stat", path=f"/shared/{name}")["ino"] for name in ("edit", "keep", "old")}
        before = {name: r.cat(f"/shared/{name}") for name in ("edit", "keep", "r1")}
        a = r.spawn("mess")
        r(a, "mkdir", path="/shared/new")
        r.put(a, "/shared/new/made", b"made")
        r.put(a, "/shared/edit", b"changed")
        r.put(a, "/shared/edit", b"changed again")
        r(a, "unlink", path="/shared/keep")
        r(a, "rename", src="/shared/r1", dst="/shared/r2")
        r(a, "unlink", path="/shared/old/inside")
        r(a, "rmdir", path="/shared/old")
        assert r.ls("/shared") == ["edit", "new", "r2"]
        report = r.undo(pid=a.pid)
        assert report["conflicts"] == report["denied"] == [] and report["pids"] == [a.pid]
        assert {(x["action"], x["path"]) for x in report["reverted"]} == {
            ("removed", "/shared/new/made"),
            ("removed", "/shared/new"),
            ("restored", "/shared/edit"),
            ("recreated", "/shared/keep"),
            ("restored", "/shared/keep"),
            ("moved", "/shared/r1"),
            ("recreated", "/shared/old"),
            ("recreated", "/shared/old/inside"),
            ("restored", "/shared/old/inside"),
        }
        assert r.ls("/shared") == ["edit", "keep", "old", "r1"]
        assert {name: r.cat(f"/shared/{name}") for name in before} == before
        assert r.cat("/shared/old/inside") == b"inside"
        assert {name: r(p, "stat", path=f"/shared/{name}")["ino"] for name in inos} == inos
        assert r.versions("/shared/edit")[-1]["cut"] == "undo"
        assert r.versions("/shared/edit")[-1]["pid"] == p.pid, "the undo's events are its caller's"
        again = r.undo(pid=a.pid)
        assert (again["reverted"], again["conflicts"], again["events"]) == ([], [], 0), "nothing left"
        await r.rebuilt_equals_live()

    run(tmp_path, body)


def test_undo_leaves_a_later_change_by_someone_else_and_reports_it(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/later", b"base")
        r.put(p, "/shared/between", b"base")
        a, b = r.spawn("a"), r.spawn("b")
        r.put(a, "/shared/later", b"a's")
        r.put(a, "/shared/between", b"a's 1")
        r.put(b, "/shared/later", b"b's")  # after a's last change
        r.put(b, "/shared/between", b"b's")
        r.put(a, "/shared/between", b"a's 2")  # b's change sits between two of a's
        r(a, "mkdir", path="/shared/dir")
        r.put(b, "/shared/dir/b-file", b"b's")
        r.put(a, "/shared/own", b"only a's")
        plan = r.undo(pid=a.pid, dry_run=True)
        assert plan["events"] == 0 and r.cat("/shared/own") == b"only a's", "a dry run changes nothing"
        report = r.undo(pid=a.pid)
        conflicts = {x["path"]: x for x in report["conflicts"]}
        assert set(conflicts) == {"/shared/later", "/shared/between", "/shared/dir"}
        later = conflicts["/shared/later"]
        assert (later["pid"], later["process"]) == (b.pid, "b")
        assert later["seq"] == r.versions("/shared/later")[-1]["seq"]
        assert conflicts["/shared/between"]["pid"] == b.pid
        assert (conflicts["/shared/dir"]["reason"], conflicts["/shared/dir"]["pid"]) == ("not empty", b.pid)
        assert [x["path"] for x in report["reverted"]] == ["/shared/own"]
        assert r.cat("/shared/later") == b"b's" and r.cat("/shared/between") == b"a's 2", "not clobbered"
        assert r.ls("/shared/dir") == ["b-file"]
        await r.rebuilt_equals_live()

    run(tmp_path, body)


def test_undo_an_atomic_replace_and_a_killed_agents_last_writes(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/cfg", b"v1")
        ino = r(p, "stat", path="/shared/cfg")["ino"]
        a = r.spawn("saver")
        r.put(a, "/shared/cfg.tmp", b"v2")
        r(a, "rename", src="/shared/cfg.tmp", dst="/shared/cfg")
        fd = r(a, "open", path="/shared/cfg", flags=["write", "append"])
        r(a, "write", fd=fd, data=b"+pending")  # not cut: a's kill cuts it, emitted by its killer
        r(p, "kill", pid=a.pid, sig="KILL")
        assert r.cat("/shared/cfg") == b"v2+pending" and r.versions("/shared/cfg")[-1]["pid"] == a.pid
        report = r.undo(pid=a.pid)
        assert report["conflicts"] == []
        assert r.cat("/shared/cfg") == b"v1" and r(p, "stat", path="/shared/cfg")["ino"] == ino
        assert r.ls("/shared") == ["cfg"]

    run(tmp_path, body)


def test_undo_tree_reaches_a_child_and_one_call_undoes_alone(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        parent = r.spawn("parent")
        child = r.spawn("child", by=parent)
        r.put(parent, "/shared/by-parent", b"p")
        r.put(child, "/shared/by-child", b"c")
        r.undo(pid=parent.pid)
        assert r.ls("/shared") == ["by-child"], "without --tree: the parent's changes only"
        report = r.undo(pid=parent.pid, tree=True)
        assert report["pids"] == [parent.pid, child.pid] and r.ls("/shared") == []
        # one call, by its correlation id: a transaction undoes whole, the rest stays
        r.put(p, "/shared/pre", b"pre")
        txn = r(
            parent,
            "fs_transaction",
            ops=[
                {"op": "write", "path": "/shared/t1", "data": b"1"},
                {"op": "write", "path": "/shared/t2", "data": b"2"},
                {"op": "unlink", "path": "/shared/pre"},
            ],
        )
        r.put(parent, "/shared/after", b"later call")
        report = r.undo(correlation=txn["correlation"])
        assert report["conflicts"] == [] and report["pids"] == []
        assert r.ls("/shared") == ["after", "pre"] and r.cat("/shared/pre") == b"pre"
        r.fails(p, "EINVAL", "fs_undo")
        r.fails(p, "EINVAL", "fs_undo", pid=parent.pid, correlation=txn["correlation"])
        r.fails(p, "EINVAL", "fs_undo", correlation=txn["correlation"], tree=True)
        await r.rebuilt_equals_live()

    run(tmp_path, body)


def test_capabilities_history_needs_read_restore_write_undo_its_right(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/shared/mine")
        r(p, "mkdir", path="/shared/theirs")
        r.put(p, "/shared/mine/f", b"v1")
        r.put(p, "/shared/theirs/g", b"v1")
        v1 = r.versions("/shared/mine/f")[0]["seq"]
        a = r.spawn("writer")
        r.put(a, "/shared/mine/f", b"v2")
        r.put(a, "/shared/theirs/g", b"v2")
        r.fails(a, "EACCES", "fs_undo", pid=a.pid)  # no undo right by default, even on oneself
        lister = r.spawn("lister", caps=[{"resource": "fs:/shared", "rights": ["list"]}])
        r.fails(lister, "EACCES", "fs_history", path="/shared/mine/f")
        r.fails(lister, "EACCES", "fs_read_version", path="/shared/mine/f", seq=v1)
        undoer = r.spawn(
            "undoer",
            caps=[
                {"resource": "proc:*", "rights": ["undo"]},
                {"resource": "fs:/shared/mine", "rights": ["read", "write"]},
            ],
        )
        assert len(r(undoer, "fs_history", path="/shared/mine/f")["versions"]) == 3
        r.fails(undoer, "EACCES", "fs_restore", path="/shared/theirs/g", seq=v1)
        report = r(undoer, "fs_undo", pid=a.pid)
        assert [x["path"] for x in report["reverted"]] == ["/shared/mine/f"]
        assert [x["path"] for x in report["denied"]] == ["/shared/theirs/g"]
        assert "write" in report["denied"][0]["reason"]
        assert r.cat("/shared/mine/f") == b"v1" and r.cat("/shared/theirs/g") == b"v2"
        r(undoer, "fs_restore", path="/shared/mine/f", seq=r.versions("/shared/mine/f")[1]["seq"])
        assert r.cat("/shared/mine/f") == b"v2"

    run(tmp_path, body)


# -- a real kernel process, an SDK agent and the CLI ------------------------------------------------------


def agentos(home: Path, *argv: str, words: int = 2) -> subprocess.CompletedProcess[bytes]:
    """``agentos W1 [W2] --home HOME ARGS...`` (``words``: how many name the command)."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    cmd = [sys.executable, "-m", "agentos", *argv[:words], "--home", str(home), *argv[words:]]
    return subprocess.run(cmd, input=b"", capture_output=True, env=env, timeout=60)


def ok(home: Path, *argv: str, words: int = 2) -> bytes:
    r = agentos(home, *argv, words=words)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout


EDITOR = """
from agentos import sdk

async def main(path, *texts):
    for text in texts:
        fd = await sdk.open(path, ["write", "create", "truncate"])
        await sdk.write(fd, text.encode())
        await sdk.close(fd)
    return 0
"""


def test_cli_history_cat_diff_restore_get(kernel: KernelProcess, agent_file: Any, tmp_path: Path) -> None:
    home = kernel.home
    path = "/shared/notes.txt"
    pid = int(
        kernel.call("spawn", target=agent_file(EDITOR), argv=[path, "a\nb\n", "a\nB\nc\n"], name="editor")
    )
    with kernel.client() as c:
        assert c.call("wait", pid=pid, timeout=20)["status"] == 0
    ok(home, "fs", "put", "-", path)  # a session, reaped when the command ends: its name stays
    rows = json.loads(ok(home, "fs", "history", path, "--json"))["versions"]
    versions = [x for x in rows if x["op"] == "version"]
    assert [(x["pid"], x["process"]) for x in versions] == [(pid, "editor")] * 2 + [
        (versions[2]["pid"], "agentos-cli")
    ]
    v1, v2 = versions[0]["seq"], versions[1]["seq"]
    table = ok(home, "fs", "history", path).decode()
    assert "SEQ" in table and "editor" in table and f"{pid}:" in table and str(v2) in table
    assert ok(home, "fs", "cat", f"{path}@{v1}") == b"a\nb\n"
    assert ok(home, "fs", "cat", path) == b""
    ok(home, "fs", "put", "-", "/shared/odd@name")
    assert ok(home, "fs", "cat", "/shared/odd@name") == b"", "an @ not followed by digits is the path"
    d = agentos(home, "fs", "diff", f"{path}@{v1}", f"{path}@{v2}")
    assert d.returncode == 1
    assert d.stdout.decode().splitlines() == [
        f"--- {path}@{v1}",
        f"+++ {path}@{v2}",
        "@@ -1,2 +1,3 @@",
        " a",
        "-b",
        "+B",
        "+c",
    ]
    assert agentos(home, "fs", "diff", f"{path}@{v1}", f"{path}@{v1}").returncode == 0
    assert agentos(home, "fs", "diff", path, "/shared/missing").returncode == 2
    ok(home, "fs", "put", "-", "/shared/bin")
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\x00\x01")
    ok(home, "fs", "put", str(binary), "/shared/bin")
    b = agentos(home, "fs", "diff", "/shared/bin", path + f"@{v1}")
    assert b.returncode == 1 and b"Binary files" in b.stdout and b"3 bytes, sha256" in b.stdout
    assert b"restored the version" in ok(home, "fs", "restore", f"{path}@{v2}")
    assert ok(home, "fs", "get", path, "-") == b"a\nB\nc\n"
    out = tmp_path / "got.txt"
    ok(home, "fs", "get", f"{path}@{v1}", str(out))
    assert out.read_bytes() == b"a\nb\n"
    kernel.kill9()
    kernel.boot()
    after = json.loads(ok(home, "fs", "history", path, "--json"))["versions"]
    assert after[: len(rows)] == rows and after[-1]["cut"] == "restore", "history is the durable log"


def test_cli_undo_reverts_an_agent_and_reports_a_conflict(kernel: KernelProcess, agent_file: Any) -> None:
    home = kernel.home
    ok(home, "fs", "put", "-", "/shared/plan.md")
    writer = agent_file(EDITOR)
    pid = int(kernel.call("spawn", target=writer, argv=["/shared/plan.md", "agent's plan"], name="planner"))
    pid2 = int(kernel.call("spawn", target=writer, argv=["/shared/scratch", "x", "y"], name="planner"))
    with kernel.client() as c:
        assert c.call("wait", pid=pid, timeout=20)["status"] == 0
        assert c.call("wait", pid=pid2, timeout=20)["status"] == 0
    dry = ok(home, "undo", "--pid", str(pid), "--dry-run", words=1).decode()
    assert "would revert: restored  /shared/plan.md" in dry
    assert ok(home, "fs", "cat", "/shared/plan.md") == b"agent's plan"
    assert "reverted: restored  /shared/plan.md" in ok(home, "undo", "--pid", str(pid), words=1).decode()
    assert ok(home, "fs", "cat", "/shared/plan.md") == b""
    ok(home, "fs", "put", "-", "/shared/scratch")  # a later change by someone else
    r = agentos(home, "undo", "--pid", str(pid2), "--json", words=1)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert [(x["path"], x["process"]) for x in report["conflicts"]] == [("/shared/scratch", "agentos-cli")]
    assert ok(home, "fs", "cat", "/shared/scratch") == b"", "left as the later change made it"
    text = agentos(home, "undo", "--pid", str(pid2), words=1)
    assert text.returncode == 1 and b"conflict: /shared/scratch" in text.stdout
    assert agentos(home, "undo", "--tree", words=1).returncode == 2, "a usage error: whose tree?"
    assert agentos(home, "undo", "2", "--pid", str(pid), words=1).returncode == 2, "--pid P --last N"


# -- a property: undo puts back exactly what one process changed ------------------------------------------

NAMES = ["/shared/a", "/shared/b", "/shared/d", "/shared/d/a", "/shared/d/b", "/shared/e", "/shared/e/a"]
BASE = [
    ("put", "/shared/a", b"A"),
    ("put", "/shared/b", b"B"),
    ("mkdir", "/shared/d"),
    ("put", "/shared/d/a", b"DA"),
]
OP = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(NAMES), st.binary(max_size=6)),
    st.tuples(st.just("unlink"), st.sampled_from(NAMES)),
    st.tuples(st.just("mkdir"), st.sampled_from(NAMES)),
    st.tuples(st.just("rmdir"), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
)


def apply_op(r: Rig, who: Caller, op: tuple[Any, ...]) -> None:
    try:
        if op[0] == "put":
            r.put(who, op[1], op[2])
        elif op[0] == "rename":
            r(who, "rename", src=op[1], dst=op[2])
        else:
            r(who, op[0], path=op[1])
    except AgentOSError as err:  # ENOENT, EEXIST, ENOTEMPTY, ...: a typed refusal, nothing changed
        assert err.category != "internal", err


def tree(r: Rig, path: str = "/shared") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in r.ls(path):
        sub = f"{path}/{name}"
        st_ = r(r.person, "stat", path=sub)
        out[sub] = ("dir", st_["ino"]) if st_["kind"] == "dir" else (r.cat(sub), st_["ino"])
        if st_["kind"] == "dir":
            out |= tree(r, sub)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    setup=st.lists(OP, max_size=4),
    mine=st.lists(OP, min_size=1, max_size=10),
    theirs=st.lists(st.tuples(st.integers(0, 10), OP), max_size=3),
)
def test_undo_puts_back_exactly_what_one_process_changed(
    tmp_path_factory: pytest.TempPathFactory, setup: list[Any], mine: list[Any], theirs: list[Any]
) -> None:
    async def body(r: Rig) -> None:
        for op in [*BASE, *setup]:
            apply_op(r, r.person, op)
        before = tree(r)
        a, b = r.spawn("a"), r.spawn("b")
        for i, op in enumerate(mine):
            for _ in (x for at, x in theirs if at == i):
                apply_op(r, b, _)
            apply_op(r, a, op)
        report = r.undo(pid=a.pid)
        assert report["denied"] == []
        if not theirs:
            assert all(not c["reason"].startswith("changed later") for c in report["conflicts"]), report
            if not report["conflicts"]:
                assert tree(r) == before, report
        await r.rebuilt_equals_live()
        again = r.undo(pid=a.pid)
        assert again["events"] == 0 or report["conflicts"], (report, again)

    run(tmp_path_factory.mktemp("undo"), body)
