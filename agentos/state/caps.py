"""The capability table as projected state (the world's part), and the cap.* apply functions.

A capability is a kernel object; an agent names one by its handle — its id — and only the
holder's own table is searched, so a number an agent makes up designates nothing it does not
hold (as a file descriptor). Grants and transfers are world events (a rewind undoes them);
revocations, expiries and uses are ledger facts (``state.world.Ledger``), which no rewind
undoes: validity is judged against the ledger and the real clock on every check.

Each capability carries its ``chain`` (ancestry, root first), so revoking any ancestor cuts it
off even after the ancestor's holder is gone, and its derivation can always be shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from agentos.state import events as ev


class Capability(msgspec.Struct, kw_only=True):
    id: int
    holder: int
    resource: str
    rights: list[str]
    parent: int | None
    chain: list[int]
    origin: str
    by: int
    depth: int = 0
    expires_ns: int | None = None
    max_uses: int | None = None
    limits: list[list[int]] = []
    note: str = ""
    granted_seq: int = 0
    granted_ts: int = 0


class CapTable(msgspec.Struct):
    caps: dict[int, Capability] = {}  # held ones; an ancestor whose holder was reaped is in the log

    def held_by(self, pid: int) -> list[Capability]:
        return [c for c in self.caps.values() if c.holder == pid]

    def get(self, cap: int) -> Capability | None:
        return self.caps.get(cap)


def _granted(t: CapTable, seq: int, ts: int, e: ev.CapGranted) -> None:
    t.caps[e.cap] = Capability(
        id=e.cap,
        holder=e.holder,
        resource=e.resource,
        rights=list(e.rights),
        parent=e.parent,
        chain=list(e.chain),
        origin=e.origin,
        by=e.by,
        depth=e.depth,
        expires_ns=e.expires_ns,
        max_uses=e.max_uses,
        limits=[list(x) for x in e.limits],
        note=e.note,
        granted_seq=seq,
        granted_ts=ts,
    )


def _transferred(t: CapTable, seq: int, ts: int, e: ev.CapTransferred) -> None:
    cap = t.caps.get(e.cap)
    if cap is not None:
        cap.holder = e.to


def _reaped(t: CapTable, seq: int, ts: int, e: ev.ProcReaped) -> None:
    """A reaped process holds nothing; what others derived from its capabilities lives on."""
    for cap in [c.id for c in t.caps.values() if c.holder == e.pid]:
        del t.caps[cap]


CAP_APPLY: dict[type, Callable[[CapTable, int, int, Any], None]] = {
    ev.CapGranted: _granted,
    ev.CapTransferred: _transferred,
    ev.ProcReaped: _reaped,
}
