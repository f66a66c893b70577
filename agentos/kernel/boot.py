"""Rebuilding projected state at boot: newest valid snapshot, then the tail of the log.

Snapshots are caches: one that is missing a piece, is newer than the log, fails its signature
or was written by another projection version is ignored and the state is rebuilt from the
events alone. The tail replayed on top of it is checked link by link against the hash chain.
"""

from __future__ import annotations

import logging

import apsw

from agentos import param
from agentos.errors import SecurityViolation
from agentos.state import events as ev
from agentos.state.snapshot import from_pieces
from agentos.state.world import PROJECTION_VERSION, State, apply
from agentos.store.events import GENESIS, verify_record
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
) -> State:
    prev = _digest_at(store, since, conn) if verify else b""
    for r in store.read(since, until=until, conn=conn):
        if verify:
            if not verify_record(r, prev):
                raise SecurityViolation(f"the hash chain breaks at seq {r.seq}: the log was edited")
            prev = r.digest
        apply(state, r.seq, r.ts, ev.decode(r.kind, r.version, r.payload))
    return state


def _digest_at(store: EventLog, seq: int, conn: apsw.Connection | None) -> bytes:
    if seq == 0:
        return GENESIS
    for r in store.read(seq - 1, until=seq, conn=conn):
        return r.digest
    raise SecurityViolation(f"event {seq}, where the snapshot was taken, is missing from the log")


def rebuild_state(store: EventLog, until: int | None = None, conn: apsw.Connection | None = None) -> State:
    """The state as a pure function of the log alone (no snapshot)."""
    return replay_into(State(), store, 0, until, conn)


def load_state(store: EventLog) -> tuple[State, int]:
    """(state at the head of the log, seq of the snapshot it started from or 0)."""
    head, _ = store.head()
    snap = store.latest_snapshot(param.MAIN_BRANCH, PROJECTION_VERSION, head)
    if snap is not None:
        seq, manifest = snap
        try:
            state = from_pieces(manifest, store.get_blob, _digest_at(store, seq, None))
        except (KeyError, ValueError, SecurityViolation) as exc:
            log.warning("ignoring snapshot at seq %d: %s", seq, exc)
        else:
            return replay_into(state, store, seq, verify=True), seq
    return replay_into(State(), store, 0, verify=True), 0
