"""The durable event log: every SQLite decision in one module (as eventsourcing's sqlite.py).

One SQLite file (``log.db`` in the home) in WAL mode holds the events, the content-addressed
blobs they name, snapshot manifests, branches and a small meta table. Only apsw touches it:
it bundles a current SQLite (>= 3.51.3; older ones have a WAL-reset corruption bug), and a
process must never load two SQLite libraries onto one file (their POSIX locks don't mix).

``synchronous=NORMAL`` (the default) survives kill -9 but may lose the last commits on power
loss; ``FULL`` survives both. Pragmas are set one statement at a time and then asserted:
apsw silently skips a second pragma after one that returns a row.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from pathlib import Path

import apsw
import msgspec
from msgspec.structs import astuple

from agentos.errors import InternalError
from agentos.store.events import GENESIS, EventRecord, sign_head, verify_record

MIN_SQLITE = (3, 51, 3)
DURABILITY = {"normal": 1, "full": 2}
# the file changes (store/history.py): the per-inode and per-process indexes cover these kinds only, and
# a query uses them only when it repeats this WHERE term verbatim
VFS_CHANGE_KINDS = (
    *("vfs.created", "vfs.wrote", "vfs.truncated", "vfs.version", "vfs.unlinked"),
    *("vfs.linked", "vfs.renamed", "vfs.rmdir", "vfs.chmod"),
)
assert all(kind.startswith("vfs.") for kind in VFS_CHANGE_KINDS)  # the range below relies on it
# SQLite evaluates a partial index's WHERE for every inserted row. A constant ``kind IN (...)`` builds
# an ephemeral lookup table once per statement run, i.e. once per row under executemany: ~4.5 us per
# index per event, more than the bare insert. So: one range test that rejects every other kind
# at once, then an OR chain (~0.1 us per event for both indexes, against ~0.9 us for the chain alone).
VFS_CHANGES = (
    f"kind > 'vfs.' AND kind < 'vfs/' AND ({' OR '.join(f'kind = {kind!r}' for kind in VFS_CHANGE_KINDS)})"
)

# blobs: a rowid table, not WITHOUT ROWID, whose b-tree holds whole rows even in interior cells (a few
# KiB-sized chunks a page, many levels): 5 KiB chunks took ~50 us a lookup, ~140 us an insert; ~10 and
# ~55 us here. Older homes keep their table (the same statements work on both).
SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
  seq INTEGER PRIMARY KEY, branch INTEGER NOT NULL, kind TEXT NOT NULL, version INTEGER NOT NULL,
  pid INTEGER NOT NULL, syscall TEXT, correlation TEXT, ts INTEGER NOT NULL,
  payload TEXT NOT NULL, prev_digest BLOB NOT NULL, digest BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_pid ON events(pid, seq);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, seq);
CREATE INDEX IF NOT EXISTS events_vfs_ino ON events(json_extract(payload, '$.ino'), seq) WHERE {changes};
CREATE INDEX IF NOT EXISTS events_vfs_pid ON events(json_extract(payload, '$.pid'), seq) WHERE {changes};
CREATE TABLE IF NOT EXISTS blobs(hash TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots(
  branch INTEGER NOT NULL, seq INTEGER NOT NULL, projection_version INTEGER NOT NULL,
  manifest BLOB NOT NULL, mac BLOB NOT NULL, PRIMARY KEY(branch, seq, projection_version));
CREATE TABLE IF NOT EXISTS branches(
  id INTEGER PRIMARY KEY, parent INTEGER, fork_seq INTEGER, created_ts INTEGER NOT NULL, name TEXT);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB);
""".replace("{changes}", VFS_CHANGES)

_INSERT = "INSERT INTO events VALUES(?,?,?,?,?,?,?,?,CAST(? AS TEXT),?,?)"
_COLUMNS = "seq, branch, kind, version, pid, syscall, correlation, ts, payload, prev_digest, digest"
_FOLDS = "SELECT seq, branch, kind, version, ts, payload FROM events WHERE seq > ? AND seq <= ? ORDER BY seq"
_LATEST = "SELECT seq, manifest, mac FROM snapshots WHERE branch=? AND projection_version=? AND seq<=? ORDER BY seq DESC LIMIT 1"


class StoreError(InternalError):
    default_code = "ESTORE"


def blob_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sqlite_version() -> tuple[int, ...]:
    return tuple(int(p) for p in apsw.sqlite_lib_version().split("."))


class EventLog:
    """Append-only log of events, plus blobs and snapshot manifests, in one SQLite file."""

    def __init__(self, path: Path | str, *, durability: str = "normal", hmac_key: bytes = b"") -> None:
        if sqlite_version() < MIN_SQLITE:
            raise StoreError(f"SQLite {apsw.sqlite_lib_version()} is too old; need >= 3.51.3 (WAL-reset bug)")
        if durability not in DURABILITY:
            raise StoreError(f"durability must be one of {sorted(DURABILITY)}, not {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self._key = hmac_key
        self.conn = self._connect()
        _drop_stale_indexes(self.conn)
        self.conn.execute(SCHEMA)
        self.wal_pages = 0  # frames in the WAL as of the last commit, once take_over_checkpoints()
        self._checkpointer: apsw.Connection | None = None

    def _connect(self) -> apsw.Connection:
        conn = apsw.Connection(str(self.path))
        conn.set_busy_timeout(5000)
        _set_pragma(conn, "journal_mode", "wal", expect="wal")
        _set_pragma(conn, "synchronous", self.durability, expect=DURABILITY[self.durability])
        _set_pragma(conn, "foreign_keys", "off", expect=0)
        return conn

    def reader(self) -> apsw.Connection:
        """A second connection for reads (sees only committed data), owned by the caller."""
        conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
        conn.set_busy_timeout(5000)
        return conn

    # -- writing ---------------------------------------------------------------------------

    def append(self, records: list[EventRecord], blobs: dict[str, bytes] | None = None) -> None:
        """Commit a batch of events and the blobs they name in one transaction."""
        if not records and not blobs:
            return
        self.begin()
        self.write_events(records, blobs)
        self.commit()

    # A write in two halves, so the kernel can bind rows on its own thread (binding needs the GIL, and
    # apsw releases it around every row's step: a writer thread convoys behind a busy loop thread) and
    # leave only the COMMIT, the fsync under FULL, to a thread. Any failure rolls back and raises.

    def begin(self) -> None:
        self._run("BEGIN IMMEDIATE")

    def write_events(self, records: list[EventRecord], blobs: dict[str, bytes] | None = None) -> None:
        """Insert events and their blobs and move the signed head, inside ``begin()``/``commit()``."""
        try:
            if blobs:
                self.conn.executemany(
                    "INSERT OR IGNORE INTO blobs VALUES(?,?,?)", [(h, len(d), d) for h, d in blobs.items()]
                )
            if records:
                # each record is already the row, in column order (array-like struct); SQLite
                # turns the payload's UTF-8 bytes into TEXT itself: no per-row Python work
                self.conn.executemany(_INSERT, map(astuple, records))
                last = records[-1]
                self._put_meta("head", last.seq.to_bytes(8, "big") + last.digest + self._sign(last))
        except apsw.Error as exc:
            self.rollback()
            raise StoreError(f"commit failed: {exc}") from exc

    def commit(self) -> None:
        self._run("COMMIT")

    def rollback(self) -> None:
        if not self.conn.in_transaction:
            return
        try:
            self.conn.execute("ROLLBACK")
        except apsw.Error:
            pass  # the connection is beyond use; the caller is already failing

    def _run(self, statement: str) -> None:
        try:
            self.conn.execute(statement)
        except apsw.Error as exc:
            self.rollback()
            raise StoreError(f"commit failed: {exc}") from exc

    # -- checkpoints -------------------------------------------------------------------------

    def take_over_checkpoints(self) -> None:
        """Stop SQLite checkpointing inside COMMIT (on whichever thread commits); the owner calls
        ``checkpoint()`` instead, off its loop thread, when ``wal_pages`` grows past a threshold."""
        self.conn.set_wal_hook(self._on_wal)

    def _on_wal(self, _conn: apsw.Connection, _db: str, pages: int) -> int:
        self.wal_pages = pages
        return apsw.SQLITE_OK

    def checkpoint(self) -> tuple[int, int]:
        """A PASSIVE checkpoint on a connection of its own (one GIL release for all of it; writers
        go on meanwhile): (WAL frames, frames copied into the database)."""
        if self._checkpointer is None:
            conn = apsw.Connection(str(self.path))
            conn.set_busy_timeout(5000)
            # a connection opens the WAL at its first read; until then a checkpoint on it does
            # nothing and says (-1, -1)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            self._checkpointer = conn
        return self._checkpointer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)

    def finish_checkpoint(self) -> tuple[int, int]:
        """Copy what was written while ``checkpoint()`` ran (a few frames), with no write in
        progress (the caller holds writes off): the checkpoint is then complete, so the next commit
        restarts the WAL from its start. (Under steady writes a checkpoint taken beside them never
        completes, and the WAL would grow without end.) On the checkpoint connection, so it can run
        on the checkpoint thread: its fsyncs (~30 ms here) would otherwise stall the loop."""
        return self.checkpoint()

    def _sign(self, record: EventRecord) -> bytes:
        return sign_head(self._key, record.seq, record.digest) if self._key else b""

    def put_blob(self, data: bytes) -> str:
        h = blob_hash(data)
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO blobs VALUES(?,?,?)", (h, len(data), data))
        return h

    def _put_meta(self, key: str, value: bytes) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES(?,?)", (key, value))

    def set_meta(self, key: str, value: bytes) -> None:
        with self.conn:
            self._put_meta(key, value)

    def get_meta(self, key: str, conn: apsw.Connection | None = None) -> bytes | None:
        row = _first((conn or self.conn).execute("SELECT value FROM meta WHERE key=?", (key,)).fetchall())
        return None if row is None else bytes(row[0])

    def ensure_branch(
        self, branch_id: int, parent: int | None, fork_seq: int | None, ts: int, name: str
    ) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO branches VALUES(?,?,?,?,?)", (branch_id, parent, fork_seq, ts, name)
            )

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """(last seq, its digest), or (0, GENESIS) for an empty log."""
        row = _first(self.conn.execute("SELECT seq, digest FROM events ORDER BY seq DESC LIMIT 1").fetchall())
        return (0, GENESIS) if row is None else (row[0], bytes(row[1]))

    def read(
        self,
        since: int = 0,
        *,
        until: int | None = None,
        pid: int | None = None,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
        conn: apsw.Connection | None = None,
    ) -> Iterator[EventRecord]:
        """Events with seq > since (and <= until), in order, optionally filtered."""
        where = ["seq > ?"]
        params: list[object] = [since]
        if until is not None:
            where.append("seq <= ?")
            params.append(until)
        if pid is not None:
            where.append("pid = ?")
            params.append(pid)
        if kinds is not None:
            kinds = list(kinds)
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        sql = f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for row in (conn or self.conn).execute(sql, params):
            yield _record(row)

    def read_folds(self, since: int, until: int | None, conn: apsw.Connection | None = None) -> Iterator:
        """(seq, branch, kind, version, ts, payload text) after ``since``, in order: what a fold needs,
        without digests or records (a past state's tail, unverified)."""
        yield from (conn or self.conn).execute(_FOLDS, (since, 2**63 - 1 if until is None else until))

    def console_of(self, pid: int, until: int, conn: apsw.Connection | None = None) -> list[EventRecord]:
        """console.write events written by ``pid`` or onto its console (by its child agents)."""
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE kind='console.write' AND seq <= ?"
            " AND (pid = ? OR json_extract(payload, '$.console') = ?) ORDER BY seq"
        )
        return [_record(row) for row in (conn or self.conn).execute(sql, (until, pid, pid))]

    def journal_of(self, pid: int, since: int, conn: apsw.Connection | None = None) -> list[EventRecord]:
        """An agent's journal: its sys.done and sys.blocked records and its print() console writes."""
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE pid = ? AND seq > ? AND (kind IN ('sys.done', 'sys.blocked')"
            " OR (kind = 'console.write' AND json_extract(payload, '$.n') >= 0)) ORDER BY seq"
        )
        return [_record(row) for row in (conn or self.conn).execute(sql, (pid, since))]

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM events").fetchall()[0][0]

    def kind_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind")
        return {k: n for k, n in rows}

    def get_blob(self, h: str, conn: apsw.Connection | None = None) -> bytes | None:
        row = _first((conn or self.conn).execute("SELECT data FROM blobs WHERE hash=?", (h,)).fetchall())
        return None if row is None else bytes(row[0])

    def has_blob(self, h: str, conn: apsw.Connection | None = None) -> bool:
        return bool((conn or self.conn).execute("SELECT 1 FROM blobs WHERE hash=?", (h,)).fetchall())

    def get_blobs(self, hashes: list[str], conn: apsw.Connection | None = None) -> dict[str, bytes]:
        """The blobs of ``hashes`` that are stored, in one query (a file read's chunks)."""
        rows = (conn or self.conn).execute(*_blobs_in("hash, data", hashes))
        return {h: bytes(d) for h, d in rows}

    def stored_blobs(self, hashes: list[str], conn: apsw.Connection | None = None) -> set[str]:
        """Which of ``hashes`` are stored, in one query."""
        rows = (conn or self.conn).execute(*_blobs_in("hash", hashes))
        return {h for (h,) in rows}

    def verify_chain(self, conn: apsw.Connection | None = None) -> tuple[bool, str]:
        """Walk the whole chain; check every digest, every link, no gap, and the signed head."""
        conn = conn or self.conn
        conn.execute("BEGIN")  # one read snapshot for the events and the signed head
        try:
            return self._verify(conn)
        finally:
            conn.execute("COMMIT")

    def _verify(self, conn: apsw.Connection) -> tuple[bool, str]:
        prev, expected_seq, last = GENESIS, 1, None
        for record in self.read(0, conn=conn):
            if record.seq != expected_seq:
                return False, f"gap: expected seq {expected_seq}, found {record.seq}"
            if not verify_record(record, prev):
                return False, f"digest mismatch at seq {record.seq}"
            prev, expected_seq, last = record.digest, record.seq + 1, record
        ok, detail = self._check_head(last, conn)
        return (ok, detail) if not ok else (True, f"{expected_seq - 1} events verified")

    def check_head(self) -> tuple[bool, str]:
        """Cheap boot-time check: does the signed head name the log's last event?"""
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq DESC LIMIT 1").fetchall()
        return self._check_head(_record(rows[0]) if rows else None, self.conn)

    def _check_head(self, last: EventRecord | None, conn: apsw.Connection) -> tuple[bool, str]:
        head = self.get_meta("head", conn)
        if last is None:
            if head is not None:
                seq = int.from_bytes(head[:8], "big")
                return False, f"the log is empty but its signed head names seq {seq}: events were removed"
            return True, "empty log"
        if self._key and (head is None or head[8:40] != last.digest or head[40:] != self._sign(last)):
            return (
                False,
                f"the signed chain head does not match the last event (seq {last.seq}): the log was cut or edited",
            )
        return True, "head ok"

    # -- snapshots (disposable caches; see snapshots.py) -------------------------------------

    def put_snapshot(
        self, branch: int, seq: int, projection_version: int, manifest: bytes, pieces: dict[str, bytes]
    ) -> None:
        self.begin()
        self.write_snapshot(branch, seq, projection_version, manifest, pieces)
        self.commit()

    def write_snapshot(
        self, branch: int, seq: int, projection_version: int, manifest: bytes, pieces: dict[str, bytes]
    ) -> None:
        """Insert a snapshot's pieces and its signed manifest, inside ``begin()``/``commit()``."""
        try:
            self.conn.executemany(
                "INSERT OR IGNORE INTO blobs VALUES(?,?,?)", [(h, len(d), d) for h, d in pieces.items()]
            )
            mac = self._snapshot_mac(branch, seq, projection_version, manifest)
            row = (branch, seq, projection_version, manifest, mac)
            self.conn.execute("INSERT OR REPLACE INTO snapshots VALUES(?,?,?,?,?)", row)
        except apsw.Error as exc:
            self.rollback()
            raise StoreError(f"snapshot write failed: {exc}") from exc

    def _snapshot_mac(self, branch: int, seq: int, projection_version: int, manifest: bytes) -> bytes:
        """Snapshots are signed like the chain head, so a forged one is ignored, not loaded."""
        header = b"snapshot\x1f%d\x1f%d\x1f%d\x1e" % (branch, seq, projection_version)
        return hmac.new(self._key, header + manifest, hashlib.sha256).digest()

    def latest_snapshot(
        self, branch: int, projection_version: int, max_seq: int, conn: apsw.Connection | None = None
    ) -> tuple[int, bytes] | None:
        conn, at = conn or self.conn, max_seq
        while True:  # newest first, one at a time: reading every older manifest cost more than a rebuild
            if (row := _first(conn.execute(_LATEST, (branch, projection_version, at)).fetchall())) is None:
                return None
            seq, manifest, mac = row[0], bytes(row[1]), bytes(row[2])
            expected = self._snapshot_mac(branch, seq, projection_version, manifest)
            if not self._key or hmac.compare_digest(expected, mac):  # no key: nothing to check against
                return seq, manifest
            at = seq - 1

    def drop_snapshot(self, branch: int, seq: int, projection_version: int) -> None:
        with self.conn:
            self.conn.execute(
                "DELETE FROM snapshots WHERE branch=? AND seq=? AND projection_version=?",
                (branch, seq, projection_version),
            )

    def pragma(self, name: str) -> object:
        return self.conn.execute(f"pragma {name}").fetchall()[0][0]

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.conn.close()


def _first(rows: list) -> tuple | None:
    """Results are always read to the end: an unfinished statement would pin an old WAL snapshot."""
    return rows[0] if rows else None


def _record(row: tuple) -> EventRecord:
    seq, branch, kind, version, pid, syscall, correlation, ts, payload, prev, digest = row
    return EventRecord(
        seq,
        branch,
        kind,
        version,
        pid,
        syscall,
        correlation,
        ts,
        payload.encode(),
        bytes(prev),
        bytes(digest),
    )


def _blobs_in(columns: str, hashes: list[str]) -> tuple[str, tuple[str, ...]]:
    """A query for the rows of ``hashes``: a few as ``IN (?, ...)``, more as one JSON array bound as
    text (one statement text, prepared once, for any number)."""
    if len(hashes) <= 8:
        return f"SELECT {columns} FROM blobs WHERE hash IN ({','.join('?' * len(hashes))})", tuple(hashes)
    listed = msgspec.json.encode(hashes).decode()
    return f"SELECT {columns} FROM blobs WHERE hash IN (SELECT value FROM json_each(?))", (listed,)


def _drop_stale_indexes(conn: apsw.Connection) -> None:
    """Drop a file-change index made with an older WHERE term (SCHEMA then rebuilds it): the queries
    repeat today's term, and SQLite uses a partial index only for the very term it was made with."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND name IN ('events_vfs_ino', 'events_vfs_pid')"
    ).fetchall()
    for name, sql in rows:
        if not sql.endswith(f"WHERE {VFS_CHANGES}"):
            conn.execute(f"DROP INDEX {name}")


def _set_pragma(conn: apsw.Connection, name: str, value: str, *, expect: object) -> None:
    conn.execute(f"pragma {name}={value}").fetchall()
    actual = conn.execute(f"pragma {name}").fetchall()[0][0]
    if actual != expect:
        raise StoreError(f"pragma {name} is {actual!r} after setting it to {value!r}")
