"""The SQL behind branches: which branch the log continues on, every fork, and a lineage's events.

The log's own rows are the truth: the live branch is the branch of the last event (a rewind's or
switch's first event is on the branch it continues on) and forks are the ``branch.created`` events
(through the kind index, so boot reads a handful of rows, not the log).
"""

from __future__ import annotations

from collections.abc import Iterator

import apsw

from agentos.param import MAIN_BRANCH
from agentos.store.events import EventRecord
from agentos.store.lineage import Lineage
from agentos.store.log import _COLUMNS, _record


def head_branch(conn: apsw.Connection) -> int:
    rows = conn.execute("SELECT branch FROM events ORDER BY seq DESC LIMIT 1").fetchall()
    return rows[0][0] if rows else MAIN_BRANCH


def forks(conn: apsw.Connection, until: int | None = None) -> dict[int, tuple[int, int]]:
    """branch -> (parent, fork seq), from the ``branch.created`` events (up to ``until``)."""
    sql = (
        "SELECT json_extract(payload, '$.branch'), json_extract(payload, '$.parent'),"
        " json_extract(payload, '$.fork_seq') FROM events WHERE kind = 'branch.created'"
    )
    params: list[int] = []
    if until is not None:
        sql += " AND seq <= ?"
        params.append(until)
    return {b: (parent, fork) for b, parent, fork in conn.execute(sql, params).fetchall()}


def read_where(
    conn: apsw.Connection,
    where: str,
    params: list[object],
    *,
    since: int = 0,
    until: int | None = None,
    limit: int | None = None,
) -> Iterator[EventRecord]:
    """Events with seq > since (and <= until) matching ``where``, in seq order."""
    sql = f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND {where}"
    args: list[object] = [since, *params]
    if until is not None:
        sql += " AND seq <= ?"
        args.append(until)
    sql += " ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    for row in conn.execute(sql, args).fetchall():
        yield _record(row)


def read_lineage(
    conn: apsw.Connection,
    lineage: Lineage,
    since: int,
    until: int,
    pid: int | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> Iterator[EventRecord]:
    """A lineage's events (``agentos events --branch B``), optionally of one pid or kind."""
    where, params = lineage.sql()
    extra: list[object] = list(params)
    if pid is not None:
        where += " AND pid = ?"
        extra.append(pid)
    if kind is not None:
        where += " AND kind = ?"
        extra.append(kind)
    return read_where(conn, where, extra, since=since, until=until, limit=limit)
