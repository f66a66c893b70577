"""Rebuilding projected state at boot: newest valid snapshot, then the tail of the log.

Snapshots are caches: one that is missing a piece, is newer than the log, fails its signature
or was written by another projection version is ignored and the state is rebuilt from the
events alone. The tail replayed on top of it is checked link by link against the hash chain.
"""

from __future__ import annotations

import logging

import apsw

from agentos.errors import SecurityViolation
from agentos.kernel import base as log_base
from agentos.state import events as ev
from agentos.state.snapshot import from_pieces
from agentos.state.world import PROJECTION_VERSION, State, apply
from agentos.store import branches
from agentos.store.events import GENESIS, verify_record
from agentos.store.lineage import Lineage
from agentos.store.log import EventLog

log = logging.getLogger("agentos.boot")


def replay_into(
    state: State,
    store: EventLog,
    since: int,
    until: int | None = None,
    conn: apsw.Connection | None = None,
    *,
    verify: bool = False,
    lineage: Lineage | None = None,
) -> State:
    """Fold the events after ``since`` into ``state``: the ledger all of them, the world those of
    ``lineage`` (default: the lineage of the branch the log continues on)."""
    lineage = lineage or lineage_at(store, conn)
    contains = lineage.contains
    if not verify:  # the columns a fold needs, no records: about a fifth of a past state's tail replay
        decode = ev.decode
        for seq, branch, kind, version, ts, payload in store.read_folds(since, until, conn):
            apply(state, seq, ts, decode(kind, version, payload), contains(branch, seq))
        return state
    prev = _digest_at(store, since, conn)
    for r in store.read(since, until=until, conn=conn):
        if not verify_record(r, prev):
            raise SecurityViolation(f"the hash chain breaks at seq {r.seq}: the log was edited")
        prev = r.digest
        apply(state, r.seq, r.ts, ev.decode(r.kind, r.version, r.payload), contains(r.branch, r.seq))
    return state


def lineage_at(store: EventLog, conn: apsw.Connection | None = None, branch: int | None = None) -> Lineage:
    """The lineage of ``branch`` (default: the branch of the log's last event)."""
    conn = conn or store.conn
    return Lineage.of(branches.head_branch(conn) if branch is None else branch, branches.forks(conn))


def best_snapshot(
    store: EventLog, lineage: Lineage, max_seq: int, conn: apsw.Connection | None = None
) -> tuple[int, bytes] | None:
    """The newest snapshot any branch of ``lineage`` took within what this lineage sees."""
    best: tuple[int, bytes] | None = None
    for b, limit in lineage.limits:
        snap = store.latest_snapshot(b, PROJECTION_VERSION, min(limit, max_seq), conn=conn)
        if snap is not None and (best is None or snap[0] > best[0]):
            best = snap
    return best


def _digest_at(store: EventLog, seq: int, conn: apsw.Connection | None) -> bytes:
    if seq == 0:
        return GENESIS
    for r in store.read(seq - 1, until=seq, conn=conn):
        return r.digest
    cut = log_base.cut_digest(conn or store.conn, seq)  # the base's: its event was compacted away
    if cut is not None:
        return cut
    raise SecurityViolation(f"event {seq}, where the snapshot was taken, is missing from the log")


def rebuild_state(
    store: EventLog,
    until: int | None = None,
    conn: apsw.Connection | None = None,
    lineage: Lineage | None = None,
) -> State:
    """The state as a pure function of the log alone (no snapshot; from the base, when gc or import
    made one)."""
    lineage = lineage or lineage_at(store, conn)
    state, since = log_base.base_state(store, lineage, until, conn)
    return replay_into(state, store, since, until, conn, lineage=lineage)


def load_state(store: EventLog) -> tuple[State, int]:
    """(state at the head of the log, seq of the snapshot it started from or 0)."""
    head, _ = store.head()
    lineage = lineage_at(store)
    snap = best_snapshot(store, lineage, head)
    if snap is not None:
        seq, manifest = snap
        try:
            state = from_pieces(manifest, store.get_blob, _digest_at(store, seq, None))
            state.world.branch = lineage.branch  # an ancestor's snapshot: the same world, seen from here
        except (KeyError, ValueError, SecurityViolation) as exc:
            log.warning("ignoring snapshot at seq %d: %s", seq, exc)
        else:
            return replay_into(state, store, seq, verify=True, lineage=lineage), seq
    state, since = log_base.base_state(store, lineage)
    state = replay_into(state, store, since, verify=True, lineage=lineage)
    state.world.branch = lineage.branch
    return state, since
