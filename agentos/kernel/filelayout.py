"""A file's current bytes as a list of pieces of stored contents: its last version overlaid with its
pending writes and truncates, each piece a range of one source (a version's or a write's manifest)
or a run of zeros (a hole). Reading a range fetches only the chunks under it, so a read of a file
with pending writes does not build the whole file; ``fileversion.py`` cuts a version from the same
pieces.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from agentos.kernel.blobcache import Indexed, manifest
from agentos.state.vfs import Inode, PendingWrite
from agentos.store.chunks import cut_span, span

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


class Piece(NamedTuple):
    start: int  # in the file
    end: int
    source: str  # the manifest hash of the content it shows, "" for zeros
    offset: int  # where ``start`` lies in the source
    source_size: int  # the source's whole size (0 for zeros)


class Layout:
    """Pieces in file order, without gaps, covering ``[0, size)``."""

    __slots__ = ("size", "starts", "pieces")

    def __init__(self) -> None:
        self.size = 0
        self.starts: list[int] = []
        self.pieces: list[Piece] = []

    @classmethod
    def of(cls, node: Inode, extra: Iterable[PendingWrite] = ()) -> Layout:
        """``node``'s bytes now: its last version, then its pending changes (and ``extra``) in order."""
        layout = cls()
        if node.manifest and node.size:
            layout.write(0, node.manifest, node.size)
        for w in node.pending:
            layout.change(w)
        for w in extra:
            layout.change(w)
        return layout

    def change(self, w: PendingWrite) -> None:
        if w.data:
            self.write(w.offset, w.data, w.length)
        else:
            self.truncate(w.offset)

    def write(self, offset: int, source: str, length: int) -> None:
        """``length`` bytes of ``source`` (all of it) at ``offset``; a gap before it reads as zeros."""
        if length <= 0:
            return
        if offset > self.size:
            self._append(Piece(self.size, offset, "", 0, 0))
        self._overlay(Piece(offset, offset + length, source, 0, length))
        self.size = max(self.size, offset + length)

    def truncate(self, size: int) -> None:
        if size < self.size:
            i = bisect.bisect_left(self.starts, size)  # pieces from i start at or after ``size``
            del self.starts[i:], self.pieces[i:]
            if self.pieces and self.pieces[-1].end > size:
                self.pieces[-1] = self.pieces[-1]._replace(end=size)
        elif size > self.size:
            self._append(Piece(self.size, size, "", 0, 0))
        self.size = size

    def _append(self, piece: Piece) -> None:
        self.starts.append(piece.start)
        self.pieces.append(piece)

    def _overlay(self, piece: Piece) -> None:
        lo, hi = piece.start, piece.end
        if lo >= self.size:  # appending, the usual case: no piece to cut
            self._append(piece)
            return
        i = bisect.bisect_right(self.starts, lo) - 1  # the piece holding ``lo``
        j = bisect.bisect_left(self.starts, hi)  # the first piece from ``hi`` on
        new = [piece]
        first, last = self.pieces[i], self.pieces[j - 1]
        if first.start < lo:
            new.insert(0, first._replace(end=lo))
        if last.end > hi:
            new.append(last._replace(start=hi, offset=last.offset + hi - last.start if last.source else 0))
        self.pieces[i:j] = new
        self.starts[i:j] = [p.start for p in new]

    def index(self, offset: int) -> int:
        """The index of the piece holding ``offset`` (``0 <= offset < size``)."""
        return bisect.bisect_right(self.starts, offset) - 1

    def read(self, k: Kernel, offset: int, n: int) -> bytes:
        """``n`` bytes from ``offset`` (fewer at the end), fetching only the chunks under them, all
        in one call of ``k.get_blobs`` (a file of many small writes has many pieces to a read)."""
        end = min(offset + n, self.size)
        if offset >= end:
            return b""
        spans: list[tuple[Indexed | None, int, int, range]] = []  # (source, where in it, length, chunks)
        wanted: dict[str, None] = {}
        i = self.index(offset)
        while i < len(self.pieces) and self.pieces[i].start < end:
            p = self.pieces[i]
            lo, hi = max(offset, p.start), min(end, p.end)
            at = p.offset + lo - p.start
            if p.source:
                source = manifest(k, p.source)
                indexes = span(source[0], source[1], at, hi - lo)
                chunks = source[0].chunks
                wanted.update((chunks[j][0], None) for j in indexes)
                spans.append((source, at, hi - lo, indexes))
            else:
                spans.append((None, at, hi - lo, range(0)))
            i += 1
        got = k.get_blobs(list(wanted)) if wanted else {}
        parts = [
            cut_span(source[0], source[1], got, at, length, indexes) if source else bytes(length)
            for source, at, length, indexes in spans
        ]
        return parts[0] if len(parts) == 1 else b"".join(parts)
