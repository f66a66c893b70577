"""Content-defined chunking of file contents into content-addressed blobs (FastCDC).

A file version is stored as a :class:`Manifest` (its size and the ``(sha256 hex, length)`` of each of
its chunks, in order) plus the chunks themselves as rows of the log's ``blobs`` table, keyed by
:func:`agentos.store.log.blob_hash`. Chunk boundaries are chosen by the content (a FastCDC gear
hash over the bytes), not by offset, so inserting a line shifts no boundary beyond the chunk or two
around the edit: the other chunks of the new version hash as before and are already stored. 100
versions of a 1 MiB text file, each one line away from the previous, store ~1.6 MiB of chunks, plus
~7 KiB of encoded manifest per version (``tests/test_chunks.py``, ``bench/chunk_benches.py``).

The cut points come from ``pyfastcdc``: FastCDC 2020 (Xia et al.) as a port of the ``fastcdc``
Rust crate's ``v2020`` module (same cut points), compiled with Cython (~3 GB/s, the GIL released
while it scans), with prebuilt wheels for the usual platforms and a pure-Python fallback that gives
the same cut points ~300x slower (:data:`ACCELERATED` says which one is loaded). Its gear table
is fixed (``seed=0``): no randomness, no hash seed, the same boundaries on every run and machine;
``tests/test_chunks.py`` pins them, so a library release that moved them is noticed (stored data
would stay readable, manifests name chunks by hash; only deduplication across the change is lost).

Chunk sizes. ``AVG_SIZE`` is FastCDC's "normal size", the expected distance to a cut *past* the
``MIN_SIZE`` that cut-point skipping jumps over; with normalized chunking level 1 the measured mean
chunk is ~5.3 KiB (text and random data alike), every chunk but a file's last is at least
``MIN_SIZE``, none is over ``MAX_SIZE``. The size trades the bytes one edit rewrites (about one
chunk, size-biased: ~6 KiB here) against the manifest (~38 B per chunk per version) and rows per
MiB. Measured on the 100-version benchmark (8 seeds): avg 4 KiB stores 1.62 MiB of chunks (2.35 MiB
with every version's manifest); avg 8 KiB, 2.26 MiB (2.7 MiB), too close to the 3x target; avg
16 KiB, 3.5 MiB, over it. ``MAX_SIZE`` (8x the average) bounds the chunk a run of constant bytes
makes (the gear hash of a constant run is constant: it cuts at every ``MIN_SIZE`` or only at
``MAX_SIZE``).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable

import msgspec
from pyfastcdc import FastCDC

from agentos.errors import InvalidArgument, IOFailure
from agentos.store.log import blob_hash

MIN_SIZE = 2 * 1024  # no cut before this many bytes (the last chunk of a file may be shorter)
AVG_SIZE = 4 * 1024  # FastCDC's normal size: mean chunk ~5.3 KiB measured (see the module docstring)
MAX_SIZE = 32 * 1024  # always cut here
NORMALIZATION = 1  # FastCDC's normalized-chunking level (NC), the fastcdc crate's default

MANIFEST_FORMAT = 1  # first element of an encoded manifest
DIGEST_BYTES = 32  # sha256

ACCELERATED: bool = FastCDC.__module__.startswith("pyfastcdc.cy")
"""Whether pyfastcdc's compiled chunker is loaded (else its pure-Python twin: same cut points, slow)."""

GetBlob = Callable[[str], bytes | None]
"""Fetch a blob by its hash, ``None`` when there is none (``EventLog.get_blob`` is one)."""

GetBlobs = Callable[[list[str]], dict[str, bytes]]
"""Fetch blobs by hash in one go: those found, each already known to hash to its name (the kernel
verifies what it reads from disk; bytes it hashed itself need no second look): ``Kernel.get_blobs``."""

Buffer = bytes | bytearray | memoryview


class Manifest(msgspec.Struct, frozen=True):
    """The content of one file version: its size and its chunks' ``(sha256 hex, length)``, in order.

    An empty file has no chunks. ``encode()`` is canonical (one manifest, one byte string), so an
    encoded manifest can itself be stored and named by its hash.
    """

    size: int
    chunks: list[tuple[str, int]]

    def encode(self) -> bytes:
        """msgpack ``[MANIFEST_FORMAT, size, [[digest (32 raw bytes), length], ...]]``: ~38 B a chunk."""
        return msgspec.msgpack.encode(
            (MANIFEST_FORMAT, self.size, [(bytes.fromhex(h), n) for h, n in self.chunks])
        )

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """The manifest ``encode()`` made; anything else (malformed, inconsistent, not canonical) is EIO."""
        try:
            fmt, size, pairs = msgspec.msgpack.decode(data, type=tuple[int, int, list[tuple[bytes, int]]])
        except msgspec.MsgspecError as exc:
            raise _corrupt(f"malformed file manifest: {exc}") from exc
        if fmt != MANIFEST_FORMAT:
            raise _corrupt(f"file manifest format {fmt} is not {MANIFEST_FORMAT}")
        if any(len(d) != DIGEST_BYTES or n < 1 for d, n in pairs) or sum(n for _, n in pairs) != size:
            raise _corrupt(f"inconsistent file manifest ({len(pairs)} chunks, size {size})")
        # re-encoded from the raw digests: the canonical check without a hex round trip per chunk
        if msgspec.msgpack.encode((fmt, size, pairs)) != data:
            raise _corrupt("file manifest is not in canonical form")
        return cls(size, [(d.hex(), n) for d, n in pairs])


def _corrupt(message: str) -> IOFailure:
    """Stored data is missing or damaged: EIO, and retrying will not help."""
    return IOFailure(message, code="EIO", retryable=False)


def _chunker() -> FastCDC:
    # one per call: cheap (~0.3 µs), and pyfastcdc does not promise an instance is safe across threads
    return FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE, normalized_chunking=NORMALIZATION)


def chunk(data: Buffer) -> list[bytes]:
    """Cut ``data`` at content-defined boundaries; the pieces concatenate back to ``data``."""
    return [bytes(c.data) for c in _chunker().cut_buf(data)]


def split(data: Buffer) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest of ``data`` and its distinct chunks by hash (to write with the event naming it)."""
    pairs: list[tuple[str, int]] = []
    blobs: dict[str, bytes] = {}
    for c in _chunker().cut_buf(data):
        piece = bytes(c.data)
        h = blob_hash(piece)
        pairs.append((h, c.length))
        blobs.setdefault(h, piece)
    return Manifest(len(data), pairs), blobs


def new_blobs(manifest: Manifest, have: Callable[[str], bool]) -> list[str]:
    """The distinct chunk hashes of ``manifest`` for which ``have(hash)`` is false, in file order.

    ``manifest, blobs = split(data)`` then ``{h: blobs[h] for h in new_blobs(manifest, log.has_blob)}``
    keeps chunks already stored out of the write (or names the chunks to copy from another store).
    """
    seen: set[str] = set()
    missing: list[str] = []
    for h, _ in manifest.chunks:
        if h not in seen:
            seen.add(h)
            if not have(h):
                missing.append(h)
    return missing


def _fetch(manifest: Manifest, index: int, get_blob: GetBlob) -> bytes:
    """Chunk ``index`` of ``manifest``, checked against its hash and length."""
    h, n = manifest.chunks[index]
    data = get_blob(h)
    where = f"chunk {index} ({h}) of a {manifest.size}-byte file"
    if data is None:
        raise _corrupt(f"{where} is missing")
    if len(data) != n or blob_hash(data) != h:
        raise _corrupt(f"{where} is corrupt: {len(data)} bytes that do not hash to it")
    return data


def join(manifest: Manifest, get_blob: GetBlob) -> bytes:
    """The file's bytes, every chunk verified; a missing or corrupt chunk raises IOFailure (EIO)."""
    return b"".join(_fetch(manifest, i, get_blob) for i in range(len(manifest.chunks)))


def read_range(manifest: Manifest, get_blob: GetBlob, offset: int, length: int) -> bytes:
    """``join(manifest, get_blob)[offset:offset + length]``, fetching and verifying only the chunks
    that overlap it (short or empty past the end of the file, like ``pread``)."""
    if offset < 0 or length < 0:
        raise InvalidArgument(f"read_range: offset {offset} and length {length} must be >= 0")
    end = min(offset + length, manifest.size)
    if offset >= end:
        return b""
    starts = [0, *itertools.accumulate(n for _, n in manifest.chunks)]
    first = bisect.bisect_right(starts, offset) - 1
    parts: list[bytes] = []
    index = first
    while starts[index] < end:
        data = _fetch(manifest, index, get_blob)
        lo = max(offset - starts[index], 0)
        hi = min(end - starts[index], len(data))
        parts.append(data[lo:hi] if (lo, hi) != (0, len(data)) else data)
        index += 1
    return b"".join(parts)


def offsets(manifest: Manifest) -> list[int]:
    """Where each chunk of ``manifest`` starts, and its size last: ``len(chunks) + 1`` offsets."""
    return [0, *itertools.accumulate(n for _, n in manifest.chunks)]


def span(manifest: Manifest, starts: list[int], offset: int, length: int) -> range:
    """The indexes of the chunks that ``[offset, offset + length)`` overlaps (``starts``: ``offsets``)."""
    if offset < 0 or length < 0:
        raise InvalidArgument(f"offset {offset} and length {length} must be >= 0")
    end = min(offset + length, manifest.size)
    if offset >= end:
        return range(0)
    return range(bisect.bisect_right(starts, offset) - 1, bisect.bisect_left(starts, end))


def read_span(manifest: Manifest, starts: list[int], get_blobs: GetBlobs, offset: int, length: int) -> bytes:
    """``read_range`` with the chunk offsets given (``offsets(manifest)``, kept with a cached manifest)
    and the chunks it needs fetched in one call of ``get_blobs``, which has verified them."""
    indexes = span(manifest, starts, offset, length)
    got = get_blobs(list(dict.fromkeys(manifest.chunks[i][0] for i in indexes)))
    return cut_span(manifest, starts, got, offset, length, indexes)


def cut_span(
    manifest: Manifest, starts: list[int], got: dict[str, bytes], offset: int, length: int, indexes: range
) -> bytes:
    """The bytes of ``[offset, offset + length)`` from its chunks (``indexes``, from ``span``) in ``got``;
    a chunk missing there or of another length is EIO."""
    end = min(offset + length, manifest.size)
    parts: list[bytes] = []
    for index in indexes:
        h, n = manifest.chunks[index]
        data = got.get(h)
        if data is None or len(data) != n:
            state = "missing" if data is None else f"corrupt: {len(data)} bytes, not {n}"
            raise _corrupt(f"chunk {index} ({h}) of a {manifest.size}-byte file is {state}")
        lo = max(offset - starts[index], 0)
        hi = min(end - starts[index], n)
        parts.append(data[lo:hi] if (lo, hi) != (0, n) else data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def first_cut(data: Buffer) -> int:
    """The length of the chunk FastCDC cuts first from ``data``: the same as in any longer buffer that
    starts with these bytes, as long as ``data`` holds ``MAX_SIZE`` bytes or runs to the end of the file
    (a cut depends only on the bytes since the last cut and on how many remain, up to ``MAX_SIZE``)."""
    return next(iter(_chunker().cut_buf(data))).length if len(data) else 0


def store(data: bytes, have: Callable[[str], bool]) -> tuple[str, dict[str, bytes]]:
    """``data`` as one stored version: the hash of its encoded manifest (itself a blob) and the blobs
    (chunks and manifest) that ``have`` says are not stored yet — what to write with the event."""
    manifest, chunks = split(data)
    encoded = manifest.encode()
    manifest_hash = blob_hash(encoded)
    blobs = {h: chunks[h] for h in new_blobs(manifest, have)}
    if not have(manifest_hash):
        blobs[manifest_hash] = encoded
    return manifest_hash, blobs


def store_many(data: Buffer, stored: Callable[[list[str]], set[str]]) -> tuple[str, dict[str, bytes]]:
    """``store`` with one call of ``stored(hashes)`` (which of them are stored) for all the blobs.
    Chunks are hashed in place and copied out only when new: rewritten data costs no copy."""
    pairs: list[tuple[str, int]] = []
    pieces: dict[str, memoryview] = {}
    for c in _chunker().cut_buf(data):
        h = blob_hash(c.data)
        pairs.append((h, c.length))
        pieces.setdefault(h, c.data)
    encoded = Manifest(len(data), pairs).encode()
    manifest_hash = blob_hash(encoded)
    have = stored([*pieces, manifest_hash])
    blobs = {h: bytes(view) for h, view in pieces.items() if h not in have}
    if manifest_hash not in have:
        blobs[manifest_hash] = encoded
    return manifest_hash, blobs
