"""``fs_transaction``: several changes that land as one, or not at all (``agentos/kernel/systxn.py``).

In-process (a kernel on a fresh home, driven through ``Kernel.call``): ops in order, each seeing the
ones before; one correlation id and one seq range for all the events; a failing op (each error code)
changes nothing and is named by its index; capabilities per op; quotas over the whole transaction;
the rebuilt state equal to the live one; a transaction's events never split across two commits
(both durability settings); the view copying only what it reads; and, with hypothesis, any list of
ops doing exactly what the same ops do one syscall at a time — or, where one of those fails, nothing.
Then a real kernel process killed with -9 at moments around a large transaction: after the reboot
all of it or none of it is there.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agentos import param
from agentos.errors import AgentOSError, PermissionDenied
from agentos.kernel import systxn
from agentos.kernel.boot import rebuild_state
from agentos.kernel.calls import Caller
from agentos.state import events as ev
from agentos.state.world import state_hash
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig


class Rig(KernelRig):
    request = "r1"

    def agent(self, caps: list[dict[str, Any]]) -> Caller:  # type: ignore[override]
        return Caller(pid=self(self.person, "spawn", target=self.target, caps=caps), kind="agent")

    def put(self, path: str, data: bytes) -> None:  # type: ignore[override] - the person's
        super().put(self.person, path, data)

    def tree(self, top: str) -> dict[str, Any]:
        """Everything below ``top``: relative path -> "dir" or the file's bytes."""
        out: dict[str, Any] = {}
        todo = [""]
        while todo:
            rel = todo.pop()
            for name in self(self.person, "readdir", path=top + rel):
                path = f"{rel}/{name}"
                if self(self.person, "stat", path=top + path)["kind"] == "dir":
                    out[path] = "dir"
                    todo.append(path)
                else:
                    out[path] = self.cat(top + path)
        return out


def run(tmp_path: Path, body: Callable[[Rig], Awaitable[None] | None], durability: str | None = None) -> None:
    run_rig(Rig(tmp_path, durability), body)


def w(path: str, data: bytes, append: bool = False) -> dict[str, Any]:
    return {"op": "write", "path": path, "data": data, "append": append}


def test_ops_land_in_order_as_one_call_with_one_correlation(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        r.put("/w/old", b"old content")
        ops = [
            {"op": "mkdir", "path": "/w/a"},
            w("/w/a/b", b"hello"),  # into the directory the op before made
            w("/w/a/b", b", world", append=True),
            w("/w/old", b"new"),  # replaces the content
            {"op": "rename", "src": "/w/a/b", "dst": "/w/a/c"},
            {"op": "mkdir", "path": "/w/e"},
            {"op": "rmdir", "path": "/w/e"},
            w("/w/gone", b"x"),
            {"op": "unlink", "path": "/w/gone"},
        ]
        head = r.k.head_seq
        done = r(p, "fs_transaction", ops=ops)
        assert done == {
            "correlation": f"s{p.pid}:r1",
            "ops": 9,
            "first_seq": head + 1,
            "last_seq": r.k.head_seq,
        }
        assert r.cat("/w/a/c") == b"hello, world"
        assert r.cat("/w/old") == b"new"
        assert r(p, "readdir", path="/w") == ["a", "old"] and r(p, "readdir", path="/w/a") == ["c"]
        await r.k.committer.durable(r.k.head_seq)
        rows = list(r.k.log.read(head, until=done["last_seq"], conn=r.k.reader))
        assert {row.correlation for row in rows} == {done["correlation"]}, "one id, for undo to find it all"
        kinds = [row.kind for row in rows]
        assert kinds.count("vfs.version") == 4, "a write op cuts a version (b twice, old, gone)"
        assert "vfs.opened" not in kinds, "no fd is opened"
        old = r(p, "stat", path="/w/old")
        versions = [
            (row.seq, ev.decode(row.kind, row.version, row.payload))
            for row in rows
            if row.kind == "vfs.version"
        ]
        assert old["version_seq"] == max(seq for seq, e in versions if e.ino == old["ino"])
        assert state_hash(rebuild_state(r.k.log, until=r.k.state.seq, conn=r.k.reader)) == state_hash(
            r.k.state
        )
        assert r(p, "fs_transaction", ops=[]) == {
            "correlation": f"s{p.pid}:r1",
            "ops": 0,
            "first_seq": None,
            "last_seq": None,
        }

    run(tmp_path, body)


@pytest.mark.parametrize(
    ("ops", "code", "index"),
    [
        (
            [{"op": "mkdir", "path": "/w/n"}, w("/w/n/f", b"1"), {"op": "unlink", "path": "/w/missing"}],
            "ENOENT",
            2,
        ),
        ([{"op": "mkdir", "path": "/w/x"}, {"op": "mkdir", "path": "/w/x"}], "EEXIST", 1),
        ([{"op": "mkdir", "path": "/w/d"}, w("/w/d", b"1")], "EISDIR", 1),
        (
            [{"op": "mkdir", "path": "/w/d"}, w("/w/d/f", b"1"), {"op": "rmdir", "path": "/w/d"}],
            "ENOTEMPTY",
            2,
        ),
        ([w("/w/f", b"1"), {"op": "mkdir", "path": "/w/f/g"}], "ENOTDIR", 1),
        ([w("/w/f", b"1"), {"op": "unlink", "path": "/w/f"}, {"op": "unlink", "path": "/w/f"}], "ENOENT", 2),
        ([{"op": "mkdir", "path": "/w/d"}, {"op": "rename", "src": "/w/d", "dst": "/w/d/in"}], "EINVAL", 1),
        ([w("/w/f", b"1"), {"op": "rmdir", "path": "/w/f"}], "ENOTDIR", 1),
        ([w("/w/f", b"1"), w("/w/f/", b"2")], "EISDIR", 1),  # as Linux's open("f/", O_CREAT)
    ],
)
def test_a_failing_op_changes_nothing_and_names_its_index(
    tmp_path: Path, ops: list[dict[str, Any]], code: str, index: int
) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        before, head = state_hash(r.k.state), r.k.head_seq
        err = r.fails(p, code, "fs_transaction", ops=ops)
        assert err.message.startswith(f"op {index} ("), err
        assert r.k.head_seq == head and state_hash(r.k.state) == before, "nothing happened"
        assert r(p, "readdir", path="/w") == []

    run(tmp_path, body)


def test_bounds_on_ops_and_bytes(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        big = b"x" * param.MAX_ARG_BYTES
        n = param.TXN_MAX_BYTES // param.MAX_ARG_BYTES + 1
        err = r.fails(p, "E2BIG", "fs_transaction", ops=[w(f"/w/f{i}", big) for i in range(n)])
        assert str(param.TXN_MAX_BYTES) in err.message
        r.fails(
            p, "EINVAL", "fs_transaction", ops=[{"op": "mkdir", "path": "/w/d"}] * (param.TXN_MAX_OPS + 1)
        )
        r.fails(p, "EINVAL", "fs_transaction", ops=[{"op": "chown", "path": "/w/d"}])
        r.fails(p, "EINVAL", "fs_transaction", ops=[{"op": "write", "path": "/w/d", "data": b"", "extra": 1}])
        r.fails(p, "EINVAL", "fs_transaction", ops=[w("relative", b"")])
        assert r(p, "readdir", path="/w") == []

    run(tmp_path, body)


def test_each_op_is_checked_against_the_callers_capabilities(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        for d in ("/w", "/w/mine", "/w/other"):
            r(p, "mkdir", path=d)
        a = r.agent([{"resource": "fs:/w/mine", "rights": ["read", "write", "list"]}, {"resource": "sys:fd"}])
        denied = r.k.state.ledger.denials
        err = r.fails(a, "EACCES", "fs_transaction", ops=[w("/w/mine/a", b"1"), w("/w/other/b", b"2")])
        assert err.message.startswith("op 1 (write /w/other/b)")
        assert r.k.state.ledger.denials == denied + 1, "the refusal is audited"
        err = r.fails(
            a,
            "EACCES",
            "fs_transaction",
            ops=[w("/w/mine/a", b"1"), {"op": "rename", "src": "/w/mine/a", "dst": "/w/other/a"}],
        )
        assert err.message.startswith("op 1 (rename /w/mine/a -> /w/other/a)")
        with pytest.raises(PermissionDenied):  # the row: write on the first op's path
            r.k.call(a, "fs_transaction", {"ops": [{"op": "unlink", "path": "/w/other/x"}]})
        assert r(p, "readdir", path="/w/mine") == [] and r(p, "readdir", path="/w/other") == []
        r(a, "fs_transaction", ops=[{"op": "mkdir", "path": "/w/mine/d"}, w("/w/mine/d/f", b"ok")])
        assert r.cat("/w/mine/d/f") == b"ok"
        assert r(a, "fs_transaction", ops=[])["ops"] == 0
        bare = r.agent([])
        with pytest.raises(PermissionDenied):
            r.k.call(bare, "fs_transaction", {"ops": []})

    run(tmp_path, body)


def test_quotas_count_the_whole_transaction(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        a = r.agent([{"resource": "fs:/w", "rights": ["read", "write", "list"]}, {"resource": "sys:fd"}])
        group = r.k.state.world.procs.get(a.pid).group
        r(p, "group_limit", group=group, limits={"file_bytes": 10})
        err = r.fails(a, "EDQUOT", "fs_transaction", ops=[w("/w/a", b"123456"), w("/w/b", b"123456")])
        assert err.message.startswith("op 1 (write /w/b)") and "file_bytes" in err.message
        assert r.k.state.ledger.usage.used.get(group, {}).get("file_bytes", 0) == 0
        assert r(p, "readdir", path="/w") == []
        r(a, "fs_transaction", ops=[w("/w/a", b"123456"), w("/w/b", b"1234")])
        used = r.k.state.ledger.usage.used[group]
        assert used["file_bytes"] == 10 and used["stored_bytes"] > 10

    run(tmp_path, body)


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_a_transactions_events_never_straddle_two_commits(tmp_path: Path, durability: str) -> None:
    """The group committer takes everything pending, between synchronous steps: a transaction's
    events (emitted in one step) always share one SQLite transaction, even with other callers busy."""

    async def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        batches: list[list[int]] = []
        write_events = r.k.log.write_events

        def recording(records: list[Any], blobs: Any = None) -> None:
            batches.append([rec.seq for rec in records])
            write_events(records, blobs)

        r.k.log.write_events = recording  # type: ignore[method-assign]

        async def busy() -> None:  # another caller, emitting between the transactions
            for i in range(200):
                r(p, "mkdir", path=f"/w/busy{i}")
                await asyncio.sleep(0)

        other = asyncio.create_task(busy())
        ranges = []
        for t in range(20):
            ops = [w(f"/w/t{t}-{i}", random.Random(i).randbytes(20_000)) for i in range(10)]
            done = r(p, "fs_transaction", ops=ops)
            ranges.append((done["first_seq"], done["last_seq"]))
            await asyncio.sleep(0)
        await other
        await r.k.committer.durable(r.k.head_seq)
        for first, last in ranges:
            holding = [b for b in batches if first in b]
            assert len(holding) == 1 and last in holding[0], (first, last)
        assert len(batches) > 5, "the committer did commit in several batches meanwhile"

    run(tmp_path, body, durability)


def test_the_view_copies_only_what_the_ops_read(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/w")
        r(p, "fs_transaction", ops=[w(f"/w/f{i}", b"%d" % i) for i in range(300)])
        view = systxn.View(r.k)
        live = r.k.state.world.vfs
        node = view.fs.inodes[view.fs.resolve("/w/f7")]
        assert node is not live.inodes[node.ino] and node == live.inodes[node.ino]
        assert dict.__len__(view.fs.inodes) == 3, "/, /w and /w/f7: not the 300 files"
        view.apply([ev.VfsUnlinked(parent=live.resolve("/w"), name="f7", ino=node.ino, pid=p.pid)])
        assert view.fs.lookup("/w/f7") is None and live.lookup("/w/f7") == node.ino, "live state untouched"
        assert node.ino not in view.fs.inodes and node.ino in live.inodes

    run(tmp_path, body)


# -- hypothesis: a transaction does what its ops do one at a time, or nothing -------------------------

NAMES = st.sampled_from(["a", "a/b", "c", "d", "a/d", "d/x", "c/x"])  # any of them, valid or not


@st.composite
def op_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1 to 6 ops on the starting tree (a/, a/b, c), mostly on names a rough model says exist (or are
    free), so that many transactions land; one pick in eight is any name, to fail somewhere."""
    files, dirs = {"a/b", "c"}, {"a"}
    ops: list[dict[str, Any]] = []

    def pick(pool: set[str]) -> str:
        wild = not pool or draw(st.integers(0, 7)) == 0
        return draw(NAMES) if wild else draw(st.sampled_from(sorted(pool)))

    def fresh() -> str:
        return draw(st.sampled_from([f"{d}/n{len(ops)}" for d in sorted(dirs)] + [f"n{len(ops)}"]))

    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["write", "write", "mkdir", "unlink", "rmdir", "rename"]))
        if kind == "write":
            path = pick(files) if draw(st.booleans()) else fresh()
            ops.append(w(path, draw(st.binary(max_size=6)), draw(st.booleans())))
            files.add(path)
        elif kind == "mkdir":
            path = fresh()
            ops.append({"op": "mkdir", "path": path})
            dirs.add(path)
        elif kind == "unlink":
            path = pick(files)
            ops.append({"op": "unlink", "path": path})
            files.discard(path)
        elif kind == "rmdir":
            path = pick({d for d in dirs if not any(x.startswith(d + "/") for x in files | dirs)})
            ops.append({"op": "rmdir", "path": path})
            dirs.discard(path)
        else:
            src, dst = pick(files | dirs), pick(files) if draw(st.booleans()) else fresh()
            ops.append({"op": "rename", "src": src, "dst": dst})
            moved = {x for x in files | dirs if x == src or x.startswith(src + "/")}
            for x in moved:
                pool = files if x in files else dirs
                pool.discard(x)
                pool.add(dst + x[len(src) :])
    return ops


def _under(op: dict[str, Any], top: str) -> dict[str, Any]:
    return {k: f"{top}/{v}" if k in ("path", "src", "dst") else v for k, v in op.items()}


def _one_by_one(r: Rig, op: dict[str, Any]) -> None:
    p = r.person
    if op["op"] == "write":
        flags = ["write", "create", "append" if op["append"] else "truncate"]
        fd = r(p, "open", path=op["path"], flags=flags)
        if op["data"]:
            r(p, "write", fd=fd, data=op["data"])
        r(p, "close", fd=fd)
    elif op["op"] == "rename":
        r(p, "rename", src=op["src"], dst=op["dst"])
    else:
        r(p, op["op"], path=op["path"])


@pytest.fixture(scope="module")
def shared_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.Runner, Rig]]:
    with asyncio.Runner() as runner:
        rig = Rig(tmp_path_factory.mktemp("txn"))

        async def boot() -> None:
            rig.boot()

        runner.run(boot())
        rig.examples = 0  # type: ignore[attr-defined]
        yield runner, rig
        runner.run(rig.k.close(clean=False))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=op_lists())
def test_a_transaction_does_what_its_ops_do_one_by_one_or_nothing(
    shared_rig: tuple[asyncio.Runner, Rig], ops: list[dict[str, Any]]
) -> None:
    runner, r = shared_rig

    async def example() -> None:
        r.examples += 1  # type: ignore[attr-defined]
        tops = [f"/x{r.examples}", f"/y{r.examples}"]  # type: ignore[attr-defined]
        for top in tops:  # the same starting tree twice
            r(r.person, "mkdir", path=top)
            r(r.person, "mkdir", path=f"{top}/a")
            r.put(f"{top}/a/b", b"ab")
            r.put(f"{top}/c", b"c")
        start = r.tree(tops[0])
        failed: tuple[int, str] | None = None
        for i, op in enumerate(ops):
            try:
                _one_by_one(r, _under(op, tops[1]))
            except AgentOSError as e:
                failed = (i, e.code)
                break
        head = r.k.head_seq
        try:
            r(r.person, "fs_transaction", ops=[_under(op, tops[0]) for op in ops])
        except AgentOSError as e:
            event(f"failed: {e.code}")
            assert failed is not None, f"the transaction failed ({e}) where the ops one by one did not"
            assert (e.code, e.message.split(" ")[1]) == (failed[1], str(failed[0])), (e, failed)
            assert r.k.head_seq == head and r.tree(tops[0]) == start, "a failed transaction changed something"
        else:
            event(f"landed: {len(ops)} ops")
            assert failed is None, f"op {failed} failed one by one, but the transaction succeeded"
            assert r.tree(tops[0]) == r.tree(tops[1])

    runner.run(example())


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(max_size=8), st.binary(max_size=8)
)
FIELD = {
    "op": st.sampled_from(["write", "mkdir", "unlink", "rmdir", "rename", "WRITE", ""]) | JUNK,
    "path": st.sampled_from(["/f", "/d/", "/", "//", "/d/../f", "/\x00", "/" + "p" * 4096])
    | st.text(max_size=8)
    | JUNK,
    "src": st.sampled_from(["/f", "/d", "/"]) | JUNK,
    "dst": st.sampled_from(["/g", "/d/f", "/"]) | JUNK,
    "data": st.binary(max_size=8) | JUNK,
    "append": JUNK,
    "mode": st.integers(-1, 0o10000) | JUNK,
}
SHAPED_OP = st.fixed_dictionaries(
    {"op": FIELD["op"]}, optional={k: v for k, v in FIELD.items() if k != "op"}
) | st.dictionaries(st.text(max_size=5), JUNK, max_size=3)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(SHAPED_OP, max_size=5) | JUNK)
def test_fuzzed_ops_get_typed_errors_and_change_nothing(
    shared_rig: tuple[asyncio.Runner, Rig], ops: Any
) -> None:
    runner, r = shared_rig

    async def example() -> None:
        head = r.k.head_seq
        try:
            r.k.call(r.person, "fs_transaction", {"ops": ops})
        except AgentOSError as e:
            assert e.category in ("invalid", "not-found", "conflict"), e
            assert r.k.head_seq == head, "no event: state changes only through events"
        else:
            event("landed")

    runner.run(example())


# -- kill -9 around a large transaction ------------------------------------------------------------------

BIG_TXN = """
import random
from agentos import sdk

async def main(tag, n, size):
    n, size = int(n), int(size)
    ops = [{"op": "mkdir", "path": f"/w/{tag}"}]
    ops += [{"op": "write", "path": f"/w/{tag}/f{i}", "data": random.Random(i).randbytes(size)} for i in range(n)]
    ops += [{"op": "rename", "src": f"/w/{tag}/f0", "dst": f"/w/{tag}/first"}, {"op": "unlink", "path": f"/w/{tag}/f1"}]
    done = await sdk.fs_transaction(ops)
    print("done", done["first_seq"], done["last_seq"])
"""
N_FILES, FILE_BYTES = 150, 64 * 1024  # 9.4 MiB in one transaction


def _expected_names() -> list[str]:
    return sorted(["first", *(f"f{i}" for i in range(2, N_FILES))])


def _outcome(kernel: KernelProcess, tag: str, pid: int) -> str:
    """The round's outcome, "all" or "none"; anything in between fails the test."""
    with kernel.client() as c:
        ours = [e for e in c.call("events", pid=pid, limit=100_000) if e["kind"].startswith("vfs.")]
        if tag not in c.call("readdir", path="/w"):
            assert ours == [], f"round {tag}: no directory, yet {len(ours)} of its events"
            return "none"
        assert len(ours) == 1 + 3 * N_FILES + 2, f"round {tag}: {len(ours)} events: a partial transaction"
        assert c.call("readdir", path=f"/w/{tag}") == _expected_names()
        for name in ("first", "f2", f"f{N_FILES - 1}"):
            i = 0 if name == "first" else int(name[1:])
            fd = c.call("open", path=f"/w/{tag}/{name}")
            data = c.call("read", fd=fd, n=FILE_BYTES + 1)
            c.call("close", fd=fd)
            assert data == random.Random(i).randbytes(FILE_BYTES), name
        return "all"


def _said(kernel: KernelProcess, pid: int, word: str) -> bool:
    with kernel.client() as c:
        return any(item["data"].startswith(word) for item in c.stream("logs", pid=pid))


def test_kill_9_around_a_large_transaction_leaves_all_or_none(kernel: KernelProcess, agent_file: Any) -> None:
    kernel.call("mkdir", path="/w")
    target = agent_file(BIG_TXN)
    caps = [{"resource": "fs:/w", "rights": ["read", "write", "list"]}, {"resource": "sys:console"}]

    def spawn(tag: str) -> int:
        return int(kernel.call("spawn", target=target, argv=[tag, str(N_FILES), str(FILE_BYTES)], caps=caps))

    t0 = time.monotonic()  # the first round runs to the end: how long spawn to done takes
    first = spawn("r0")
    poll(lambda: _said(kernel, first, "done"), interval=0.005)
    whole = time.monotonic() - t0
    outcomes = [_outcome(kernel, "r0", first)]
    for round_ in range(1, 10):  # then kill -9 at moments spread over that time
        pid = spawn(f"r{round_}")
        time.sleep(whole * (round_ - 1) / 8)
        kernel.kill9()
        kernel.boot(resume=False)  # what the crash left, with nothing redone
        outcomes.append(_outcome(kernel, f"r{round_}", pid))
    assert outcomes[0] == "all" and outcomes[1] == "none", outcomes  # killed at once: nothing yet
