"""The events table's file-change indexes (partial indexes on ``$.ino`` and ``$.pid``): every append
evaluates their WHERE term, file history reads through them, and a log made with an older term
gets them rebuilt when it is opened."""

from __future__ import annotations

import json
import time
from pathlib import Path

import apsw

from agentos.store import history
from agentos.store.events import GENESIS, Sequencer
from agentos.store.log import _COLUMNS, _INSERT, VFS_CHANGE_KINDS, VFS_CHANGES, EventLog

OLD_TERM = f"kind IN ({', '.join(repr(kind) for kind in VFS_CHANGE_KINDS)})"  # the first version's term


def _append(log: EventLog, events: list[tuple[str, dict]]) -> None:
    seqr = Sequencer(1, GENESIS)
    records = [
        seqr.stamp(0, kind, 1, 2, None, None, time.time_ns(), json.dumps(body).encode())
        for kind, body in events
    ]
    log.append(records)


def _index_terms(conn: apsw.Connection) -> dict[str, str]:
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE name IN ('events_vfs_ino', 'events_vfs_pid')"
    ).fetchall()
    return {name: sql.split(" WHERE ", 1)[1] for name, sql in rows}


def test_an_append_evaluates_the_index_terms_without_a_lookup_table(tmp_path: Path) -> None:
    # ``kind IN (...)`` in a partial index's WHERE builds an ephemeral table each time the INSERT
    # runs: once per event under executemany, which cost more than the insert itself
    log = EventLog(tmp_path / "log.db")
    try:
        row = (1, 0, "sys.done", 1, 2, None, None, 1, b"{}", GENESIS, GENESIS)
        opcodes = [r[1] for r in log.conn.execute("EXPLAIN " + _INSERT, row)]
        assert "Insert" in opcodes and "IdxInsert" in opcodes  # it is the insert's program
        assert "OpenEphemeral" not in opcodes
    finally:
        log.close()


def test_a_log_made_with_an_older_index_term_is_reindexed_and_history_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    log = EventLog(path)
    _append(
        log,
        [
            ("vfs.created", {"ino": 5, "pid": 7, "name": "a"}),
            ("sys.done", {"ino": 5, "pid": 7}),  # not a file change: never in the history
            ("vfs.wrote", {"ino": 5, "pid": 7}),
            ("vfs.wrote", {"ino": 6, "pid": 8}),
            ("vfs.chmod", {"ino": 5, "pid": 8}),
        ],
    )
    log.close()
    conn = apsw.Connection(str(path))  # as an older AgentOS left it
    for name, field in (("events_vfs_ino", "ino"), ("events_vfs_pid", "pid")):
        conn.execute(f"DROP INDEX {name}")
        conn.execute(
            f"CREATE INDEX {name} ON events(json_extract(payload, '$.{field}'), seq) WHERE {OLD_TERM}"
        )
    conn.close()

    log = EventLog(path)
    try:
        assert _index_terms(log.conn) == {"events_vfs_ino": VFS_CHANGES, "events_vfs_pid": VFS_CHANGES}
        assert [r.kind for r in history.file_changes(log.conn, [5], 10)] == [
            "vfs.created",
            "vfs.wrote",
            "vfs.chmod",
        ]
        assert [r.seq for r in history.changes_by(log.conn, [8], 10)] == [4, 5]
        for field, index in (("ino", "events_vfs_ino"), ("pid", "events_vfs_pid")):
            sql = (
                f"SELECT {_COLUMNS} FROM events WHERE {VFS_CHANGES} AND json_extract(payload, '$.{field}')"
                " IN (?) AND seq <= ? ORDER BY seq"
            )
            plan = " ".join(r[-1] for r in log.conn.execute("EXPLAIN QUERY PLAN " + sql, (5, 10)))
            assert f"USING INDEX {index}" in plan, plan
    finally:
        log.close()
    log = EventLog(path)  # opened again: nothing to rebuild, nothing lost
    try:
        assert _index_terms(log.conn)["events_vfs_ino"] == VFS_CHANGES
        assert len(history.file_changes(log.conn, [5], 10)) == 3
    finally:
        log.close()
