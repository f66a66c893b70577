"""The durable event log on a real file: pragmas, the hash chain, blobs, snapshots, kill -9, the home lock."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import msgspec
import pytest

from agentos.errors import Conflict
from agentos.kernel.boot import load_state, rebuild_state
from agentos.state import events as ev
from agentos.state.snapshot import Manifest, from_pieces, to_pieces
from agentos.state.world import PROJECTION_VERSION, State, apply, state_hash
from agentos.store.events import EventRecord, Sequencer
from agentos.store.home import Home
from agentos.store.log import EventLog, StoreError, _set_pragma, blob_hash, sqlite_version

KEY = b"k" * 32


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aos-") as d:
        yield Path(d)


def open_log(path: Path, **kw: object) -> EventLog:
    return EventLog(path, hmac_key=kw.pop("hmac_key", KEY), **kw)  # type: ignore[arg-type]


def stamp_all(log: EventLog, payloads: list[ev.Payload], *, pid: int = 0) -> list[EventRecord]:
    """Stamp payloads after the log's head (not yet appended)."""
    seq, digest = log.head()
    seqr = Sequencer(seq + 1, digest)
    return [
        seqr.stamp(
            branch=1,
            kind=p.KIND,
            version=p.VERSION,
            pid=pid,
            syscall=None,
            correlation=None,
            ts=1_700_000_000_000_000_000 + i,
            payload=ev.encode(p),
        )
        for i, p in enumerate(payloads)
    ]


def write(log: EventLog, payloads: list[ev.Payload]) -> list[EventRecord]:
    records = stamp_all(log, payloads)
    log.append(records)
    return records


def spawn_events(first_pid: int, n: int) -> list[ev.Payload]:
    out: list[ev.Payload] = []
    for pid in range(first_pid, first_pid + n):
        out.append(ev.ProcSpawned(pid=pid, ppid=1, name=f"p{pid}", kind="agent", argv=[str(pid)]))
        out.append(ev.ProcStarted(pid=pid))
    return out


def raw(path: Path) -> apsw.Connection:
    """A separate connection, as a tamperer (or a fresh reader) would open the file."""
    return apsw.Connection(str(path))


# -- pragmas and the SQLite build -------------------------------------------------------------------


def test_pragmas_default_to_wal_and_synchronous_normal(tmp: Path) -> None:
    path = tmp / "log.db"
    open_log(path).close()
    fresh = open_log(path)  # a fresh connection sets them again, one statement at a time
    try:
        assert fresh.conn.execute("pragma journal_mode").fetchall() == [("wal",)]
        assert fresh.conn.execute("pragma synchronous").fetchall() == [(1,)]  # NORMAL
    finally:
        fresh.close()
    # journal_mode=wal is a property of the file: any fresh connection sees it
    other = raw(path)
    try:
        assert other.execute("pragma journal_mode").fetchall() == [("wal",)]
    finally:
        other.close()


def test_durability_full_sets_synchronous_full(tmp: Path) -> None:
    log = open_log(tmp / "log.db", durability="full")
    try:
        assert log.durability == "full"
        assert log.conn.execute("pragma synchronous").fetchall() == [(2,)]  # FULL
        assert log.conn.execute("pragma journal_mode").fetchall() == [("wal",)]
    finally:
        log.close()
    with pytest.raises(StoreError):
        open_log(tmp / "other.db", durability="paranoid")


def test_apsw_pitfall_two_pragmas_in_one_execute_is_handled(tmp: Path) -> None:
    # The pitfall is real with this apsw: the second pragma after one that returns a row is skipped.
    conn = raw(tmp / "pitfall.db")
    try:
        default_sync = conn.execute("pragma synchronous").fetchall()[0][0]
        assert default_sync != 1  # otherwise this demonstration would prove nothing
        conn.execute("pragma journal_mode=wal; pragma synchronous=1")
        assert conn.execute("pragma journal_mode").fetchall() == [("wal",)]
        assert conn.execute("pragma synchronous").fetchall()[0][0] == default_sync  # silently skipped
    finally:
        conn.close()
    # EventLog does not fall into it: both values hold on its connection ...
    log = open_log(tmp / "log.db")
    try:
        assert log.pragma("journal_mode") == "wal"
        assert log.pragma("synchronous") == 1
    finally:
        log.close()
    # ... and it checks every pragma after setting it: one that does not take is an error.
    mem = apsw.Connection(":memory:")
    try:
        with pytest.raises(StoreError, match="journal_mode"):
            _set_pragma(mem, "journal_mode", "wal", expect="wal")  # :memory: stays 'memory'
    finally:
        mem.close()


def test_bundled_sqlite_is_at_least_3_51_3() -> None:
    assert sqlite_version() >= (3, 51, 3)
    assert tuple(int(p) for p in apsw.sqlite_lib_version().split(".")) >= (3, 51, 3)


# -- append and read ------------------------------------------------------------------------------


def test_append_read_round_trip(tmp: Path) -> None:
    log = open_log(tmp / "log.db")
    try:
        assert log.head()[0] == 0 and log.count() == 0
        records = write(log, spawn_events(2, 3))
        more = write(log, [ev.ConsoleWrite(pid=3, console=3, stream="stdout", blob="ab", size=2)])
        assert list(log.read()) == records + more
        assert log.head() == (more[-1].seq, more[-1].digest)
        assert [r.seq for r in log.read(2, until=4)] == [3, 4]
        assert [r.kind for r in log.read(kinds=["proc.started"])] == ["proc.started"] * 3
        assert [r.seq for r in log.read(limit=2)] == [1, 2]
        assert log.count() == 7
        assert log.kind_counts() == {"console.write": 1, "proc.spawned": 3, "proc.started": 3}
        decoded = [ev.decode(r.kind, r.version, r.payload) for r in log.read()]
        assert decoded[0] == ev.ProcSpawned(pid=2, ppid=1, name="p2", kind="agent", argv=["2"])
        # the payload is the exact JSON text that was digested, readable by SQLite's JSON functions
        rows = log.conn.execute("SELECT json_extract(payload, '$.name') FROM events WHERE seq=1").fetchall()
        assert rows == [("p2",)]
        types = log.conn.execute("SELECT DISTINCT typeof(payload) FROM events").fetchall()
        assert types == [("text",)]  # TEXT, not a BLOB (SQLite would read a BLOB as JSONB)
    finally:
        log.close()
    reopened = open_log(tmp / "log.db")
    try:
        assert list(reopened.read()) == records + more
    finally:
        reopened.close()


# -- the hash chain -------------------------------------------------------------------------------


@pytest.fixture
def chained(tmp: Path) -> Iterator[Path]:
    path = tmp / "log.db"
    log = open_log(path)
    write(log, spawn_events(2, 3))
    write(log, spawn_events(5, 2))
    ok, detail = log.verify_chain()
    assert ok, detail
    assert detail == "10 events verified"
    log.close()
    yield path


def verify(path: Path, key: bytes = KEY) -> tuple[bool, str]:
    log = open_log(path, hmac_key=key)
    try:
        return log.verify_chain()
    finally:
        log.close()


def tamper(path: Path, sql: str, params: tuple = ()) -> None:
    conn = raw(path)
    try:
        conn.execute(sql, params)
        assert conn.changes() >= 1
    finally:
        conn.close()


def test_chain_detects_a_modified_payload_byte(chained: Path) -> None:
    conn = raw(chained)
    payload = conn.execute("SELECT payload FROM events WHERE seq=3").fetchall()[0][0]
    conn.close()
    forged = payload.replace('"p3"', '"p4"')
    assert forged != payload
    tamper(chained, "UPDATE events SET payload=? WHERE seq=3", (forged,))
    assert verify(chained) == (False, "digest mismatch at seq 3")


def test_chain_detects_a_deleted_row(chained: Path) -> None:
    tamper(chained, "DELETE FROM events WHERE seq=4")
    assert verify(chained) == (False, "gap: expected seq 4, found 5")


def test_chain_detects_a_truncated_tail_through_the_signed_head(chained: Path) -> None:
    tamper(chained, "DELETE FROM events WHERE seq=10")
    ok, detail = verify(chained)
    assert not ok and "signed chain head" in detail


def test_chain_detects_reordered_and_rewritten_digests(chained: Path, tmp: Path) -> None:
    # swap the contents of two rows (everything but seq): each is now out of place
    conn = raw(chained)
    cols = "branch, kind, version, pid, syscall, correlation, ts, payload, prev_digest, digest"
    r3 = conn.execute(f"SELECT {cols} FROM events WHERE seq=3").fetchall()[0]
    r6 = conn.execute(f"SELECT {cols} FROM events WHERE seq=6").fetchall()[0]
    sets = ", ".join(f"{c}=?" for c in cols.split(", "))
    with conn:
        conn.execute(f"UPDATE events SET {sets} WHERE seq=3", (*r6,))
        conn.execute(f"UPDATE events SET {sets} WHERE seq=6", (*r3,))
    conn.close()
    assert verify(chained) == (False, "digest mismatch at seq 3")
    # a digest rewritten in place breaks its own row
    tamper(chained, "UPDATE events SET digest=? WHERE seq=2", (b"\x01" * 32,))
    assert verify(chained) == (False, "digest mismatch at seq 2")


def test_chain_detects_a_forged_head_when_the_key_differs(chained: Path) -> None:
    # A tamperer rewrites a payload and recomputes the whole chain, and signs the head with their key.
    conn = raw(chained)
    payload = conn.execute("SELECT payload FROM events WHERE seq=1").fetchall()[0][0]
    conn.close()
    tamper(chained, "UPDATE events SET payload=? WHERE seq=1", (payload.replace('"p2"', '"pX"'),))
    forger = open_log(chained, hmac_key=b"f" * 32)
    try:
        records = list(forger.read())
        forger.conn.execute("DELETE FROM events")
        rewritten = stamp_all(forger, [ev.decode(r.kind, r.version, r.payload) for r in records])
        forger.append(rewritten)
        assert forger.verify_chain() == (True, "10 events verified")  # consistent under the forger's key
    finally:
        forger.close()
    ok, detail = verify(chained, KEY)  # but not under the home's real key
    assert not ok and "signed chain head" in detail
    # the key is what makes the chain tamper-evident, and no more: without it the rewrite is invisible
    assert verify(chained, b"") == (True, "10 events verified")


# -- blobs commit with their events -----------------------------------------------------------------


def test_blobs_are_written_in_the_same_transaction_as_events(tmp: Path) -> None:
    log = open_log(tmp / "log.db")
    try:
        data = b"the agent's source"
        h = blob_hash(data)
        good = stamp_all(log, [ev.ConsoleWrite(pid=2, console=2, stream="stdout", blob=h, size=len(data))])
        log.append(good, {h: data})
        assert log.get_blob(h) == data
        head_before = log.get_meta("head")

        orphan = b"a blob whose event never commits"
        oh = blob_hash(orphan)
        bad = stamp_all(log, [ev.ProcStarted(pid=2)])
        duplicate = msgspec.structs.replace(bad[0], seq=1)  # seq 1 exists: the insert fails
        with pytest.raises(StoreError, match="commit failed"):
            log.append([*bad, duplicate], {oh: orphan})
        assert not log.has_blob(oh)  # neither the blob ...
        assert log.count() == 1  # ... nor the events ...
        assert log.get_meta("head") == head_before  # ... nor the signed head moved
        assert log.verify_chain() == (True, "1 events verified")
    finally:
        log.close()


# -- snapshots ------------------------------------------------------------------------------------


def built_state(payloads: list[ev.Payload]) -> State:
    state = State()
    for seq, p in enumerate(payloads, 1):
        apply(state, seq, 1000 + seq, p)
    return state


def blob_hashes(log: EventLog) -> set[str]:
    return {row[0] for row in log.conn.execute("SELECT hash FROM blobs")}


def test_snapshots_store_only_the_pieces_that_changed(tmp: Path) -> None:
    log = open_log(tmp / "log.db")
    try:
        payloads = spawn_events(1, 20)
        state = built_state(payloads)
        manifest1, pieces1 = to_pieces(state)
        log.put_snapshot(1, state.seq, PROJECTION_VERSION, manifest1, pieces1)
        # one page of processes (pids 1..21 share page 0) + the ledger, groups, file system (no capability)
        assert len(blob_hashes(log)) == 4

        apply(state, state.seq + 1, 5000, ev.ProcExited(pid=7, status=0))  # one process changes
        manifest2, pieces2 = to_pieces(state)
        before = blob_hashes(log)
        log.put_snapshot(1, state.seq, PROJECTION_VERSION, manifest2, pieces2)
        new = blob_hashes(log) - before
        m2 = msgspec.msgpack.decode(manifest2, type=Manifest)
        m1 = msgspec.msgpack.decode(manifest1, type=Manifest)
        assert new == {m2.proc_pages["0"], m2.ledger}  # the changed process's page, the ledger (it counts)
        assert (m1.cap_pages, m1.groups, m1.vfs) == (m2.cap_pages, m2.groups, m2.vfs)  # unchanged: not stored

        assert log.latest_snapshot(1, PROJECTION_VERSION, 10**9) == (state.seq, manifest2)
        assert log.latest_snapshot(1, PROJECTION_VERSION, state.seq - 1) == (state.seq - 1, manifest1)
        assert log.latest_snapshot(1, PROJECTION_VERSION, state.seq - 2) is None
        assert log.latest_snapshot(1, PROJECTION_VERSION + 1, 10**9) is None
        assert log.latest_snapshot(2, PROJECTION_VERSION, 10**9) is None
        restored = from_pieces(manifest2, log.get_blob)
        assert state_hash(restored) == state_hash(state)
    finally:
        log.close()


def test_load_state_ignores_a_snapshot_with_a_missing_or_corrupt_piece(tmp: Path) -> None:
    log = open_log(tmp / "log.db")
    try:
        write(log, spawn_events(1, 5))
        snap_seq, snap_digest = log.head()
        write(log, [ev.ProcExited(pid=3, status=4), ev.ProcReaped(pid=3, by=1)])  # the tail
        next_digest = next(iter(log.read(snap_seq, until=snap_seq + 1))).digest
        truth = state_hash(rebuild_state(log))

        # a doctored snapshot, so that using it shows: the loader trusts an intact snapshot ...
        doctored = rebuild_state(log, until=snap_seq)
        doctored.ledger.boots = 99
        manifest, pieces = to_pieces(doctored, snap_digest)
        log.put_snapshot(1, snap_seq, PROJECTION_VERSION, manifest, pieces)
        state, from_seq = load_state(log)
        assert from_seq == snap_seq and state.ledger.boots == 99
        assert state.seq == log.head()[0]

        # ... but not one signed with another key (a forger's) ...
        forger = open_log(tmp / "log.db", hmac_key=b"f" * 32)
        try:
            forged = rebuild_state(forger, until=snap_seq + 1)
            forged.ledger.boots = 77
            forger.put_snapshot(1, snap_seq + 1, PROJECTION_VERSION, *to_pieces(forged, next_digest))
        finally:
            forger.close()
        state, from_seq = load_state(log)
        assert from_seq == snap_seq and state.ledger.boots == 99  # the forged, newer one was skipped

        # ... and ignores it once a piece is corrupt ...
        m = msgspec.msgpack.decode(manifest, type=Manifest)
        with log.conn:
            log.conn.execute("UPDATE blobs SET data=? WHERE hash=?", (b"garbage", m.proc_pages["0"]))
        state, from_seq = load_state(log)
        assert from_seq == 0 and state_hash(state) == truth

        # ... or missing: it rebuilds from the events alone
        with log.conn:
            log.conn.execute("DELETE FROM blobs WHERE hash=?", (m.ledger,))
        state, from_seq = load_state(log)
        assert from_seq == 0 and state_hash(state) == truth
    finally:
        log.close()


# -- kill -9 in the middle of writing ----------------------------------------------------------------

WRITER = r"""
import os, random, sys
import msgspec
from agentos.store.events import Sequencer
from agentos.store.log import EventLog, blob_hash

log = EventLog(sys.argv[1], hmac_key=bytes.fromhex(sys.argv[2]))
seq, digest = log.head()
s = Sequencer(seq + 1, digest)
while True:
    records, blobs = [], {}
    for _ in range(random.randint(1, 200)):
        data = os.urandom(random.randint(1, 4096))
        h = blob_hash(data)
        blobs[h] = data
        payload = msgspec.json.encode({"pid": 2, "console": 2, "stream": "stdout", "blob": h, "size": len(data)})
        records.append(s.stamp(branch=1, kind="console.write", version=1, pid=2, syscall=None,
                               correlation=None, ts=1, payload=payload))
    log.append(records, blobs)
    print(records[-1].seq, flush=True)  # acknowledged: committed
"""


def test_kill_9_mid_write_leaves_a_verifiable_contiguous_prefix(tmp: Path) -> None:
    path = tmp / "log.db"
    rng = random.Random(0x9)
    previous = 0
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), KEY.hex()], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # it has committed at least once
        assert first.strip().isdigit(), first
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        acked = [int(line) for line in [first, *child.stdout.read().split()] if line.strip()]
        child.stdout.close()

        log = open_log(path)
        try:
            ok, detail = log.verify_chain()  # the file opens and the chain, gaps and signed head hold
            assert ok, detail
            head = log.head()[0]
            assert log.count() == head  # contiguous: 1..head
            assert head >= max(acked) > previous  # nothing acknowledged was lost; it made progress
            missing = log.conn.execute(
                "SELECT count(*) FROM events WHERE json_extract(payload, '$.blob') NOT IN (SELECT hash FROM blobs)"
            ).fetchall()[0][0]
            assert missing == 0  # every committed event's blob committed with it
            previous = head
        finally:
            log.close()


# -- the home lock --------------------------------------------------------------------------------

TRY_LOCK = r"""
import json, sys, time
from agentos.errors import AgentOSError
from agentos.store.home import Home
h = Home(sys.argv[1])
try:
    h.acquire_lock()
except AgentOSError as e:
    print(json.dumps({"type": type(e).__name__, **e.to_wire()}), flush=True)
else:
    print(json.dumps({"ok": True}), flush=True)
    if len(sys.argv) > 2:
        time.sleep(60)
"""


def try_lock(home: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(home)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_home_lock_refuses_a_second_holder(tmp: Path) -> None:
    home = Home(tmp / "home")
    home.create()
    home.acquire_lock()
    try:
        refused = try_lock(home.path)
        assert refused["type"] == Conflict.__name__
        assert refused["category"] == "conflict" and refused["code"] == "EBUSY"
        assert str(os.getpid()) in refused["message"]  # names the holder
    finally:
        home.release_lock()
    assert try_lock(home.path) == {"ok": True}  # released: the next one gets it

    holder = subprocess.Popen(
        [sys.executable, "-c", TRY_LOCK, str(home.path), "hold"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline()) == {"ok": True}
        with pytest.raises(Conflict) as info:
            Home(home.path).acquire_lock()
        assert info.value.code == "EBUSY"
    finally:
        holder.kill()  # kill -9: the OS drops the flock with the process
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    again = Home(home.path)
    again.acquire_lock()
    again.release_lock()
