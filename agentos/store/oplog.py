"""The SQL behind undo and redo (``kernel/undo.py``): the log's operations newest first, one call's
events, and the earlier events an inverse needs (a grant, a mount, a group's limits).

Why here: every SQLite decision lives in ``store/``. The newest-first scan reads the kinds that
make an operation a page at a time (``PAGE``), so an undo of the last few operations reads the
log's tail, not the log; a call's events come through the ``(pid, seq)`` index.
"""

from __future__ import annotations

from collections.abc import Sequence

import apsw

from agentos.store.events import EventRecord
from agentos.store.log import _COLUMNS, _record

PAGE = 2000  # records per newest-first page


def _rows(conn: apsw.Connection, sql: str, params: Sequence[object]) -> list[EventRecord]:
    return [_record(row) for row in conn.execute(sql, params)]


def newest(
    conn: apsw.Connection, kinds: Sequence[str], before: int, pid: int | None, limit: int = PAGE
) -> list[EventRecord]:
    """Up to ``limit`` records of ``kinds`` with seq < ``before`` (of ``pid`` when given), newest first.

    Kernel-wide, one query per kind down its ``(kind, seq)`` index, merged: a single ``kind IN``
    query would gather every such event of the log and sort them. One process's: its ``(pid, seq)``
    index walked backwards."""
    if pid is not None:
        where = f"pid = ? AND seq < ? AND kind IN ({','.join('?' * len(kinds))})"
        sql = f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY seq DESC LIMIT ?"
        return _rows(conn, sql, [pid, before, *kinds, limit])
    sql = f"SELECT {_COLUMNS} FROM events WHERE kind = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
    out: list[EventRecord] = []
    for kind in kinds:
        out += _rows(conn, sql, [kind, before, limit])
    out.sort(key=lambda r: -r.seq)
    return out[:limit]


def of_call(conn: apsw.Connection, pid: int, correlation: str, until: int) -> list[EventRecord]:
    """Every event of one call (its caller's pid and correlation id), oldest first."""
    sql = f"SELECT {_COLUMNS} FROM events WHERE pid = ? AND correlation = ? AND seq <= ? ORDER BY seq"
    return _rows(conn, sql, [pid, correlation, until])


def of_kind(conn: apsw.Connection, kind: str, until: int) -> list[EventRecord]:
    """Every event of ``kind`` (few: ``undo.done``, ``redo.done``), oldest first."""
    sql = f"SELECT {_COLUMNS} FROM events WHERE kind = ? AND seq <= ? ORDER BY seq"
    return _rows(conn, sql, [kind, until])


def last_with(
    conn: apsw.Connection, kinds: Sequence[str], field: str, value: object, before: int, lineage: str = "1"
) -> EventRecord | None:
    """The last event of ``kinds`` before seq ``before`` whose payload ``field`` is ``value``, on
    the branches ``lineage`` selects (a WHERE term: ``Lineage.literal()``)."""
    sql = (
        f"SELECT {_COLUMNS} FROM events WHERE kind IN ({','.join('?' * len(kinds))}) AND seq < ?"
        f" AND json_extract(payload, '$.{field}') = ? AND {lineage} ORDER BY seq DESC LIMIT 1"
    )
    rows = _rows(conn, sql, [*kinds, before, value])
    return rows[0] if rows else None


def calls_done(
    conn: apsw.Connection, pid: int, syscalls: Sequence[str], since: int, until: int
) -> list[EventRecord]:
    """The ``sys.done`` journal records of an agent's calls (by syscall id) after seq ``since`` (a
    call's record follows its events): what each call was."""
    if not syscalls:
        return []
    sql = (
        f"SELECT {_COLUMNS} FROM events WHERE pid = ? AND seq > ? AND seq <= ? AND kind = 'sys.done'"
        f" AND syscall IN ({','.join('?' * len(syscalls))})"
    )
    return _rows(conn, sql, [pid, since, until, *syscalls])
