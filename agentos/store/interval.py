"""The SQL behind ``agentos diff A B`` (``kernel/pastdiff.py``): what the log says happened in the
interval (A, B] that the two states alone cannot tell — processes born and gone, capabilities
granted and revoked, files created and removed in between, and which inodes changed at all.

Why here: every SQLite decision lives in ``store/``. Each query reads through the ``events_kind``
index (``kind``, ``seq``), so it costs the events of those kinds in the interval, not the whole
interval; file changes by inode use the partial ``events_vfs_ino`` index, whose WHERE term the
query repeats verbatim (``log.VFS_CHANGES``). ``on`` is a branch lineage's WHERE term
(``Lineage.literal``): the interval as that branch saw it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import apsw

from agentos.store.events import EventRecord
from agentos.store.history import batched
from agentos.store.log import _COLUMNS, VFS_CHANGE_KINDS, VFS_CHANGES, _record


def _kinds(kinds: Sequence[str]) -> str:
    return f"kind IN ({','.join('?' * len(kinds))})"


def between(
    conn: apsw.Connection, since: int, until: int, kinds: Sequence[str], limit: int, on: str = "1"
) -> list[EventRecord]:
    """The first ``limit`` events of ``kinds`` with ``since < seq <= until``, in seq order."""
    sql = (
        f"SELECT {_COLUMNS} FROM events INDEXED BY events_kind WHERE {_kinds(kinds)}"
        f" AND seq > ? AND seq <= ? AND {on} ORDER BY seq LIMIT ?"
    )
    return [_record(row) for row in conn.execute(sql, [*kinds, since, until, limit])]


def counts(
    conn: apsw.Connection, since: int, until: int, kinds: Sequence[str], on: str = "1"
) -> dict[str, int]:
    """How many events of each of ``kinds`` lie in the interval."""
    sql = (
        f"SELECT kind, count(*) FROM events INDEXED BY events_kind WHERE {_kinds(kinds)}"
        f" AND seq > ? AND seq <= ? AND {on} GROUP BY kind"
    )
    return {kind: n for kind, n in conn.execute(sql, [*kinds, since, until])}


def touched_inodes(conn: apsw.Connection, since: int, until: int, limit: int, on: str = "1") -> list[int]:
    """Up to ``limit`` inodes (lowest first) that a file change in the interval names: its own
    ``ino``, and the inode a rename replaced. An inode no change names is the same at both ends."""
    kinds = [*VFS_CHANGE_KINDS, "vfs.mkfs"]
    sql = (
        "SELECT ino FROM (SELECT json_extract(payload, '$.ino') AS ino FROM events INDEXED BY events_kind"
        f" WHERE {_kinds(kinds)} AND seq > ? AND seq <= ? AND {on}"
        " UNION SELECT json_extract(payload, '$.replaced') FROM events INDEXED BY events_kind"
        f" WHERE kind = 'vfs.renamed' AND seq > ? AND seq <= ? AND {on})"
        " WHERE ino > 0 ORDER BY ino LIMIT ?"
    )
    return [int(ino) for (ino,) in conn.execute(sql, [*kinds, since, until, since, until, limit])]


def renamed_inodes(conn: apsw.Connection, since: int, until: int, on: str = "1") -> set[int]:
    """Inodes moved by a rename in the interval (the ones whose name may differ at its ends)."""
    sql = (
        "SELECT DISTINCT json_extract(payload, '$.ino') FROM events INDEXED BY events_kind"
        f" WHERE kind = 'vfs.renamed' AND seq > ? AND seq <= ? AND {on}"
    )
    return {int(ino) for (ino,) in conn.execute(sql, [since, until])}


def names_of(
    conn: apsw.Connection, inos: Iterable[int], since: int, until: int, on: str = "1"
) -> list[EventRecord]:
    """The naming changes of these inodes in the interval (created, linked, renamed, unlinked, rmdir),
    in seq order: where a file that came and went in between lived."""
    naming = "kind IN ('vfs.created', 'vfs.linked', 'vfs.renamed', 'vfs.unlinked', 'vfs.rmdir')"
    return batched(conn, f"{VFS_CHANGES} AND {naming} AND {on}", "ino", inos, until, since=since)


def grants_of(conn: apsw.Connection, caps: Iterable[int], until: int, on: str = "1") -> list[EventRecord]:
    """The ``cap.granted`` events of these capabilities (what a revoked one was, once its holder is gone)."""
    where = f"kind = 'cap.granted' AND {on}"
    return batched(conn, where, "cap", caps, until, table="events INDEXED BY events_kind")
