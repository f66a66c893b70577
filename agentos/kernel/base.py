"""The log's base: where history begins once ``agentos gc`` compacted it or ``agentos import`` made it.

A log with no ``world.based`` event begins at seq 1 from the empty state, as always. With one, the
state of a lineage at the base's ``base_seq`` is a stored world (``state/base_events.py``), and the
fold starts there: :func:`base_state` is what ``boot``, ``past`` and ``verify`` start from when no
snapshot at or after the base serves. A point before the base has no state any more: asking for
one is a typed ``ECOMPACTED`` error, never a wrong answer.

The chain stays verifiable (:func:`verify_chain`): the rows kept at or before the base each match
their own digest, and together the base's ``kept_digest``; the first row after the base links to
its ``cut_digest`` (the digest of the last event folded into it), and every row after that to its
predecessor, up to the signed head. What is gone cannot be re-checked: the base is trusted as far as
the chain after it (which covers the ``world.based`` event itself, when gc appended it) is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import apsw
import msgspec

from agentos.errors import InternalError, NotFound
from agentos.state import events as ev
from agentos.state.snapshot import from_pieces
from agentos.state.world import State
from agentos.store.events import EventRecord, verify_record
from agentos.store.lineage import Lineage
from agentos.store.log import EventLog

KIND = "world.based"


@dataclass(frozen=True, slots=True)
class Base:
    seq: int  # base_seq: the worlds are the state after it
    at: int  # the seq of the world.based event
    cut_digest: bytes
    worlds: dict[int, str]  # owner branch -> manifest blob hash
    kept: int
    kept_digest: str
    why: str


def find_base(conn: apsw.Connection) -> Base | None:
    """The newest ``world.based`` event (each one's base is later than the one before)."""
    rows = conn.execute(
        "SELECT seq, version, payload FROM events WHERE kind = ? ORDER BY seq DESC LIMIT 1", (KIND,)
    ).fetchall()
    if not rows:
        return None
    seq, version, payload = rows[0]
    e = ev.decode(KIND, version, payload.encode())
    assert isinstance(e, ev.WorldBased)
    worlds = {int(b): h for b, h in e.worlds.items()}
    return Base(e.base_seq, seq, bytes.fromhex(e.cut_digest), worlds, e.kept, e.kept_digest, e.why)


def owner_at(lineage: Lineage, seq: int) -> int:
    """The branch whose events hold ``seq`` in ``lineage`` (limits shrink toward main: the deepest
    branch that still sees ``seq``)."""
    return [b for b, limit in lineage.limits if limit >= seq][-1]


def compacted(seq: int, base: Base) -> NotFound:
    return NotFound(
        f"seq {seq} is before the log's base at seq {base.seq}: the history before it was "
        f"{'compacted by agentos gc' if base.why == 'gc' else 'not imported'}; pick a point at or after {base.seq}",
        code="ECOMPACTED",
    )


def base_state(
    store: EventLog, lineage: Lineage, until: int | None = None, conn: apsw.Connection | None = None
) -> tuple[State, int]:
    """(the state to fold forward from, its seq): the base's world for ``lineage``, or the empty
    state at 0 when the log has no base. Raises ``ECOMPACTED`` when ``until`` is before the base."""
    conn = conn or store.conn
    base = find_base(conn)
    if base is None:
        return State(), 0  # as a fold from the start always began (its branching events name the branch)
    if until is not None and until < base.seq:
        raise compacted(until, base)
    owner = owner_at(lineage, base.seq)
    h = base.worlds.get(owner)
    manifest = store.get_blob(h, conn) if h is not None else None
    if manifest is None:
        raise InternalError(f"the base at seq {base.seq} holds no world for branch {owner}", code="ESTORE")
    try:
        state = from_pieces(manifest, lambda piece: store.get_blob(piece, conn), base.cut_digest)
    except (KeyError, msgspec.DecodeError) as exc:
        raise InternalError(f"the base at seq {base.seq} cannot be read: {exc}", code="ESTORE") from None
    state.world.branch = lineage.branch
    return state, base.seq


def cut_digest(conn: apsw.Connection, seq: int) -> bytes | None:
    """The chain digest at ``seq`` when ``seq`` is the base and its event is gone (else None)."""
    base = find_base(conn)
    return base.cut_digest if base is not None and base.seq == seq else None


def kept_hash(records: list[EventRecord] | None = None) -> hashlib._Hash:
    h = hashlib.sha256()
    for r in records or ():
        h.update(r.digest)
    return h


def verify_chain(store: EventLog, conn: apsw.Connection) -> tuple[bool, str]:
    """``EventLog.verify_chain``, from the base when there is one (see the module docstring)."""
    conn.execute("BEGIN")  # one read snapshot for the kept rows, the chain and the signed head
    try:
        base = find_base(conn)
        if base is None:
            conn.execute("COMMIT")
            return store.verify_chain(conn)
        return _verify_from(store, conn, base)
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def _verify_from(store: EventLog, conn: apsw.Connection, base: Base) -> tuple[bool, str]:
    kept, n = kept_hash(), 0
    for r in store.read(0, until=base.seq, conn=conn):
        if not verify_record(r, r.prev_digest):
            return False, f"digest mismatch at seq {r.seq} (a row kept before the base)"
        kept.update(r.digest)
        n += 1
    if n != base.kept or kept.hexdigest() != base.kept_digest:
        return False, (
            f"the rows kept before the base at seq {base.seq} were changed ({n} found, {base.kept} recorded):"
            f" digest mismatch at seq {base.seq}"
        )
    prev, expected, last = base.cut_digest, base.seq + 1, None
    for r in store.read(base.seq, conn=conn):
        if r.seq != expected:
            return False, f"gap: expected seq {expected}, found {r.seq}"
        if not verify_record(r, prev):
            return False, f"digest mismatch at seq {r.seq}"
        prev, expected, last = r.digest, r.seq + 1, r
    ok, detail = store._check_head(last, conn)
    if not ok:
        return ok, detail
    return True, f"{expected - 1} events verified (from the base at seq {base.seq}; {n} rows kept before it)"
