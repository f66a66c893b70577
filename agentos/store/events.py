"""Event records as stored in the log, and the hash chain that links them.

An ``EventRecord`` is one row: the envelope (seq, branch, kind, version, causing pid, syscall
id, correlation id, wall-clock ts), the payload as the exact canonical JSON text stored, and
the chain digests. Typed payloads live with their subsystem in ``agentos.state``; the store
only moves bytes and checks the chain.

The digest of an event is sha256 over its envelope fields, its payload text and the digest of
its predecessor; the first event's predecessor is ``GENESIS``. Because the digest covers the
exact payload text, payloads are stored as JSON text (SQLite's JSON functions read it
directly), not as JSONB, which would re-encode it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import msgspec

GENESIS = b"\x00" * 32


class EventRecord(msgspec.Struct, frozen=True, array_like=True, gc=False):  # scalars only: no cycles
    seq: int
    branch: int
    kind: str
    version: int
    pid: int
    syscall: str | None
    correlation: str | None
    ts: int
    payload: bytes  # canonical JSON text, utf-8
    prev_digest: bytes
    digest: bytes


_INTS = struct.Struct(">qqqqq")  # seq, branch, version, pid, ts


def compute_digest(
    prev_digest: bytes,
    seq: int,
    branch: int,
    kind: str,
    version: int,
    pid: int,
    syscall: str | None,
    correlation: str | None,
    ts: int,
    payload: bytes,
) -> bytes:
    """sha256(prev digest ‖ seq, branch, version, pid, ts as big-endian int64 ‖ kind ␟ syscall ␟
    correlation ␞ payload text)."""
    return hashlib.sha256(
        b"".join(
            (
                prev_digest,
                _INTS.pack(seq, branch, version, pid, ts),
                kind.encode(),
                b"\x1f",
                (syscall or "").encode(),
                b"\x1f",
                (correlation or "").encode(),
                b"\x1e",
                payload,
            )
        )
    ).digest()


def verify_record(record: EventRecord, prev_digest: bytes) -> bool:
    if record.prev_digest != prev_digest:
        return False
    expected = compute_digest(
        prev_digest,
        record.seq,
        record.branch,
        record.kind,
        record.version,
        record.pid,
        record.syscall,
        record.correlation,
        record.ts,
        record.payload,
    )
    return hmac.compare_digest(expected, record.digest)


def sign_head(key: bytes, seq: int, digest: bytes) -> bytes:
    """HMAC of the chain head: tamper-evidence against anyone without the key, no more."""
    return hmac.new(key, seq.to_bytes(8, "big") + digest, hashlib.sha256).digest()


class Sequencer:
    """Stamps new events with the next sequence number and chain digest (in memory, pre-commit)."""

    def __init__(self, next_seq: int, prev_digest: bytes) -> None:
        self.next_seq = next_seq
        self.prev_digest = prev_digest

    def stamp(
        self,
        branch: int,
        kind: str,
        version: int,
        pid: int,
        syscall: str | None,
        correlation: str | None,
        ts: int,
        payload: bytes,
    ) -> EventRecord:
        seq = self.next_seq
        digest = compute_digest(
            self.prev_digest, seq, branch, kind, version, pid, syscall, correlation, ts, payload
        )
        record = EventRecord(
            seq, branch, kind, version, pid, syscall, correlation, ts, payload, self.prev_digest, digest
        )
        self.next_seq = seq + 1
        self.prev_digest = digest
        return record
