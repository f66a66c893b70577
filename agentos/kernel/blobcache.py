"""The kernel's blob reads: emitted blobs until they are committed, a bounded cache of recent chunks and
of decoded file manifests, then the log, asked once for all the blobs a read needs.

Blobs are content-addressed and never deleted (a rewind makes a branch, it removes no blob), so a
cached blob or manifest never goes stale: the bounds are only about memory. A blob read from disk is
checked against its hash before it is cached or returned by :meth:`BlobCache.get_many`; one the
kernel emitted was hashed when it was made. Only blobs that are stored, or emitted and so about to
be, enter the chunk cache, so it can answer "is it stored?" too (a transaction's staged blobs are
its own, ``systxn.View``). A decoded manifest is cached whatever it was read through: its hash names
its bytes, stored or not.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from agentos.errors import IOFailure
from agentos.store.chunks import Manifest, offsets
from agentos.store.log import blob_hash

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

CHUNK_CACHE_BYTES = 32 << 20  # recent chunks kept (a re-read of a file that size hits memory)
MANIFEST_CACHE_ENTRIES = 1 << 18  # chunk entries over all cached manifests (~60 MiB decoded at most)

Indexed = tuple[Manifest, list[int]]
"""A decoded manifest and its chunk offsets (``chunks.offsets``)."""


class BlobCache:
    def __init__(
        self, k: Kernel, chunk_bytes: int = CHUNK_CACHE_BYTES, manifest_entries: int = MANIFEST_CACHE_ENTRIES
    ) -> None:
        self._k = k
        self._chunks: OrderedDict[str, bytes] = OrderedDict()
        self._chunk_bytes = 0
        self._chunk_limit = chunk_bytes
        self._manifests: OrderedDict[str, Indexed] = OrderedDict()
        self._manifest_entries = 0
        self._manifest_limit = manifest_entries

    # -- single blobs (any kind: code, snapshots, manifests, chunks) --------------------------------

    def _in_memory(self, h: str) -> bytes | None:
        c = self._k.committer
        found = c.pending_blobs.get(h)
        if found is None:
            found = c.inflight_blobs.get(h)
        if found is None:
            found = self._chunks.get(h)
        return found

    def get(self, h: str) -> bytes | None:
        """A blob by hash, as stored (unverified: its reader checks what it needs)."""
        found = self._in_memory(h)
        return found if found is not None else self._k.log.get_blob(h, self._k.reader)

    def has(self, h: str) -> bool:
        return self._in_memory(h) is not None or self._k.log.has_blob(h, self._k.reader)

    # -- many at once (a read's chunks, a write's new chunks) --------------------------------------

    def get_many(self, hashes: list[str]) -> dict[str, bytes]:
        """Those of ``hashes`` found, each verified; the ones not in memory in one query. A blob on disk
        whose bytes do not hash to its name is EIO."""
        found: dict[str, bytes] = {}
        missing: list[str] = []
        c, chunks = self._k.committer, self._chunks
        pending, inflight = c.pending_blobs, c.inflight_blobs
        for h in hashes:  # _in_memory, inlined: a big read asks for ~200 chunks a MiB
            data = chunks.get(h)
            if data is not None:
                chunks.move_to_end(h)
            elif (data := pending.get(h)) is None and (data := inflight.get(h)) is None:
                missing.append(h)
                continue
            found[h] = data
        if missing:
            for h, data in self._k.log.get_blobs(missing, self._k.reader).items():
                if blob_hash(data) != h:
                    raise IOFailure(
                        f"blob {h} is corrupt: its {len(data)} bytes hash otherwise",
                        code="EIO",
                        retryable=False,
                    )
                found[h] = data
                self._keep(h, data)
        return found

    def stored_many(self, hashes: list[str]) -> set[str]:
        """Which of ``hashes`` are stored (or emitted, to be committed with their event)."""
        have = {h for h in hashes if self._in_memory(h) is not None}
        rest = [h for h in hashes if h not in have]
        return have | self._k.log.stored_blobs(rest, self._k.reader) if rest else have

    def remember(self, blobs: dict[str, bytes]) -> None:
        """Blobs just emitted: readable from memory after their commit, while they stay recent."""
        for h, data in blobs.items():
            self._keep(h, data)

    def _keep(self, h: str, data: bytes) -> None:
        if len(data) > self._chunk_limit // 8:
            return  # one big blob (a program's code, a snapshot piece) would push out the chunks
        old = self._chunks.pop(h, None)
        if old is not None:
            self._chunk_bytes -= len(old)
        self._chunks[h] = data
        self._chunk_bytes += len(data)
        while self._chunk_bytes > self._chunk_limit:
            _, gone = self._chunks.popitem(last=False)
            self._chunk_bytes -= len(gone)

    # -- decoded manifests -------------------------------------------------------------------------

    def manifest(self, h: str) -> Indexed | None:
        found = self._manifests.get(h)
        if found is not None:
            self._manifests.move_to_end(h)
        return found

    def keep_manifest(self, h: str, manifest: Manifest) -> Indexed:
        found = (manifest, offsets(manifest))
        cost = len(manifest.chunks) + 1
        if cost <= self._manifest_limit // 4 and h not in self._manifests:
            self._manifests[h] = found
            self._manifest_entries += cost
            while self._manifest_entries > self._manifest_limit:
                _, (gone, _) = self._manifests.popitem(last=False)
                self._manifest_entries -= len(gone.chunks) + 1
        return found


def manifest(k: Kernel, h: str, what: str = "") -> Indexed:
    """The decoded manifest stored under ``h`` and its chunk offsets, cached; missing is EIO (``what``
    names it in the message). ``k`` may be a transaction's view: its staged manifest is read through
    its own ``blob``."""
    cache: BlobCache = k.blob_cache
    found = cache.manifest(h)
    if found is None:
        data = k.blob(h)
        if data is None:
            raise IOFailure(f"{what or f'file manifest {h}'} is missing", code="EIO", retryable=False)
        found = cache.keep_manifest(h, Manifest.decode(data))
    return found
