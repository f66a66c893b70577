"""``export``: a checkpoint's world, the blobs it names and its live agents' journals, to one file.

What goes in (``store/exportfile.py`` is the format): the state at the checkpoint's (branch, seq),
rebuilt as ``agentos at`` rebuilds it, as a snapshot manifest of content-addressed pieces; every blob
those pieces and the journals name (file manifests and chunks, agents' code, console lines); the
journal rows (``sys.done``, ``sys.blocked``, ``print()`` lines) of the SDK agents alive there, with
their original seqs and chain digests, so they resume by replay in the other home; the
``branch.created`` rows of the checkpoint's lineage (the journals are read along it). The ledger
travels with the world, pruned to what the other home can use: its allocators (so no imported id is
ever handed out again there), revocations and spend, the branches of this lineage, this checkpoint.

:func:`world_hash` is what an import must reproduce exactly: sha256 over the canonical encoding of
the world alone (processes, capabilities, resource groups, the file tree with every inode's
manifest, open files and fd tables, and the world's branch), with no ledger and no seq.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from agentos import __version__, param
from agentos.abi.export_args import ExportArgs
from agentos.errors import Conflict, NotFound
from agentos.kernel import reach
from agentos.kernel.boot import _digest_at
from agentos.kernel.calls import Block, Caller
from agentos.kernel.query import pool_of
from agentos.state.snapshot import to_pieces
from agentos.state.world import Ledger, State, forks, state_hash
from agentos.store import exportfile
from agentos.store.branches import read_where
from agentos.store.events import EventRecord
from agentos.store.lineage import Lineage
from agentos.store.log import EventLog

if TYPE_CHECKING:
    import apsw

    from agentos.kernel.kernel import Kernel


def world_hash(state: State) -> str:
    """sha256 of the canonical world alone (see the module docstring)."""
    return state_hash(State(seq=0, world=state.world, ledger=Ledger()))


def portable_ledger(state: State, lineage: Lineage, cp: Any) -> Ledger:
    """The ledger as it travels: this lineage's branches, this checkpoint, every allocator past
    every id in the world (they already are; made sure of, since a reused id is never acceptable)."""
    ledger = msgspec.structs.replace(state.ledger)
    mine = {b for b, _ in lineage.limits}
    ledger.branches = {b: info for b, info in ledger.branches.items() if b in mine}
    ledger.checkpoints = {cp.name: cp}  # made after its point: the ledger there does not have it yet
    w = state.world
    ledger.next_pid = max([ledger.next_pid, *(pid + 1 for pid in w.procs.procs)])
    ledger.next_ino = max([ledger.next_ino, *(ino + 1 for ino in w.vfs.inodes)])
    ledger.next_cap = max([ledger.next_cap, *(cap + 1 for cap in w.caps.caps)])
    return ledger


def journal_rows(
    log: EventLog, conn: apsw.Connection, state: State, lineage: Lineage, seq: int
) -> list[EventRecord]:
    """The journal rows (every epoch) of the SDK agents alive in ``state``, along ``lineage``."""
    rows: list[EventRecord] = []
    for p in sorted(state.world.procs.alive(), key=lambda p: p.pid):
        if p.kind != "agent":
            continue
        rows += [
            r
            for r in log.journal_of(p.pid, p.created_seq - 1, conn)
            if r.seq <= seq and lineage.contains(r.branch, r.seq)
        ]
    return sorted(rows, key=lambda r: r.seq)


def branch_rows(conn: apsw.Connection, lineage: Lineage, seq: int) -> list[EventRecord]:
    mine = {b for b, _ in lineage.limits}
    rows = read_where(conn, "kind = 'branch.created'", [], until=seq)
    return [r for r in rows if msgspec.json.decode(r.payload).get("branch") in mine]


def build(
    log: EventLog, conn: apsw.Connection, state: State, cp: Any, source: dict[str, Any]
) -> exportfile.Content:
    """The file's content for checkpoint ``cp`` whose state is ``state`` (the caller's to change)."""
    lineage = Lineage.of(cp.branch, forks(state.ledger))
    digest = _digest_at(log, cp.seq, conn)
    state.ledger = portable_ledger(state, lineage, cp)
    manifest, pieces = to_pieces(state, digest)
    journal = journal_rows(log, conn, state, lineage, cp.seq)
    names: set[str] = set()
    for data in (*pieces.values(), *(r.payload for r in journal)):
        names |= reach.names_in(data)
    found = reach.reach(names - set(pieces), lambda hs: log.get_blobs(hs, conn))
    blobs = dict(pieces)
    listed = sorted(found - set(pieces))
    for i in range(0, len(listed), reach.BATCH):
        blobs.update(log.get_blobs(listed[i : i + reach.BATCH], conn))
    w = state.world
    counts = {
        "processes": len(w.procs.alive()),
        "agents": sum(1 for p in w.procs.alive() if p.kind == "agent"),
        "files": sum(1 for n in w.vfs.inodes.values() if n.kind == "file"),
        "blobs": len(blobs),
        "blob_bytes": sum(map(len, blobs.values())),
        "journal": len(journal),
    }
    checkpoint = exportfile.Checkpoint(
        name=cp.name, branch=cp.branch, seq=cp.seq, digest=digest.hex(), made_ts=cp.made_ts
    )
    return exportfile.Content(
        checkpoint=checkpoint,
        world_hash=world_hash(state),
        manifest=manifest,
        blobs=blobs,
        journal=journal,
        branches=branch_rows(conn, lineage, cp.seq),
        source=source,
        counts=counts,
    )


def sys_export(k: Kernel, c: Caller, a: ExportArgs) -> Block:
    """``{name, branch, seq, path, bytes, sha256, world_hash, counts}``: checkpoint ``a.name`` written
    to ``a.path`` (on the kernel's host) as one portable, content-hashed file."""
    cp = k.state.ledger.checkpoints.get(a.name)
    if cp is None:
        raise NotFound(f"there is no checkpoint {a.name!r} (agentos checkpoints lists them)", code="ENOENT")
    path = Path(a.path)
    if path.exists() and not a.force:
        raise Conflict(f"{path} exists (--force replaces it)", code="EEXIST")
    if not path.parent.is_dir():
        raise NotFound(f"{path.parent} is not a directory", code="ENOENT")
    state = k.past.rebuild(cp.branch, cp.seq)  # a fresh copy: the worker may change its ledger
    source = {
        "home": str(k.home.path),
        "hash_seed": k.home.hash_seed(),
        "agentos": __version__,
        "exported_ts": time.time_ns(),
        "main": param.MAIN_BRANCH,
    }
    pool = pool_of(k)

    def work() -> dict[str, Any]:
        pool.wait_durable(k, cp.seq)
        conn = k.log.reader()
        try:
            content = build(k.log, conn, state, cp, source)
        finally:
            conn.close()
        size, digest = exportfile.write(path, content)
        return {
            "name": cp.name,
            "branch": cp.branch,
            "seq": cp.seq,
            "path": str(path),
            "bytes": size,
            "sha256": digest,
            "world_hash": content.world_hash,
            "counts": content.counts,
        }

    return pool.submit("export", work)
