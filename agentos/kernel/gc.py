"""``gc``: compact the history before a point behind a synthetic base event, and report the bytes freed.

``agentos gc --keep-since POINT|DURATION [--dry-run]``. The cut S is a point on the live branch's
lineage (a seq, a time, a checkpoint) or a duration ago. What happens, in order:

1. **Refusals.** A checkpoint naming a point before S would lose its state: gc refuses and names
   them (``agentos checkpoint --rm NAME`` first, or an earlier point). S must be after the current base.
2. **Base worlds.** Every branch's world at S (``Past.rebuild``) — one per branch that owns S in some
   lineage — is stored as a snapshot manifest, so *every* branch, not only the live one, can still
   be rebuilt, switched to and inspected at any point from S on. The ledger at S travels in them.
3. **Kept rows** at or before S: the audit trail (``audit.``, ``cap.``, ``approval.``, ``secret.``,
   ``kernel.``, ``branch.``, ``checkpoint.``, ``world.``, ``undo.``/``redo.``, process births and
   deaths) and the journals (``sys.done``, ``sys.blocked``, ``console.write``) of every agent alive
   at S on any branch, so they resume by replay after a rewind to any later point. A
   ``world.based`` event appended at the head records S, the worlds, the chain digest at S and a
   digest over the kept rows (``kernel/base.py`` verifies the chain from it).
4. **Drop** (once that event is durable, between group commits): every other row at or before S,
   every snapshot before S, and every blob no remaining row, snapshot or base world reaches
   (``kernel/reach.py``; names emitted meanwhile are re-checked on the loop just before the delete,
   and the kernel's blob cache is reset, so no write deduplicates against a deleted blob). Then
   VACUUM and a truncating WAL checkpoint; the bytes freed are the database file and its WAL measured
   before and after. Commits wait meanwhile; the loop keeps serving.

``--dry-run`` reports the same counts and the blob bytes that would go, and changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from agentos import param
from agentos.abi.export_args import GcArgs
from agentos.errors import AgentOSError, Conflict, InternalError, InvalidArgument
from agentos.kernel import base as log_base
from agentos.kernel import past, reach, timeline
from agentos.kernel.blobcache import BlobCache
from agentos.kernel.calls import Block, Caller, Done
from agentos.state import events as ev
from agentos.state.snapshot import to_pieces
from agentos.state.world import forks
from agentos.store.lineage import Lineage
from agentos.store.log import blob_hash

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])\Z")
AUDIT = (
    "audit.",
    "cap.",
    "approval.",
    "secret.",
    "kernel.",
    "branch.",
    "checkpoint.",
    "world.",
    "undo.",
    "redo.",
)
JOURNAL = ("sys.done", "sys.blocked", "console.write")
_EXEC = ThreadPoolExecutor(1, thread_name_prefix="agentos-gc")
_running: set[asyncio.Task[dict[str, Any]]] = set()


def keep_where() -> str:
    """Rows at or before the cut that stay (one JSON array parameter: the pids alive at the cut)."""
    audit = " OR ".join(f"kind GLOB '{p}*'" for p in AUDIT)
    alive = "(SELECT value FROM json_each(?1))"
    return (
        f"({audit} OR kind IN ('proc.spawned', 'proc.exited') OR (kind IN {JOURNAL!r} AND (pid IN {alive}"
        f" OR (kind = 'console.write' AND json_extract(payload, '$.console') IN {alive}))))"
    )


@dataclass
class Plan:
    seq: int
    cut_digest: bytes
    worlds: dict[str, str]
    blobs: dict[str, bytes]
    alive: str  # JSON array of pids
    dry_run: bool
    report: dict[str, Any] = field(default_factory=dict)


def cut_seq(k: Kernel, text: str) -> int:
    m = DURATION.match(text.strip())
    if m:
        return past.point_seq(k, f"@{time.time() - float(m[1]) * UNITS[m[2]]:.6f}")
    return past.point_seq(k, text)


def plan(k: Kernel, a: GcArgs) -> Plan:
    seq = cut_seq(k, a.keep_since)
    base = log_base.find_base(k.reader)
    if base is not None and seq <= base.seq:
        raise InvalidArgument(
            f"nothing to compact: the log's base is at seq {base.seq} already", code="EINVAL"
        )
    if seq < 1:
        raise InvalidArgument("nothing to compact before seq 1", code="EINVAL")
    lost = sorted(cp.name for cp in k.state.ledger.checkpoints.values() if cp.seq < seq)
    if lost:
        raise Conflict(
            f"checkpoints {', '.join(lost)} name points before seq {seq} and would be lost: drop them"
            " (agentos checkpoint --rm NAME) or keep since an earlier point",
            code="EBUSY",
        )
    ledger_forks = forks(k.state.ledger)
    owners = {log_base.owner_at(Lineage.of(b, ledger_forks), seq) for b in [param.MAIN_BRANCH, *ledger_forks]}
    digest = bytes.fromhex(_digest_hex(k, seq))
    worlds, blobs, alive = {}, {}, set()
    for owner in sorted(owners):
        state = k.past.rebuild(owner, seq)
        alive |= {p.pid for p in state.world.procs.alive() if p.kind == "agent"}
        manifest, pieces = to_pieces(state, digest)
        blobs.update(pieces)
        blobs[blob_hash(manifest)] = manifest
        worlds[str(owner)] = blob_hash(manifest)
    return Plan(seq, digest, worlds, blobs, "[" + ",".join(map(str, sorted(alive))) + "]", a.dry_run)


def _digest_hex(k: Kernel, seq: int) -> str:
    from agentos.kernel.boot import _digest_at  # noqa: PLC0415 - boot imports base, which this imports

    return _digest_at(k.log, seq, k.reader).hex()


def db_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))


def _count(path: Path, p: Plan) -> None:
    """Kept and dropped rows at or before the cut, and the kept rows' digest (a connection of its own)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        where = keep_where()
        h, kept = log_base.kept_hash(), 0
        for (digest,) in conn.execute(
            f"SELECT digest FROM events WHERE seq <= ?2 AND {where} ORDER BY seq", (p.alive, p.seq)
        ):
            h.update(bytes(digest))
            kept += 1
        (total, payload_bytes) = conn.execute(
            f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM events WHERE seq <= ?2 AND NOT {where}",
            (p.alive, p.seq),
        ).fetchall()[0]
        p.report.update(
            kept=kept, kept_digest=h.hexdigest(), dropped=total, dropped_payload_bytes=payload_bytes
        )
    finally:
        conn.close()


def _unreachable(path: Path, p: Plan) -> tuple[set[str], int]:
    """Blobs no row after the cut, no kept row, no snapshot from the cut on and no base world reaches;
    and the seq the read saw up to."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    conn.execute("BEGIN")
    try:
        upto = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()[0][0]
        names: set[str] = set()
        for data in p.blobs.values():
            names |= reach.names_in(data)
        sql = f"SELECT payload FROM events WHERE seq > ?2 OR {keep_where()}"
        for (payload,) in conn.execute(sql, (p.alive, p.seq)):
            names |= reach.names_in(payload.encode())
        for (manifest,) in conn.execute("SELECT manifest FROM snapshots WHERE seq >= ?", (p.seq,)):
            names |= reach.names_in(bytes(manifest))
        names |= set(p.worlds.values())
        get = _getter(conn)
        found = reach.reach(names, get)
        every = {h for (h,) in conn.execute("SELECT hash FROM blobs")}
        gone = every - found - set(p.blobs)
        p.report["blob_bytes"] = (
            sum(n for h, n in conn.execute("SELECT hash, size FROM blobs") if h in gone) if gone else 0
        )
        return gone, upto
    finally:
        conn.execute("COMMIT")


def _getter(conn: apsw.Connection) -> Any:
    def get(hashes: list[str]) -> dict[str, bytes]:
        q = "SELECT hash, data FROM blobs WHERE hash IN (SELECT value FROM json_each(?))"
        return {h: bytes(d) for h, d in conn.execute(q, ("[" + ",".join(f'"{h}"' for h in hashes) + "]",))}

    return get


def _drop(k: Kernel, p: Plan, gone: set[str], upto: int) -> int:
    """On the loop, between commits: re-check names emitted since the mark, then delete in one transaction."""
    conn = k.log.conn
    since: set[str] = set()
    for (payload,) in conn.execute("SELECT payload FROM events WHERE seq > ?", (upto,)):
        since |= reach.names_in(payload.encode())
    for r in (*k.committer.pending, *k.committer.inflight):
        since |= reach.names_in(r.payload)
    gone -= reach.reach(since & gone, _getter(conn))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"DELETE FROM events WHERE seq <= ?2 AND NOT {keep_where()}", (p.alive, p.seq))
        rows = conn.changes()
        conn.execute("DELETE FROM snapshots WHERE seq < ?", (p.seq,))
        listed = sorted(gone)
        for i in range(0, len(listed), 4096):
            chunk = "[" + ",".join(f'"{h}"' for h in listed[i : i + 4096]) + "]"
            conn.execute("DELETE FROM blobs WHERE hash IN (SELECT value FROM json_each(?))", (chunk,))
        conn.execute("COMMIT")
    except BaseException:
        k.log.rollback()
        raise
    k.blob_cache = BlobCache(k)  # no write may deduplicate against a blob just deleted
    k.past.kept.clear()
    return rows


def _vacuum(path: Path) -> None:
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(5000)
    try:
        conn.execute("VACUUM")
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    finally:
        conn.close()


async def run(k: Kernel, c: Caller, p: Plan) -> dict[str, Any]:
    try:
        return await _run(k, c, p)
    except AgentOSError:
        raise
    except Exception as exc:  # noqa: BLE001 - the parked caller gets it typed, never the kernel loop
        raise InternalError(f"gc failed: {type(exc).__name__}: {exc}", code="ESTORE") from exc


async def _run(k: Kernel, c: Caller, p: Plan) -> dict[str, Any]:
    loop, path = asyncio.get_running_loop(), k.log.path
    before = db_bytes(path)
    await loop.run_in_executor(_EXEC, _count, path, p)
    out = {"seq": p.seq, "dry_run": p.dry_run, "branches": sorted(map(int, p.worlds)), "bytes_before": before}
    if p.dry_run:
        gone, _ = await loop.run_in_executor(_EXEC, _unreachable, path, p)
        return {**out, **p.report, "blobs": len(gone)}
    based = ev.WorldBased(
        base_seq=p.seq,
        cut_digest=p.cut_digest.hex(),
        worlds=p.worlds,
        kept=p.report["kept"],
        kept_digest=p.report["kept_digest"],
        dropped=p.report["dropped"],
        why="gc",
        by=c.pid,
    )
    at = k.emit(based, c.pid, blobs=p.blobs)
    await k.committer.durable(at)
    gone, upto = await loop.run_in_executor(_EXEC, _unreachable, path, p)
    async with k.committer._store_lock:  # between group commits: nothing is appended meanwhile
        rows = _drop(k, p, gone, upto)
        await loop.run_in_executor(_EXEC, _vacuum, path)
    after = db_bytes(path)
    return {
        **out,
        **p.report,
        "base_event": at,
        "rows_deleted": rows,
        "blobs": len(gone),
        "bytes_after": after,
        "bytes_freed": before - after,
    }


def sys_gc(k: Kernel, c: Caller, a: GcArgs) -> Block:
    """The report of a gc (or of what it would do, ``dry_run``): see the module docstring."""
    timeline.check_caller(c, "gc")
    p = plan(k, a)
    task = asyncio.get_running_loop().create_task(run(k, c, p))
    _running.add(task)

    def done(t: asyncio.Task[dict[str, Any]]) -> None:
        _running.discard(t)
        k._schedule_wait_recheck()

    task.add_done_callback(done)
    return Block(call="gc", poll=lambda: Done(task.result()) if task.done() else None)
