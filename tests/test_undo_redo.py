"""Kernel-wide undo and redo: ``undo``, ``redo``, ``undo_list`` and ``agentos undo [N] | --pid P
--last N | --list``, ``agentos redo``.

In-process first (a kernel on a fresh home driven through ``Kernel.call``): undo of the last
operations of different agents restores exactly those; a grant's undo revokes it and its redo
grants a new capability; a revocation is skipped with its reason; redo re-applies; a new operation
clears the redo stack; ``pid`` limits to one process; conflicts are reported and left alone; mount
and group limits go back; arguments are fuzzed. Then a real kernel process and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.errors import AgentOSError
from agentos.kernel.calls import Caller
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig


class Rig(KernelRig):
    n = 0

    def __call__(self, who: Caller, call: str, /, **args: Any) -> Any:
        self.n += 1  # each call its own correlation, as the runtimes give: an agent's n, a session's request
        if who.kind == "agent":
            who.n = self.n
        else:
            who.request = str(self.n)
        return self.k.call(who, call, args).result

    def spawn(self, name: str) -> Caller:
        return Caller(pid=self(self.person, "spawn", target=self.target, name=name), kind="agent")

    def undo(self, **args: Any) -> dict[str, Any]:
        return self(self.person, "undo", **args)

    def redo(self, **args: Any) -> dict[str, Any]:
        return self(self.person, "redo", **args)

    def ops(self, **args: Any) -> list[dict[str, Any]]:
        return self(self.person, "undo_list", **args)["ops"]


def run(tmp_path: Path, body: Callable[[Rig], None]) -> None:
    run_rig(Rig(tmp_path), body, check_rebuild=True)


def three_agents_write(r: Rig) -> tuple[Caller, Caller, Caller]:
    """The person makes /shared/a, b, c ("0"); then agents a, b, c each rewrite one: one operation each."""
    for name in "abc":
        r.put(r.person, f"/shared/{name}", b"0")
    agents = r.spawn("a"), r.spawn("b"), r.spawn("c")
    for name, who in zip("abc", agents, strict=True):
        fd = r(who, "open", path=f"/shared/{name}", flags=["write", "truncate"])
        r(who, "write", fd=fd, data=name.upper().encode())
        r(who, "close", fd=fd)  # the version: the operation (its pending writes belong to it)
    return agents


def contents(r: Rig) -> list[bytes]:
    return [r.cat(f"/shared/{name}") for name in "abc"]


def test_undo_two_of_three_agents_operations_then_redo(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a, b, c = three_agents_write(r)
        listed = r.ops(limit=3)
        assert [(x["pid"], x["process"], x["status"]) for x in listed] == [
            (c.pid, "c", "live"),
            (b.pid, "b", "live"),
            (a.pid, "a", "live"),
        ], "newest first"
        assert listed[0]["what"] == ["write /shared/c (1 bytes, close)"]
        head = r.k.head_seq
        out = r.undo(n=2)
        mark = r.k.head_seq  # the undo's record: its last event
        assert [(x["pid"], x["op"]) for x in out["undone"]] == [
            (c.pid, listed[0]["op"]),
            (b.pid, listed[1]["op"]),
        ]
        assert out["undone"][0]["effects"] == [
            {
                "ino": out["undone"][0]["effects"][0]["ino"],
                "path": "/shared/c",
                "action": "restored",
                "size": 1,
            }
        ]
        assert contents(r) == [b"A", b"0", b"0"], "exactly those two, back as they were"
        assert r.k.head_seq > head and out["events"] == 3, "new events: two versions and the undo's record"
        versions = [
            x for x in r(r.person, "fs_history", path="/shared/c")["versions"] if x["op"] == "version"
        ]
        assert [x["cut"] for x in versions] == ["close", "close", "undo"], "history is kept, not rewritten"
        statuses = [x["status"] for x in r.ops(limit=4)]
        assert statuses[0] == "undo" and statuses[1:3] == [f"undone at {mark}"] * 2
        assert statuses[3] == "live"
        assert r(r.person, "undo_list")["redo"] == 1
        again = r.redo()
        assert [x["undid"] for x in again["redone"]] == [[listed[0]["op"], listed[1]["op"]]]
        assert contents(r) == [b"A", b"B", b"C"], "redo re-applies what the undo undid"
        assert r.redo()["redone"] == [], "nothing left to redo"
        out = r.undo()  # the redo is now the newest operation: undoing it undoes those two again
        assert out["undone"][0]["call"] == "redo" and contents(r) == [b"A", b"0", b"0"]
        assert [x["pid"] for x in r.undo()["undone"]] == [a.pid], "then the next older one"
        assert contents(r) == [b"0", b"0", b"0"]

    run(tmp_path, body)


def test_a_new_operation_after_an_undo_empties_redo(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        _, b, _ = three_agents_write(r)
        r.undo(n=2)
        r.put(b, "/shared/new", b"later")  # a new operation, by anyone
        listing = r(r.person, "undo_list")
        assert listing["redo"] == 0
        got = r.redo()
        assert got["redone"] == [] and got["skipped"] == [] and got["events"] == 0
        assert contents(r) == [b"A", b"0", b"0"], "nothing re-applied"

    run(tmp_path, body)


def test_pid_limits_undo_and_redo_to_one_process(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a, b, c = three_agents_write(r)
        out = r.undo(pid=a.pid, n=5)
        assert {x["pid"] for x in out["undone"]} == {a.pid}
        assert contents(r) == [b"0", b"B", b"C"]
        r.put(c, "/shared/other", b"x")  # c's new operation does not clear a's redo
        assert [x["pid"] for x in r.ops(pid=b.pid)] == [b.pid]
        assert r(r.person, "undo_list", pid=a.pid)["redo"] == 1
        assert r(r.person, "undo_list")["redo"] == 0, "kernel-wide, c's operation cleared it"
        assert r.redo(pid=a.pid)["redone"][0]["undid"] == [out["undone"][0]["op"]]
        assert contents(r) == [b"A", b"B", b"C"]
        # an agent holds no undo right by default, not even on itself; kernel-wide needs proc:all
        r.fails(a, "EACCES", "undo", pid=a.pid)
        r.fails(a, "EACCES", "undo")
        r(r.person, "cap_delegate", to=a.pid, spec={"resource": "proc:children", "rights": ["undo"]})
        r.fails(a, "EACCES", "undo", dry_run=True)
        r(r.person, "cap_delegate", to=a.pid, spec={"resource": "proc:*", "rights": ["undo"]})
        assert len(r(a, "undo", n=2, dry_run=True)["undone"]) == 2, "proc:* covers everyone's"

    run(tmp_path, body)


def test_conflicts_are_reported_and_left_alone(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a, b = r.spawn("a"), r.spawn("b")
        r.put(r.person, "/shared/doc", b"base")
        fd = r(a, "open", path="/shared/doc", flags=["write", "truncate"])
        r(a, "write", fd=fd, data=b"a's")
        r(a, "close", fd=fd)
        fd = r(b, "open", path="/shared/doc", flags=["write", "truncate"])
        r(b, "write", fd=fd, data=b"b's")
        r(b, "close", fd=fd)
        out = r.undo(pid=a.pid)
        assert out["undone"] == [] and out["conflicts_count"] == 1
        conflict = out["conflicts"][0]
        assert (conflict["path"], conflict["pid"], conflict["process"]) == ("/shared/doc", b.pid, "b")
        assert "conflict: /shared/doc" in out["skipped"][0]["reasons"][0]
        assert r.cat("/shared/doc") == b"b's", "left as b made it"

    run(tmp_path, body)


def test_undo_of_a_grant_revokes_it_and_redo_grants_a_new_one(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.spawn("a")
        r(r.person, "mkdir", path="/shared/box")
        grant = r(r.person, "cap_delegate", to=a.pid, spec={"resource": "fs:/shared/box", "rights": ["read"]})
        assert r.ops(limit=1)[0]["what"] == [f"grant cap {grant['cap']} (fs:/shared/box read) to pid {a.pid}"]
        out = r.undo()
        assert out["undone"][0]["effects"][0]["action"] == "revoked"
        assert grant["cap"] in r.k.state.ledger.revoked
        assert grant["cap"] not in {x["cap"] for x in r(a, "cap_list") if x["status"] == "live"}
        again = r.redo()
        new = again["redone"][0]["effects"][0]
        assert new["action"] == "granted" and new["was"] == grant["cap"] and new["cap"] > grant["cap"]
        held = {x["cap"]: x for x in r(a, "cap_list")}
        assert held[new["cap"]]["resource"] == "fs:/shared/box" and held[new["cap"]]["rights"] == ["read"]
        assert held[new["cap"]]["status"] == "live" and held[new["cap"]]["origin"] == "redo"
        assert grant["cap"] in r.k.state.ledger.revoked, "the old id stays revoked: ids are never reused"

    run(tmp_path, body)


def test_a_revocation_is_skipped_with_the_reason(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.spawn("a")
        r.put(a, "/shared/before", b"x")
        grant = r(r.person, "cap_delegate", to=a.pid, spec={"resource": "fs:/shared", "rights": ["read"]})
        r(r.person, "cap_revoke", cap=grant["cap"])
        out = r.undo()
        assert out["undone"] == [] and len(out["skipped"]) == 1
        assert "never revives a revoked capability" in out["skipped"][0]["reasons"][0]
        assert grant["cap"] in r.k.state.ledger.revoked, "still revoked"
        assert r.ops(limit=1)[0]["status"] == "undo"
        out = r.undo()  # passed over: the next undo goes further back, to the grant itself
        assert out["undone"] == [] and out["skipped"][0]["call"] == "cap_delegate"
        assert out["skipped"][0]["reasons"] == [f"capability {grant['cap']} was already revoked"]
        assert out["events"] == 1, "only the undo's record: a revocation is not made twice"
        out = r.undo()
        assert [x["pid"] for x in out["undone"]] == [a.pid] and r.cat("/shared/before") == b""

    run(tmp_path, body)


def test_group_limits_and_mounts_go_back(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.spawn("a")
        group = f"/agent-{a.pid}"
        before = r.k.state.world.groups.get(group).limits
        r(r.person, "group_limit", group=group, limits={"files": 7})
        source = tmp_path / "hostdir"
        source.mkdir()
        r(r.person, "mount", path="/mnt", source=str(source), kind="host")
        r(r.person, "umount", path="/mnt")
        out = r.undo(n=3)
        assert [x["call"] for x in out["undone"]] == ["umount", "mount", "group_limit"]
        assert "/mnt" not in r.k.state.world.vfs.mounts, "mounted again, then unmounted again"
        assert r.k.state.world.groups.get(group).limits == before
        r.redo()
        assert r.k.state.world.groups.get(group).limits["files"] == 7
        assert "/mnt" not in r.k.state.world.vfs.mounts, "mount, then umount: re-applied in order"

    run(tmp_path, body)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        three_agents_write(r)
        head = r.k.head_seq
        out = r.undo(n=3, dry_run=True)
        assert len(out["undone"]) == 3 and out["events"] == 0 and out["dry_run"]
        assert r.k.head_seq == head and contents(r) == [b"A", b"B", b"C"]

    run(tmp_path, body)


# -- fuzzing the arguments ---------------------------------------------------------------------------------

ARG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
    st.binary(max_size=8),
)
ARGS = st.dictionaries(st.sampled_from(["n", "pid", "dry_run", "limit", "bogus"]), ARG, max_size=4)


def test_fuzzed_arguments_get_typed_errors(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        three_agents_write(r)

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(call=st.sampled_from(["undo", "redo", "undo_list"]), args=ARGS)
        def one(call: str, args: dict[str, Any]) -> None:
            args = {**args, "dry_run": True} if call != "undo_list" else args
            try:
                r(r.person, call, **args)
            except AgentOSError as err:
                assert err.category in ("invalid", "not-found"), (call, args, err)

        one()

    run_rig(Rig(tmp_path), body)


# -- a real kernel process and the CLI ----------------------------------------------------------------------


def agentos(home: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    cmd = [sys.executable, "-m", "agentos", argv[0], "--home", str(home), *argv[1:]]
    return subprocess.run(cmd, input=b"", capture_output=True, env=env, timeout=60)


def ok(home: Path, *argv: str) -> str:
    r = agentos(home, *argv)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout.decode()


WRITER = """
from agentos import sdk

async def main(path, text):
    fd = await sdk.open(path, ["write", "create", "truncate"])
    await sdk.write(fd, text.encode())
    await sdk.close(fd)
"""


def test_cli_undo_list_redo_text_and_json(kernel: KernelProcess, agent_file: Any) -> None:
    home = kernel.home
    target = agent_file(WRITER)
    pids = []
    for name, text in (("one", "1"), ("two", "2")):
        pids.append(int(kernel.call("spawn", target=target, argv=[f"/shared/{name}", text], name=name)))
        with kernel.client() as c:
            assert c.call("wait", pid=pids[-1], timeout=20)["status"] == 0
    listing = ok(home, "undo", "--list")
    assert "STATUS" in listing and "write /shared/two" in listing and "close" in listing
    dry = ok(home, "undo", "--dry-run")
    assert f"would undo: op {pids[1]}:" in dry and "removed /shared/two" not in dry
    assert kernel.call("readdir", path="/shared").count("two") == 1
    text = ok(home, "undo", "2")  # two's close and its create (open with create): two is gone
    assert text.count("undone: op") == 2 and "removed /shared/two" in text and "open" in text
    assert "two" not in kernel.call("readdir", path="/shared")
    got = json.loads(ok(home, "redo", "--json"))
    assert [(x["call"], x["process"]) for x in got["redone"]] == [("undo", "agentos-cli")]
    assert got["redone"][0]["undid"][0].startswith(f"{pids[1]}:")
    assert "two" in kernel.call("readdir", path="/shared")
    report = json.loads(ok(home, "undo", "--pid", str(pids[0]), "--last", "1", "--json"))
    assert [x["pid"] for x in report["undone"]] == [pids[0]] and report["scope"] == pids[0]
    assert "nothing to redo" not in ok(home, "undo", "--list", "--pid", str(pids[0]))
    assert "redone: op" in ok(home, "redo", "--pid", str(pids[0]))
    assert "nothing to redo" in ok(home, "redo")
    assert agentos(home, "undo", "2", "--pid", "5").returncode == 2, "--pid P alone keeps its meaning"
