"""``agentos query "SQL" [--at POINT]`` (``kernel/query.py``, ``store/sqlquery.py``, ``store/sqlviews.py``).

In-process first: the views as of a point equal the state rebuilt there (processes, capabilities,
files, quota usage) for a random workload; what the guard refuses (writes, ATTACH, pragmas, the log's
own tables, a second statement, a runaway query) with typed errors while the kernel keeps serving;
the row cap. Then a real kernel process with real agents: the issue's seed queries (slow syscalls by
pid and name, the processes using the most storage, denied calls per agent), through the CLI as a
table, ``--json`` and ``--csv``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import time
from pathlib import Path
from typing import Any

import msgspec
from test_vfs_syscalls import agentos, ok

from agentos.errors import AgentOSError
from agentos.state import events as ev
from agentos.state.world import State
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig


async def q(r: KernelRig, sql: str, **args: Any) -> list[dict[str, Any]]:
    got = await r.call(r.person, "query", sql=sql, **args)
    return [dict(zip(got["columns"], row, strict=True)) for row in got["rows"]]


async def refused(r: KernelRig, code: str, sql: str, **args: Any) -> AgentOSError:
    try:
        await r.call(r.person, "query", sql=sql, **args)
    except AgentOSError as err:
        assert err.code == code, (sql, err)
        return err
    raise AssertionError(f"{sql!r} was not refused")


async def workload(r: KernelRig, rng: random.Random, steps: int) -> list[int]:
    """Processes born, started, stopped, continued, killed and reaped; files written, renamed and
    removed; capabilities delegated and revoked. The durable seq after each step."""
    p, agents, points = r.person, [], []
    for i in range(steps):
        op = rng.choice(
            ["spawn", "spawn", "start", "stop", "cont", "kill", "reap", "put", "mv", "rm", "revoke"]
        )
        live = [a for a in agents if r.k.state.world.procs.procs[a.pid].alive]
        try:
            if op == "spawn":
                agents.append(r.agent())
            elif op == "start" and live:
                a = rng.choice(live)
                if r.k.state.world.procs.procs[a.pid].state == "creating":
                    r.k.emit(ev.ProcStarted(pid=a.pid), a.pid)
            elif op in ("stop", "cont", "kill") and live:
                r(p, "kill", pid=rng.choice(live).pid, sig=op.upper())
            elif op == "reap":
                zombies = [a for a in agents if r.k.state.world.procs.procs[a.pid].state == "zombie"]
                if zombies:
                    r(p, "wait", pid=rng.choice(zombies).pid)
            elif op == "put":
                r.put(
                    rng.choice([p, *live]),
                    f"/shared/f{rng.randrange(4)}",
                    rng.randbytes(rng.randrange(1, 3000)),
                )
            elif op == "mv":
                r(p, "rename", src=f"/shared/f{rng.randrange(4)}", dst=f"/shared/g{rng.randrange(4)}")
            elif op == "rm":
                r(p, "unlink", path=f"/shared/{rng.choice('fg')}{rng.randrange(4)}")
            elif op == "revoke":
                held = [c for c in r.k.state.world.caps.caps.values() if c.holder != 1]
                if held:
                    r(p, "cap_revoke", cap=rng.choice(held).id)
        except AgentOSError:
            pass  # ENOENT, ESRCH, ETIMEDOUT ...: part of a random workload
        await r.k.committer.durable(r.k.head_seq)
        points.append(r.k.head_seq)
        if i % 7 == 3:
            await r.k.snapshot()  # points on both sides of snapshots
    return points


def _expected_procs(state: State) -> dict[int, tuple[Any, ...]]:
    return {
        p.pid: (p.ppid, p.name, p.kind, p.state, p.exit_status, p.exit_signal, p.created_seq)
        for p in state.world.procs.procs.values()
    }


def _revoked(state: State, cap: Any) -> bool:
    return any(c in state.ledger.revoked for c in [cap.id, *cap.chain])


def test_views_at_a_point_equal_the_state_rebuilt_there(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        rng = random.Random(6)
        points = await workload(r, rng, 60)
        for seq in sorted(rng.sample(points, 8)) + [points[-1]]:
            state = r.k.past.state_at(seq)
            procs = await q(r, "SELECT * FROM processes", at=str(seq))
            got = {
                row["pid"]: (row["ppid"], row["name"], row["kind"], row["state"])
                + (row["exit_status"], row["exit_signal"], row["spawned_seq"])
                for row in procs
            }
            want = _expected_procs(state)
            assert {pid: got[pid] for pid in want} == want, seq
            gone = set(got) - set(want)  # reaped sessions leave the table, not the view
            assert all(got[pid][2] == "session" and got[pid][3] == "dead" for pid in gone), seq

            caps = await q(r, "SELECT cap, holder, state FROM capabilities", at=str(seq))
            held = {c["cap"]: c["holder"] for c in caps if c["state"] == "held"}
            world = {c.id: c.holder for c in state.world.caps.caps.values() if not _revoked(state, c)}
            assert held == world, seq

            files = await q(r, "SELECT path, size FROM files WHERE kind = 'file' ORDER BY path", at=str(seq))
            assert {f["path"]: f["size"] for f in files} == _files_of(r, seq), seq

            usage = await q(r, "SELECT group_name, what, used FROM quota_usage", at=str(seq))
            charged = {(u["group_name"], u["what"]): u["used"] for u in usage}
            ledger = state.ledger.usage.used
            assert {(g, w): charged[g, w] for g in ledger for w in ledger[g]} == {
                (g, w): n for g in ledger for w, n in ledger[g].items()
            }, seq
            count = await q(r, "SELECT count(*) AS n, max(seq) AS last FROM events", at=str(seq))
            assert count == [{"n": seq, "last": seq}]

    run_rig(KernelRig(tmp_path), body)


def _files_of(r: KernelRig, seq: int) -> dict[str, int]:
    """/shared's files at ``seq`` as ``agentos at SEQ fs ls`` sees them."""
    out = {}
    for name in r(r.person, "at", point=str(seq), what="readdir", args={"path": "/shared"})["result"]:
        st = r(r.person, "at", point=str(seq), what="stat", args={"path": f"/shared/{name}"})["result"]
        if st["kind"] == "file":
            out[f"/shared/{name}"] = st["size"]
    return out


def test_writes_attach_pragmas_and_runaway_queries_are_refused(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        r.put(r.person, "/shared/a", b"x")
        await r.k.committer.durable(r.k.head_seq)
        before = (r.k.head_seq, len(r.k.log.kind_counts()))
        for sql in [
            "DELETE FROM events",
            "DELETE FROM main.events",
            "INSERT INTO quota_usage VALUES ('/', 'x', 1, 2)",
            "UPDATE files SET size = 0",
            "DROP VIEW processes",
            "CREATE TABLE t(x)",
            "CREATE TEMP VIEW v AS SELECT 1",
            "ATTACH DATABASE '/tmp/other.db' AS other",
            "DETACH DATABASE temp",
            "PRAGMA journal_mode = delete",
            "PRAGMA query_only = 0",
            "PRAGMA user_version",
            "BEGIN",
            "SELECT data FROM blobs",
            "SELECT * FROM main.snapshots",
            "SELECT * FROM meta",
            "SELECT load_extension('/tmp/x.so')",
        ]:
            err = await refused(r, "EACCES", sql)
            assert err.category == "denied" and "read" in err.message, (sql, err)
        await refused(r, "EINVAL", "SELECT 1; SELECT 2")  # one statement at a time
        await refused(r, "EACCES", "SELECT 1; DELETE FROM main.events")  # and a second is never run
        await refused(r, "EINVAL", "SELEC 1")
        await refused(r, "E2BIG", "SELECT zeroblob(100000000)")
        runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
        err = await refused(r, "ETIMEDOUT", runaway, timeout=0.3)
        assert err.category == "timeout"
        assert (r.k.head_seq, len(r.k.log.kind_counts())) == before, "nothing was written"
        # while one runs for its two seconds, on a worker thread, the kernel's loop goes on serving
        running = asyncio.ensure_future(refused(r, "ETIMEDOUT", runaway, timeout=2.0))
        t0 = time.monotonic()
        for i in range(10):
            await asyncio.sleep(0.01)
            r.put(r.person, f"/shared/meanwhile{i}", b"x")
            await r.k.committer.durable(r.k.head_seq)
        assert time.monotonic() - t0 < 1.6 and not running.done()
        await running
        assert r.cat("/shared/a") == b"x", "the kernel keeps serving"
        assert (await q(r, "SELECT count(*) AS n FROM files WHERE path = '/shared/a'")) == [{"n": 1}]
        assert await q(r, "PRAGMA table_info(processes)"), "schema pragmas that only read are allowed"
        assert await q(r, "SELECT name FROM pragma_table_info('syscalls') WHERE name = 'duration_ms'")

    run_rig(KernelRig(tmp_path), body)


def test_rows_are_capped_and_say_so(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        await r.k.committer.durable(r.k.head_seq)
        many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT x FROM c"
        got = await r.call(r.person, "query", sql=many, limit=20)
        assert got["truncated"] and [row[0] for row in got["rows"]] == list(range(1, 21))
        got = await r.call(r.person, "query", sql=many)
        assert not got["truncated"] and len(got["rows"]) == 50
        wide = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) SELECT randomblob(100000) FROM c"
        got = await r.call(r.person, "query", sql=wide)
        assert got["truncated"] and 0 < len(got["rows"]) < 100, "about QUERY_REPLY_BYTES of cells, then cut"
        none = await r.call(r.person, "query", sql="SELECT seq FROM events WHERE seq < 0")
        assert none["columns"] == ["seq"] and none["rows"] == [] and not none["truncated"]

    run_rig(KernelRig(tmp_path), body)


def test_sys_done_from_an_older_log_decodes_with_no_duration() -> None:
    old = b'{"pid":7,"epoch":0,"task":0,"n":3,"call":"time","args_digest":"ab","result":5}'
    done = ev.decode("sys.done", 1, old)
    assert isinstance(done, ev.SyscallDone) and done.duration_ns == 0 and done.result == 5
    assert ev.encode(done) == old, "a zero duration is omitted: the same bytes as before"
    assert b'"duration_ns":1500' in ev.encode(msgspec.structs.replace(done, duration_ns=1500))


# -- a real kernel process: the seed queries through the CLI ---------------------------------------


SLOW = """
from agentos import sdk

async def main():
    for _ in range(3):
        await sdk.sleep(0.06)
    for _ in range(5):
        await sdk.time()
"""
STORER = """
from agentos import sdk

async def main(path):
    fd = await sdk.open(path, ["write", "create", "truncate"])
    await sdk.write(fd, await sdk.random(60000) * 4)
    await sdk.close(fd)
"""
REFUSED = """
from agentos import sdk
from agentos.errors import PermissionDenied

async def main():
    for _ in range(3):
        try:
            await sdk.secret("NOT_MINE")
        except PermissionDenied:
            pass
"""

SEED_SLOW = (
    "SELECT pid, name, count(*) AS calls, round(max(duration_ms), 1) AS worst_ms FROM syscalls "
    "WHERE duration_ms > 30 GROUP BY pid, name ORDER BY worst_ms DESC"
)
SEED_STORAGE = "SELECT pid, name, stored_bytes FROM processes ORDER BY stored_bytes DESC LIMIT 3"
SEED_DENIED = (
    "SELECT a.pid, p.name, count(*) AS denied FROM audit a JOIN processes p USING (pid) "
    "WHERE a.kind = 'audit.denied' GROUP BY a.pid ORDER BY denied DESC"
)


def _run(kernel: KernelProcess, path: str, *argv: str, name: str) -> int:
    pid = int(kernel.call("spawn", target=path, argv=list(argv), name=name))
    with kernel.client() as c:
        assert c.call("wait", pid=pid, timeout=30)["status"] == 0
    return pid


def test_seed_queries_through_the_cli(kernel: KernelProcess, agent_file: Any) -> None:
    home = kernel.home
    slow = _run(kernel, agent_file(SLOW, "slow.py"), name="slow")
    storer = _run(kernel, agent_file(STORER, "storer.py"), "/shared/big", name="storer")
    refused_pid = _run(kernel, agent_file(REFUSED, "refused.py"), name="refused")

    rows = json.loads(ok(home, "query", "--json", SEED_SLOW))
    assert rows[0]["pid"] == slow and rows[0]["name"] == "sleep" and rows[0]["calls"] == 3
    assert rows[0]["worst_ms"] >= 55, rows
    assert {r["name"] for r in rows if r["pid"] == slow} == {"sleep"}, "time() is fast"

    top = json.loads(ok(home, "query", "--json", SEED_STORAGE))
    assert top[0]["pid"] == storer and top[0]["stored_bytes"] >= 60000, top

    table = ok(home, "query", SEED_DENIED).decode().splitlines()
    assert table[0].split() == ["pid", "name", "denied"]
    assert table[1].split() == [str(refused_pid), "refused", "3"], table
    assert table[-1].startswith("(1 row, as of seq ")

    text = ok(
        home, "query", "--csv", "SELECT pid, name, state FROM processes WHERE kind = 'agent' ORDER BY pid"
    )
    parsed = list(csv.reader(io.StringIO(text.decode())))
    assert parsed[0] == ["pid", "name", "state"]
    assert parsed[1:] == [
        [str(slow), "slow", "dead"],
        [str(storer), "storer", "dead"],
        [str(refused_pid), "refused", "dead"],
    ]


def test_cli_refusals_and_at(kernel: KernelProcess) -> None:
    home = kernel.home
    ok(home, "fs", "put", "-", "/shared/x", stdin=b"one\n")
    seq = kernel.call("status")["seq"]
    kernel.wait_for(lambda c: c.call("status")["durable_seq"] >= seq)
    ok(home, "fs", "put", "-", "/shared/x", stdin=b"three\n")
    ok(home, "fs", "put", "-", "/shared/y", stdin=b"new\n")
    sql = "SELECT path, size FROM files WHERE path LIKE '/shared/%' ORDER BY path"
    assert json.loads(ok(home, "query", "--json", "--at", str(seq), sql)) == [
        {"path": "/shared/x", "size": 4}
    ]
    assert json.loads(ok(home, "query", "--json", sql)) == [
        {"path": "/shared/x", "size": 6},
        {"path": "/shared/y", "size": 4},
    ]
    r = agentos(home, "query", "DELETE FROM events")
    assert r.returncode == 1 and b"EACCES" in r.stderr and b"read" in r.stderr, r.stderr
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT max(x) FROM c"
    r = agentos(home, "query", runaway, "--timeout", "0.2")
    assert r.returncode == 1 and b"ETIMEDOUT" in r.stderr, r.stderr
    assert kernel.call("status")["seq"] >= seq, "the kernel keeps serving"
