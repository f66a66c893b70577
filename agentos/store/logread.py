"""Reading a home's log without writing it: for tools that check a log (``agentos verify``).

``ReadOnlyLog`` is an ``EventLog`` over a read-only connection: no schema is created, no stale
index dropped, nothing is ever written, so it is safe with or without a kernel on the home (WAL
readers never block its writer) and on a log one distrusts. ``snapshot_rows`` lists every stored
snapshot with whether its signature holds (``latest_snapshot`` only returns the newest good one).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

import apsw

from agentos.errors import NotFound
from agentos.store.log import EventLog


class ReadOnlyLog(EventLog):
    """An ``EventLog`` whose every connection is read-only (its write methods fail)."""

    def __init__(self, path: Path | str, *, hmac_key: bytes = b"") -> None:
        # no super().__init__: that opens a writer and creates the schema
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFound(f"no log at {self.path}", code="ENOENT")
        self.durability = "normal"
        self._key = hmac_key
        self.wal_pages = 0
        self._checkpointer = None
        self.conn = self.reader()


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    branch: int
    seq: int
    projection_version: int
    manifest: bytes
    signed: bool  # its MAC holds under the log's key (True when the log has no key to check against)


def snapshot_rows(log: EventLog, conn: apsw.Connection, max_seq: int) -> list[SnapshotRow]:
    """Every stored snapshot at or before ``max_seq``, by (branch, seq, projection version)."""
    rows = conn.execute(
        "SELECT branch, seq, projection_version, manifest, mac FROM snapshots WHERE seq <= ?"
        " ORDER BY branch, seq, projection_version",
        (max_seq,),
    ).fetchall()
    out = []
    for branch, seq, version, manifest, mac in rows:
        expected = log._snapshot_mac(branch, seq, version, bytes(manifest))  # the store's own
        signed = not log._key or hmac.compare_digest(expected, bytes(mac))
        out.append(SnapshotRow(branch, seq, version, bytes(manifest), signed))
    return out
