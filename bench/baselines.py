"""Baseline measurements: what the kernel's operations are compared against.

Every public measurement returns the per-operation times of one batch in microseconds (``list[float]``),
takes an operation count and a ``max_seconds`` bound (it stops early, returning fewer samples, once that
much time has passed) and does its own untimed warm-up. They are deliberately the cheapest honest way to
do the same work in plain Python, so that a ratio against them is the kernel's real overhead:

1. :func:`asyncio_queue_roundtrip` / :func:`asyncio_queue_roundtrip_async`: request on ``q1``, reply on
   ``q2``, between two tasks of one event loop.
2. :func:`unix_echo_asyncio`: blocking client <-> asyncio ``Protocol`` echo server over a Unix socket,
   4-byte-length-prefixed 128 B frames.
3. :func:`unix_echo_raw`: the same with a blocking socket server on the other side.
4. :func:`sqlite_wal_batch_insert` / :func:`sqlite_wal_single_commit`: apsw inserts into the kernel's
   ``events`` schema in WAL mode, ``synchronous=NORMAL``; rows are built (and their digests chained)
   before the clock starts.
5. :func:`subprocess_spawn`: ``subprocess.run(["/bin/true"])``.
6. :func:`python_startup`: ``subprocess.run([sys.executable, "-c", "pass"])``: a bare interpreter start, the
   floor under any boot of a Python kernel.

Reusable parts for the "ours" side: :class:`EchoServer` and :func:`echo_roundtrips` (keep one server up
across runs), :func:`open_wal_db`, :func:`make_event_rows`, :data:`EVENTS_SCHEMA`. Sockets live in a short
temporary directory; nothing here ever touches a network address.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import apsw

from bench import _echo_server
from bench.harness import time_per_op

HEADER = _echo_server.HEADER
FRAME_PAYLOAD = 128
SOCKET_TIMEOUT_S = 10.0
SERVER_START_TIMEOUT_S = 15.0

EVENTS_SCHEMA = """
CREATE TABLE events(seq INTEGER PRIMARY KEY, branch INTEGER NOT NULL, kind TEXT NOT NULL, version INTEGER NOT NULL, pid INTEGER NOT NULL, syscall TEXT, correlation TEXT, ts INTEGER NOT NULL, payload TEXT NOT NULL, prev_digest BLOB NOT NULL, digest BLOB NOT NULL);
CREATE INDEX events_pid ON events(pid, seq);
CREATE INDEX events_kind ON events(kind, seq);
"""
INSERT_EVENT = "INSERT INTO events VALUES(?,?,?,?,?,?,?,?,?,?,?)"
EventRow = tuple[int, int, str, int, int, str | None, str | None, int, str, bytes, bytes]


def _now_ns() -> int:
    return time.perf_counter_ns()


def _deadline_ns(max_seconds: float) -> int:
    return _now_ns() + int(max_seconds * 1e9)


# --------------------------------------------------------------------------------------------------------
# 1. asyncio.Queue round trip
# --------------------------------------------------------------------------------------------------------


async def asyncio_queue_roundtrip_async(
    n: int, *, warmup: int = 200, max_seconds: float = 20.0
) -> list[float]:
    """Round trips in the *running* loop: A puts a request on q1, B gets it and replies on q2, A gets it."""
    q1: asyncio.Queue[tuple[int, str, tuple[()]] | None] = asyncio.Queue()
    q2: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    async def responder() -> None:
        while (request := await q1.get()) is not None:
            await q2.put((request[0], 0))

    task = asyncio.create_task(responder())
    clock = time.perf_counter_ns
    deadline = _deadline_ns(max_seconds)
    samples: list[float] = []
    try:
        for i in range(warmup + n):
            t0 = clock()
            await q1.put((i, "getpid", ()))
            await q2.get()
            t1 = clock()
            if i >= warmup:
                samples.append((t1 - t0) / 1000.0)
            if t1 > deadline:
                break
    finally:
        await q1.put(None)
        await asyncio.wait_for(task, timeout=5.0)
    return samples


def asyncio_queue_roundtrip(n: int = 20_000, *, warmup: int = 200, max_seconds: float = 20.0) -> list[float]:
    """:func:`asyncio_queue_roundtrip_async` in a fresh event loop (``asyncio.run``)."""
    return asyncio.run(asyncio_queue_roundtrip_async(n, warmup=warmup, max_seconds=max_seconds))


# --------------------------------------------------------------------------------------------------------
# 2, 3. Unix-socket echo
# --------------------------------------------------------------------------------------------------------


def mkdtemp_short(prefix: str = "ab") -> Path:
    """A new temporary directory with a short path (Unix socket paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))


@contextmanager
def short_tempdir(prefix: str = "ab") -> Iterator[Path]:
    """:func:`mkdtemp_short` as a context manager that removes the directory afterwards."""
    path = mkdtemp_short(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class EchoServer:
    """An echo server (``mode`` ``"asyncio"`` or ``"raw"``) on a Unix socket in a short temp dir.

    ``where="process"`` (default) runs it in a child Python process, so client and server each have an
    interpreter (and a GIL) of their own, as a client and the kernel daemon will; ``where="thread"`` runs
    it in a background thread of this process. Use as a context manager; ``path`` is the socket path.
    """

    def __init__(self, mode: str = "asyncio", *, where: str = "process") -> None:
        if mode not in ("asyncio", "raw") or where not in ("process", "thread"):
            raise ValueError(f"bad echo server mode={mode!r} where={where!r}")
        self.mode = mode
        self.where = where
        self._dir = mkdtemp_short()
        self.path = str(self._dir / "e.sock")
        if len(self.path.encode()) >= 108:
            raise RuntimeError(f"socket path too long: {self.path}")
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: _echo_server.ThreadServer | None = None

    def start(self) -> EchoServer:
        if self.where == "thread":
            self._thread = _echo_server.serve_in_thread(self.mode, self.path)
            return self
        self._proc = subprocess.Popen(
            [sys.executable, "-S", _echo_server.__file__, self.mode, self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._wait_ready(self._proc)
        return self

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], SERVER_START_TIMEOUT_S)
        line = proc.stdout.readline() if readable else b""
        if line.strip() != b"ready":
            proc.kill()
            proc.wait(timeout=5.0)
            raise RuntimeError(f"echo server did not start (exit code {proc.returncode}, said {line!r})")

    def close(self) -> None:
        if self._thread is not None:
            self._thread.close()
            self._thread = None
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the server exits on stdin EOF
            try:
                self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5.0)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    size = len(view)
    while got < size:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise ConnectionError("echo server closed the connection")
        got += k


def _blocking_unix_client(path: str) -> socket.socket:
    """A plain blocking socket (no Python-level timeout, so no poll() per call) with kernel-side timeouts."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    timeval = struct.pack("ll", int(SOCKET_TIMEOUT_S), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.connect(path)
    return sock


def echo_roundtrips(
    path: str, n: int, *, size: int = FRAME_PAYLOAD, warmup: int = 200, max_seconds: float = 20.0
) -> list[float]:
    """Round trips of ``size``-byte length-prefixed frames to the echo server at ``path`` (new connection).

    Per trip: ``sendall(header + payload)``, read the 4-byte header, read the payload it announces.
    """
    payload = os.urandom(size)
    frame = HEADER.pack(size) + payload
    header_buf = bytearray(HEADER.size)
    body_buf = bytearray(size)
    header_view, body_view = memoryview(header_buf), memoryview(body_buf)
    clock = time.perf_counter_ns
    deadline = _deadline_ns(max_seconds)
    samples: list[float] = []
    with _blocking_unix_client(path) as sock:
        for i in range(warmup + n):
            t0 = clock()
            sock.sendall(frame)
            _recv_exact_into(sock, header_view)
            (length,) = HEADER.unpack_from(header_buf)
            _recv_exact_into(sock, body_view[:length])
            t1 = clock()
            if i >= warmup:
                samples.append((t1 - t0) / 1000.0)
            if t1 > deadline:
                break
    if body_buf != payload:
        raise RuntimeError("echo server returned a different payload")
    return samples


def unix_echo_asyncio(
    n: int = 5_000, *, where: str = "process", warmup: int = 200, max_seconds: float = 20.0
) -> list[float]:
    """Blocking client <-> asyncio ``Protocol`` echo server, 128 B frames (server started for this batch)."""
    with EchoServer("asyncio", where=where) as server:
        return echo_roundtrips(server.path, n, warmup=warmup, max_seconds=max_seconds)


def unix_echo_raw(
    n: int = 5_000, *, where: str = "process", warmup: int = 200, max_seconds: float = 20.0
) -> list[float]:
    """Blocking client <-> blocking-socket echo server, 128 B frames (server started for this batch)."""
    with EchoServer("raw", where=where) as server:
        return echo_roundtrips(server.path, n, warmup=warmup, max_seconds=max_seconds)


# --------------------------------------------------------------------------------------------------------
# 4. SQLite WAL inserts
# --------------------------------------------------------------------------------------------------------


def set_pragma(conn: apsw.Connection, name: str, value: str, *, expect: object) -> None:
    """Set one pragma in its own statement and assert it took (apsw skips a 2nd pragma in one string)."""
    conn.execute(f"pragma {name}={value}").fetchall()
    got = conn.execute(f"pragma {name}").fetchall()
    if not got or got[0][0] != expect:
        raise RuntimeError(f"pragma {name}={value} did not take: got {got!r}, expected {expect!r}")


def open_wal_db(path: Path | str, *, create_schema: bool = True) -> apsw.Connection:
    """An apsw connection in WAL mode with ``synchronous=NORMAL`` (asserted), with the events schema."""
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(5000)
    set_pragma(conn, "journal_mode", "wal", expect="wal")
    set_pragma(conn, "synchronous", "NORMAL", expect=1)
    if create_schema:
        conn.execute(EVENTS_SCHEMA)
    return conn


_KINDS = ("syscall.request", "syscall.result", "proc.spawn", "fs.write", "proc.exit")
_SYSCALLS = ("getpid", "fs.read", "fs.write", "spawn", "llm.call")


def make_event_rows(n: int, *, start_seq: int = 1, prev_digest: bytes = b"\0" * 32) -> list[EventRow]:
    """``n`` realistic ``events`` rows: ~200 B JSON payloads, sha256 chain digests (32 B)."""
    rows: list[EventRow] = []
    ts = time.time_ns()
    for i in range(n):
        seq = start_seq + i
        kind = _KINDS[seq % len(_KINDS)]
        syscall = _SYSCALLS[seq % len(_SYSCALLS)] if kind.startswith("syscall") else None
        correlation = hashlib.md5(str(seq // 2).encode()).hexdigest() if syscall else None
        payload = json.dumps(
            {
                "args": {
                    "path": f"/home/agent/work/notes-{seq % 97:03d}.md",
                    "offset": seq * 512,
                    "len": 4096,
                },
                "result": {"ok": True, "bytes": 4096, "etag": hashlib.sha1(str(seq).encode()).hexdigest()},
                "meta": {"attempt": 1, "cwd": "/home/agent/work"},
            },
            separators=(",", ":"),
        )
        pid = 1 + seq % 16
        digest = hashlib.sha256(
            prev_digest + f"{seq}|{kind}|{pid}|{ts + seq}|".encode() + payload.encode()
        ).digest()
        rows.append((seq, 0, kind, 1, pid, syscall, correlation, ts + seq, payload, prev_digest, digest))
        prev_digest = digest
    return rows


@contextmanager
def _fresh_db(db_dir: Path | str | None) -> Iterator[apsw.Connection]:
    with tempfile.TemporaryDirectory(prefix="abdb", dir=db_dir) as tmp:
        conn = open_wal_db(Path(tmp) / "log.db")
        try:
            yield conn
        finally:
            conn.close()


def sqlite_wal_batch_insert(
    txns: int = 40,
    rows_per_txn: int = 1_000,
    *,
    warmup_txns: int = 1,
    db_dir: Path | str | None = None,
    max_seconds: float = 20.0,
    rows: list[EventRow] | None = None,
) -> list[float]:
    """Amortised µs per row of ``txns`` transactions of ``rows_per_txn`` inserts (one sample per txn).

    Rows/second is ``1e6 / sample``. A fresh database per call (in ``db_dir``, default the temp dir);
    ``BEGIN IMMEDIATE`` / ``executemany`` / ``COMMIT`` is what is timed. ``rows`` (at least
    ``(warmup_txns + txns) * rows_per_txn`` of them): the very rows to insert, else ``make_event_rows``.
    """
    total = warmup_txns + txns
    if rows is None:
        rows = make_event_rows(total * rows_per_txn)
    elif len(rows) < total * rows_per_txn:
        raise ValueError(f"{len(rows)} rows given, {total * rows_per_txn} needed")
    clock = time.perf_counter_ns
    deadline = _deadline_ns(max_seconds)
    samples: list[float] = []
    with _fresh_db(db_dir) as conn:
        cur = conn.cursor()
        for t in range(total):
            batch = rows[t * rows_per_txn : (t + 1) * rows_per_txn]
            t0 = clock()
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(INSERT_EVENT, batch)
            cur.execute("COMMIT")
            t1 = clock()
            if t >= warmup_txns:
                samples.append((t1 - t0) / 1000.0 / rows_per_txn)
            if t1 > deadline:
                break
    return samples


def sqlite_wal_single_commit(
    n: int = 3_000, *, warmup: int = 50, db_dir: Path | str | None = None, max_seconds: float = 20.0
) -> list[float]:
    """Latency of one-row transactions: an autocommit ``INSERT`` (its own implicit transaction) each."""
    rows = make_event_rows(warmup + n)
    clock = time.perf_counter_ns
    deadline = _deadline_ns(max_seconds)
    samples: list[float] = []
    with _fresh_db(db_dir) as conn:
        cur = conn.cursor()
        for i, row in enumerate(rows):
            t0 = clock()
            cur.execute(INSERT_EVENT, row)
            t1 = clock()
            if i >= warmup:
                samples.append((t1 - t0) / 1000.0)
            if t1 > deadline:
                break
    return samples


# --------------------------------------------------------------------------------------------------------
# 5. Process spawn
# --------------------------------------------------------------------------------------------------------


def subprocess_spawn(n: int = 300, *, warmup: int = 5, max_seconds: float = 20.0) -> list[float]:
    """``subprocess.run(["/bin/true"], check=True)``: fork/exec + wait, per call."""
    argv = ["/bin/true"]
    return time_per_op(lambda: subprocess.run(argv, check=True), n, warmup=warmup, max_seconds=max_seconds)


def python_startup(n: int = 20, *, warmup: int = 1, max_seconds: float = 20.0) -> list[float]:
    """``subprocess.run([sys.executable, "-c", "pass"], check=True)``: interpreter start-up + exit, per call."""
    argv = [sys.executable, "-c", "pass"]
    return time_per_op(lambda: subprocess.run(argv, check=True), n, warmup=warmup, max_seconds=max_seconds)
