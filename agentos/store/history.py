"""The SQL behind file history and undo: a file's changes by inode, one process's or one call's file
changes, the last change that gave a name, and every spawn (``kernel/fshistory.py`` adds what is
not committed yet).

Why here: every SQLite decision lives in ``store/`` (the log's schema and its indexes are in
``log.py``). The file changes (``VFS_CHANGE_KINDS``) are indexed by ``$.ino`` and ``$.pid`` of their
payload, partial indexes whose WHERE term each query repeats verbatim, so SQLite uses them: a
file's history costs its own events, not the log's. Name lookups (a deleted path) and renames
that replaced a file are found through the kind index: they scan those kinds' events (few).
Every query reads up to ``until`` (the durable seq the caller took) and returns records in seq order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import apsw

from agentos.store.events import EventRecord
from agentos.store.log import _COLUMNS, VFS_CHANGES, _record

_IN_BATCH = 500  # values per IN (...) list (SQLite allows 32,766 variables per statement)


def _rows(conn: apsw.Connection, sql: str, params: Sequence[object]) -> list[EventRecord]:
    return [_record(row) for row in conn.execute(sql, params)]


def batched(
    conn: apsw.Connection,
    where: str,
    field: str,
    values: Iterable[int],
    until: int,
    *,
    since: int = 0,
    table: str = "events",
) -> list[EventRecord]:
    """Events matching ``where`` whose payload ``field`` is one of ``values``, with ``since < seq <=
    until``, in seq order (``values`` bound ``_IN_BATCH`` at a time)."""
    todo = sorted(set(values))
    out: list[EventRecord] = []
    for i in range(0, len(todo), _IN_BATCH):
        part = todo[i : i + _IN_BATCH]
        sql = (
            f"SELECT {_COLUMNS} FROM {table} WHERE {where} AND json_extract(payload, '$.{field}')"
            f" IN ({','.join('?' * len(part))}) AND seq > ? AND seq <= ? ORDER BY seq"
        )
        out += _rows(conn, sql, [*part, since, until])
    return sorted(out, key=lambda r: r.seq) if len(todo) > _IN_BATCH else out


def file_changes(conn: apsw.Connection, inos: Iterable[int], until: int) -> list[EventRecord]:
    """Every change to these inodes (created, written, version, named, unnamed, chmod ...)."""
    return batched(conn, VFS_CHANGES, "ino", inos, until)


def replaced(conn: apsw.Connection, inos: Iterable[int], until: int) -> list[EventRecord]:
    """The renames that replaced one of these inodes at their destination (``$.replaced``)."""
    return batched(conn, "kind = 'vfs.renamed'", "replaced", inos, until)


def changes_by(conn: apsw.Connection, pids: Iterable[int], until: int) -> list[EventRecord]:
    """Every file change these processes made (the ``pid`` of the payload: the one whose change it
    was, also when the kernel or a killer emitted it, as the versions cut at an exit)."""
    return batched(conn, VFS_CHANGES, "pid", pids, until)


def changes_of_call(conn: apsw.Connection, correlation: str, pid: int, until: int) -> list[EventRecord]:
    """The file changes of one call: its correlation id, emitted under the caller's pid (indexed)."""
    sql = f"SELECT {_COLUMNS} FROM events WHERE pid = ? AND correlation = ? AND {VFS_CHANGES} AND seq <= ? ORDER BY seq"
    return _rows(conn, sql, [pid, correlation, until])


def last_named(
    conn: apsw.Connection, parent: int, name: str, until: int, on: str = "1"
) -> EventRecord | None:
    """The last change that put ``name`` in directory ``parent`` (created, linked, or renamed there);
    ``on``: a lineage's term (``Lineage.literal``), so a branch left behind is not looked at."""
    sql = (
        f"SELECT {_COLUMNS} FROM events WHERE seq <= ? AND {on} AND ("
        "(kind IN ('vfs.created', 'vfs.linked') AND json_extract(payload, '$.parent') = ?"
        " AND json_extract(payload, '$.name') = ?)"
        " OR (kind = 'vfs.renamed' AND json_extract(payload, '$.new_parent') = ?"
        " AND json_extract(payload, '$.new_name') = ?)) ORDER BY seq DESC LIMIT 1"
    )
    rows = _rows(conn, sql, [until, parent, name, parent, name])
    return rows[0] if rows else None


def spawns(conn: apsw.Connection, until: int) -> list[EventRecord]:
    """Every ``proc.spawned`` event (a process's parent and name, also once it is reaped)."""
    sql = f"SELECT {_COLUMNS} FROM events WHERE kind = 'proc.spawned' AND seq <= ? ORDER BY seq"
    return _rows(conn, sql, [until])


def ts_of(conn: apsw.Connection, seq: int) -> int | None:
    """The timestamp (ns) of the event at ``seq``, None if there is none."""
    rows = conn.execute("SELECT ts FROM events WHERE seq = ?", (seq,)).fetchall()
    return int(rows[0][0]) if rows else None
