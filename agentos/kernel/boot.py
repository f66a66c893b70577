"""Rebuilding projected state at boot: newest valid snapshot, then the tail of the log.

Snapshots are caches: one that is missing a piece, is newer than the log, or was written by
another projection version is ignored and the state is rebuilt from the events alone.
"""

from __future__ import annotations

import logging

import apsw

from agentos import param
from agentos.state import events as ev
from agentos.state.snapshot import from_pieces
from agentos.state.world import PROJECTION_VERSION, State, apply
from agentos.store.log import EventLog

log = logging.getLogger("agentos.boot")


def replay_into(
    state: State, store: EventLog, since: int, until: int | None = None, conn: apsw.Connection | None = None
) -> State:
    for r in store.read(since, until=until, conn=conn):
        apply(state, r.seq, r.ts, ev.decode(r.kind, r.version, r.payload))
    return state


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
            state = from_pieces(manifest, store.get_blob)
        except (KeyError, ValueError) as exc:
            log.warning("ignoring snapshot at seq %d: %s", seq, exc)
        else:
            return replay_into(state, store, seq), seq
    return rebuild_state(store), 0
