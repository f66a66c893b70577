"""Naming a divergence (``agentos verify``): what differs between two states, and which event did it.

Two states with different ``state_hash`` are walked side by side to the items that differ — a
process, a capability, a group, an inode, an open file, a ledger field — by path (``world, procs,
procs, 7``) and by a name a person reads (``process 7``). Then the state rebuilt at the last point
where the two agreed is folded forward one event at a time (through ``boot.replay_into``, as every
rebuild) and the first event that changed one of those items is the one reported: the first event
at which the log's story and the other state's parted. None changed it: the other state holds a
change no event made (a corrupt snapshot, or a live state changed outside ``apply``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import apsw
import msgspec

from agentos.kernel.boot import replay_into
from agentos.state.world import State
from agentos.store.lineage import Lineage
from agentos.store.log import EventLog

DEPTH = 4  # world.procs.procs.<pid>: a collection's item is the grain a person can act on
MAX_ITEMS = 20  # differing items named (and followed through the events) at most
_MISSING = object()
# path prefix -> what an item under it is called
_NAMES = {
    ("world", "procs", "procs"): "process",
    ("world", "caps", "caps"): "capability",
    ("world", "groups", "groups"): "group",
    ("world", "vfs", "inodes"): "inode",
    ("world", "vfs", "files"): "open file",
    ("world", "vfs", "fds"): "fd table of pid",
    ("world", "vfs", "mounts"): "mount",
}

Path = tuple[Any, ...]


@dataclass
class Found:
    """What differs, and the first event after ``since`` that changed the first of it."""

    items: list[Path]
    first_seq: dict[Path, int] = field(default_factory=dict)
    event: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "differs": [
                {"item": label(p), "path": [str(k) for k in p], "first_seq": self.first_seq.get(p)}
                for p in self.items
            ],
            "event": self.event,
        }


def label(path: Path) -> str:
    """``process 7``, ``inode 12``, ``ledger.cpu_ns.7``: what a person calls the item at ``path``."""
    name = _NAMES.get(tuple(path[:3]))
    if name is not None and len(path) == 4:
        return f"{name} {path[3]}"
    return ".".join(map(str, path))


def differences(a: State, b: State, limit: int = MAX_ITEMS) -> list[Path]:
    """The paths of the items that differ between ``a`` and ``b`` (at most ``limit``)."""
    out: list[Path] = []
    _walk(msgspec.to_builtins(a), msgspec.to_builtins(b), (), out, limit)
    return out


def _walk(a: Any, b: Any, path: Path, out: list[Path], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict) and len(path) < DEPTH:
        for key in sorted(set(a) | set(b), key=lambda k: (str(type(k)), k)):
            if _canon(a.get(key, _MISSING)) != _canon(b.get(key, _MISSING)):
                _walk(a.get(key, _MISSING), b.get(key, _MISSING), (*path, key), out, limit)
        return
    out.append(path)


def _canon(value: Any) -> bytes:
    """Bytes equal exactly when the values are, whatever their dicts' insertion order."""
    if value is _MISSING:
        return b"<missing>"
    return msgspec.json.encode(msgspec.to_builtins(value, str_keys=True), order="sorted")


def value_at(state: State, path: Path) -> bytes:
    """The item at ``path`` in ``state``, canonically encoded (``<missing>`` if it is not there)."""
    obj: Any = state
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key, _MISSING)
        elif isinstance(obj, msgspec.Struct):
            obj = getattr(obj, key, _MISSING)
        else:
            obj = _MISSING
        if obj is _MISSING:
            break
    return _canon(obj)


def first_change(
    log: EventLog,
    conn: apsw.Connection,
    lineage: Lineage,
    start: State,
    since: int,
    until: int,
    items: list[Path],
) -> Found:
    """Fold ``start`` (the state at ``since``, agreed by both sides) one event at a time up to
    ``until``; the first seq at which each of ``items`` changed, and the earliest such event."""
    found = Found(items)
    before = {p: value_at(start, p) for p in items}
    state = start
    for seq in range(since + 1, until + 1):
        state = replay_into(state, log, seq - 1, seq, conn, lineage=lineage)
        state.world.branch = lineage.branch
        for p in items:
            if p not in found.first_seq and value_at(state, p) != before[p]:
                found.first_seq[p] = seq
        if len(found.first_seq) == len(items):
            break
    if found.first_seq:
        seq = min(found.first_seq.values())
        touched = [label(p) for p in items if found.first_seq.get(p) == seq]
        for r in log.read(seq - 1, until=seq, conn=conn):
            found.event = {
                "seq": r.seq,
                "kind": r.kind,
                "pid": r.pid,
                "syscall": r.syscall,
                "touched": touched,
            }
    return found
