"""A version's manifest from a file's pieces (``filelayout.Layout``) by merging chunk lists, not by
re-chunking the whole file: the result is exactly ``chunks.split`` of the file's bytes (the same
manifest hash, so equal contents stay one version blob), but only the bytes around the seams between
pieces are read and cut again.

Why that is exact: FastCDC cuts each chunk by looking only at the bytes since the previous cut and at
how many bytes remain (up to ``MAX_SIZE``). So where the file has a cut at a position that is also a
cut of the piece's source, and at least ``MAX_SIZE`` bytes remain both in the file and in the source,
the source's next chunk is the file's next chunk, if it lies inside the piece. Elsewhere — a seam, a
hole, the last ``MAX_SIZE`` bytes of a source or of the file — the next chunk is cut from the file's
bytes there, one at a time, until a cut lands on a source's cut again (it usually does within a
chunk or two: content-defined boundaries resynchronise).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from agentos.kernel.blobcache import manifest
from agentos.kernel.filelayout import Layout, Piece
from agentos.store.chunks import MAX_SIZE, Manifest, first_cut
from agentos.store.log import blob_hash

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

WINDOW = 4 * MAX_SIZE  # bytes read at a time where chunks are cut again


def cut(k: Kernel, layout: Layout) -> tuple[str, dict[str, bytes]]:
    """The manifest hash of ``layout``'s bytes ("" for none) and the blobs of it not stored yet."""
    size = layout.size
    if size == 0:
        return "", {}
    only = layout.pieces[0]
    if len(layout.pieces) == 1 and only.source and only.offset == 0 and only.source_size == size:
        return only.source, {}  # one source shown whole (a file written in one go): its manifest
    out: list[tuple[str, int]] = []
    fresh: dict[str, bytes] = {}
    last_reuse = size - MAX_SIZE  # a source's chunk may be taken at a cut no later than this
    window, wstart = b"", 0
    pos, i = 0, 0
    while pos < size:
        while layout.pieces[i].end <= pos:
            i += 1
        taken = _take(k, layout.pieces[i], pos, last_reuse, out)
        if taken:
            pos = taken
            continue
        if pos + MAX_SIZE > wstart + len(window) and wstart + len(window) < size:
            window, wstart = layout.read(k, pos, WINDOW), pos
        view = memoryview(window)[pos - wstart : pos - wstart + MAX_SIZE]
        piece = bytes(view[: first_cut(view)])
        h = blob_hash(piece)
        out.append((h, len(piece)))
        fresh.setdefault(h, piece)
        pos += len(piece)
    encoded = Manifest(size, out).encode()
    manifest_hash = blob_hash(encoded)
    fresh.setdefault(manifest_hash, encoded)
    have = k.stored_blobs(list(fresh))
    return manifest_hash, {h: b for h, b in fresh.items() if h not in have}


def _take(k: Kernel, p: Piece, pos: int, last_reuse: int, out: list[tuple[str, int]]) -> int:
    """Append the run of ``p``'s source chunks that are the file's next chunks from the cut ``pos``;
    the position after them, or 0 when there are none."""
    start, end, source, offset, source_size = p
    if not source or pos > last_reuse:
        return 0
    m, starts = manifest(k, source)
    at = offset + pos - start  # ``pos`` in the source
    j = bisect.bisect_left(starts, at)
    if j >= len(m.chunks) or starts[j] != at:
        return 0  # not a cut of the source
    # chunks j..q-1: each ending inside the piece and starting with MAX_SIZE bytes left in the source
    # and in the file
    q = min(
        bisect.bisect_right(starts, offset + end - start) - 1,
        bisect.bisect_right(starts, min(source_size - MAX_SIZE, at + last_reuse - pos)),
        len(m.chunks),
    )
    if q <= j:
        return 0
    out.extend(m.chunks[j:q])
    return start + starts[q] - offset
