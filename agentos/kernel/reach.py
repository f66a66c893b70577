"""Which blobs a set of roots reaches: what an export must carry and what gc must keep.

Blobs are named by sha256 hex wherever something refers to one: in event payloads (a version's
manifest, a console line, an agent's code), in snapshot manifests and pieces (an inode's manifest,
a process's code), so the roots are scanned for 64-hex-digit names, conservatively (a name that is
not a blob is ignored; text that happens to look like one keeps a blob, never loses one). A blob
reached this way is either a file manifest (``store/chunks.Manifest``: its chunks are reached, and
are leaves: file bytes are never scanned) or something else that may name more blobs (a snapshot
piece), which is scanned in turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from agentos.errors import IOFailure
from agentos.store.chunks import Manifest

HEX = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
BATCH = 512


def names_in(data: bytes) -> set[str]:
    """Every 64-hex-digit name in ``data`` (JSON text, msgpack)."""
    return {m.decode() for m in HEX.findall(data)}


def reach(roots: Iterable[str], get_many: Callable[[list[str]], dict[str, bytes]]) -> set[str]:
    """Every stored blob reachable from ``roots`` (names; those not stored are left out)."""
    found: set[str] = set()
    frontier = sorted(set(roots))
    while frontier:
        batch, frontier = frontier[:BATCH], frontier[BATCH:]
        batch = [h for h in batch if h not in found]
        more: set[str] = set()
        for h, data in get_many(batch).items():
            found.add(h)
            try:
                chunks = Manifest.decode(data).chunks
            except IOFailure:  # not a file manifest: it may name more blobs
                more |= names_in(data)
            else:
                found.update(c for c, _ in chunks)  # leaves (checked stored below)
        frontier.extend(sorted(more - found))
    return found


def stored(names: set[str], have: Callable[[list[str]], set[str]]) -> set[str]:
    """Those of ``names`` that are stored (chunks are reached by name without being read)."""
    out: set[str] = set()
    listed = sorted(names)
    for i in range(0, len(listed), BATCH):
        out |= have(listed[i : i + BATCH])
    return out
