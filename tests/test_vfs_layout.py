"""A file's bytes as pieces (``kernel/filelayout.py``), versions cut by merging chunk lists
(``kernel/fileversion.py``) and the kernel's blob reads (``kernel/blobcache.py``, ``EventLog.get_blobs``).

First against a model, over many random histories: reading any range of the pieces gives the model's
bytes, and the merged version is exactly ``chunks.split`` of them (the same manifest hash). Then in a
kernel: big files written in pieces read back and cut to that manifest, a read with pending writes
fetches only the chunks under it, a chunk damaged on disk is EIO, and the caches stay in their bounds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos.kernel import fileversion
from agentos.kernel.blobcache import BlobCache
from agentos.kernel.calls import Caller
from agentos.kernel.filelayout import Layout
from agentos.kernel.kernel import Kernel
from agentos.store import chunks
from agentos.store.chunks import MAX_SIZE, Manifest
from agentos.store.log import EventLog, blob_hash
from agentos.testing.kernelrig import KernelRig, run_rig

MiB = 1 << 20


class Store:
    """What ``Layout`` and ``fileversion`` ask of a kernel, over a dict of blobs."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.blob_cache = BlobCache(None)  # type: ignore[arg-type] - only its manifest cache is used
        self.fetched: list[str] = []

    def blob(self, h: str) -> bytes | None:
        return self.blobs.get(h)

    def get_blobs(self, hashes: list[str]) -> dict[str, bytes]:
        self.fetched += hashes
        return {h: self.blobs[h] for h in hashes if h in self.blobs}

    def stored_blobs(self, hashes: list[str]) -> set[str]:
        return {h for h in hashes if h in self.blobs}

    def put(self, data: bytes) -> str:
        """``data`` stored as a write stores it: its chunks and its manifest; the manifest's hash."""
        h, new = chunks.store_many(data, self.stored_blobs)
        self.blobs |= new
        return h


def replay(ops: list[tuple[str, int, int, int]], store: Store) -> tuple[Layout, bytearray]:
    """Apply ``ops`` (write: offset, length, seed; truncate: size) to a layout and to a model."""
    layout, model = Layout(), bytearray()
    for kind, a, b, seed in ops:
        if kind == "write":
            rng = random.Random(seed)
            data = bytes(b) if seed % 5 == 0 else rng.randbytes(b)  # some runs of zeros
            model.extend(bytes(max(0, a - len(model))))
            model[a : a + b] = data
            layout.write(a, store.put(data), b)
        else:
            del model[a:]
            model.extend(bytes(a - len(model)))
            layout.truncate(a)
    return layout, model


def manifest_hash(data: bytes) -> str:
    return blob_hash(chunks.split(data)[0].encode()) if data else ""


SIZES = st.one_of(st.integers(1, 3000), st.integers(1, 3 * MAX_SIZE), st.integers(1, 300_000))
WRITE = st.tuples(st.just("write"), st.integers(0, 400_000), SIZES, st.integers(0, 2**32))
TRUNCATE = st.tuples(st.just("truncate"), st.integers(0, 500_000), st.just(0), st.just(0))
OPS = st.lists(st.one_of(WRITE, WRITE, WRITE, TRUNCATE), min_size=1, max_size=10)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, ranges=st.lists(st.tuples(st.integers(0, 800_000), st.integers(0, 300_000)), max_size=4))
def test_pieces_read_as_the_model_and_cut_to_the_chunking_of_the_whole(
    ops: list[tuple[str, int, int, int]], ranges: list[tuple[int, int]]
) -> None:
    store = Store()
    layout, model = replay(ops, store)
    assert layout.size == len(model)
    assert layout.read(store, 0, layout.size) == model
    for offset, n in ranges:
        assert layout.read(store, offset, n) == model[offset : offset + n]
    h, new = fileversion.cut(store, layout)
    assert h == manifest_hash(bytes(model))
    store.blobs |= new
    if model:
        assert chunks.join(Manifest.decode(store.blobs[h]), store.blobs.get) == model
    assert all(blob_hash(b) == k for k, b in new.items())


SPAN_DATA = random.Random(2).randbytes(150_000)
SPAN_SPLIT = chunks.split(SPAN_DATA)


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(0, len(SPAN_DATA) + 100), length=st.integers(0, len(SPAN_DATA) + 100))
def test_read_span_is_slicing_with_one_fetch_of_the_chunks_under_it(offset: int, length: int) -> None:
    manifest, blobs = SPAN_SPLIT
    calls: list[list[str]] = []

    def get_blobs(hashes: list[str]) -> dict[str, bytes]:
        calls.append(hashes)
        return {h: blobs[h] for h in hashes}

    starts = chunks.offsets(manifest)
    assert (
        chunks.read_span(manifest, starts, get_blobs, offset, length) == SPAN_DATA[offset : offset + length]
    )
    (asked,) = calls
    bounds = zip(manifest.chunks, starts[:-1], starts[1:], strict=True)
    end = min(offset + length, manifest.size)
    under = {h for (h, _), s, e in bounds if s < end and e > offset and offset < end}
    assert set(asked) == under and len(asked) == len(under)


def test_store_many_stores_what_store_stores_and_copies_only_new_chunks() -> None:
    data = random.Random(4).randbytes(300_000)
    stored: set[str] = set()
    h, new = chunks.store_many(data, lambda hashes: {x for x in hashes if x in stored})
    assert (h, new) == chunks.store(data, lambda x: x in stored)
    assert all(type(b) is bytes for b in new.values())
    stored |= set(new)
    assert chunks.store_many(memoryview(data), lambda hashes: {x for x in hashes if x in stored}) == (h, {})


def test_a_file_written_whole_is_its_write_and_an_edit_reads_only_near_it() -> None:
    store = Store()
    data = random.Random(1).randbytes(4 * MiB)
    whole = store.put(data)
    layout = Layout()
    layout.write(0, whole, len(data))
    assert fileversion.cut(store, layout) == (whole, {})  # nothing read, nothing new
    assert store.fetched == []
    layout.write(2 * MiB, store.put(b"an edit"), 7)  # overwrite 7 bytes in the middle
    store.fetched.clear()
    h, new = fileversion.cut(store, layout)
    edited = bytearray(data)
    edited[2 * MiB : 2 * MiB + 7] = b"an edit"
    assert h == manifest_hash(bytes(edited))
    # only the chunks around the edit and the file's last MAX_SIZE bytes were read, and few are new
    assert sum(len(store.blobs[f]) for f in set(store.fetched)) < 8 * MAX_SIZE
    assert len(new) <= 4  # the edited chunk or two, and the manifest


def test_truncates_and_holes_read_as_zeros() -> None:
    store = Store()
    layout = Layout()
    layout.write(0, store.put(b"abcdef"), 6)
    layout.truncate(2)
    layout.truncate(5)
    layout.write(8, store.put(b"XY"), 2)
    assert layout.read(store, 0, 100) == b"ab\0\0\0\0\0\0XY"
    assert layout.read(store, 3, 6) == b"\0\0\0\0\0X"
    assert fileversion.cut(store, layout)[0] == manifest_hash(b"ab\0\0\0\0\0\0XY")
    layout.truncate(0)
    assert (layout.size, layout.pieces, layout.read(store, 0, 10)) == (0, [], b"")
    assert fileversion.cut(store, layout) == ("", {})


# -- in a kernel --------------------------------------------------------------------------------------


class Rig(KernelRig):
    def put(self, who: Caller, path: str, data: bytes, mode: int = 0o644) -> None:
        """``data`` in writes of 512 KiB (a write takes at most param.MAX_ARG_BYTES), then close."""
        fd = self(who, "open", path=path, flags=["write", "create", "truncate"], mode=mode)
        for i in range(0, len(data), 512 * 1024):
            self(who, "write", fd=fd, data=data[i : i + 512 * 1024])
        self(who, "close", fd=fd)

    def version(self, path: str) -> tuple[str, int]:
        node = self.k.state.world.vfs.get(self.k.state.world.vfs.resolve(path))
        assert node is not None
        return node.manifest, node.size

    def read_all(self, path: str, n: int) -> bytes:
        fd = self(self.person, "open", path=path)
        out = []
        while block := self(self.person, "read", fd=fd, n=n):
            out.append(block)
        self(self.person, "close", fd=fd)
        return b"".join(out)


def run(tmp_path: Path, body: Callable[[Rig], object]) -> None:
    run_rig(Rig(tmp_path), body)  # type: ignore[arg-type]


def test_a_big_file_written_in_uneven_pieces_reads_back_and_is_one_canonical_version(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(6 * MiB + 12345)

    async def body(r: Rig) -> None:
        p = r.person
        fd = r(p, "open", path="/shared/big", flags=["write", "create"])
        i, rng = 0, random.Random(3)
        while i < len(data):
            n = rng.randint(1, 700_000)
            assert r(p, "write", fd=fd, data=data[i : i + n]) == len(data[i : i + n])
            i += n
        # read back through the pending writes, in ranges, before any version
        reader = r(p, "open", path="/shared/big")
        for offset in (0, 1, MiB - 3, 5 * MiB, len(data) - 10):
            r(p, "seek", fd=reader, offset=offset)
            assert r(p, "read", fd=reader, n=100_000) == data[offset : offset + 100_000]
        r(p, "close", fd=reader)
        r(p, "close", fd=fd)
        assert r.version("/shared/big") == (manifest_hash(data), len(data))
        await r.k.committer.durable(r.k.head_seq)
        r.k.blob_cache = BlobCache(r.k)  # read from disk, not from what the writes left in memory
        assert r.read_all("/shared/big", 300_000) == data

    run(tmp_path, body)


def test_edits_truncates_and_appends_on_a_stored_version(tmp_path: Path) -> None:
    base = random.Random(11).randbytes(3 * MiB)

    async def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/f", base)
        model = bytearray(base)
        fd = r(p, "open", path="/shared/f", flags=["read", "write"])
        for offset, piece in ((MiB, b"x" * 10), (0, b"head"), (len(model) - 5, b"tail grows past the end")):
            r(p, "seek", fd=fd, offset=offset)
            r(p, "write", fd=fd, data=piece)
            model[offset : offset + len(piece)] = piece
        r(p, "ftruncate", fd=fd, size=2 * MiB + 17)
        del model[2 * MiB + 17 :]
        r(p, "ftruncate", fd=fd, size=2 * MiB + 40_000)  # grows: zeros
        model.extend(bytes(40_000 - 17))
        r(p, "seek", fd=fd, offset=2 * MiB)
        assert r(p, "read", fd=fd, n=60_000) == model[2 * MiB : 2 * MiB + 60_000]
        r(p, "close", fd=fd)
        assert r.version("/shared/f") == (manifest_hash(bytes(model)), len(model))
        r(p, "truncate", path="/shared/f", size=100)  # a whole change, cut at once
        assert r.version("/shared/f") == (manifest_hash(bytes(model[:100])), 100)
        assert r.cat("/shared/f") == model[:100]
        await r.rebuilt_equals_live()

    run(tmp_path, body)


def test_a_read_with_pending_writes_fetches_only_the_chunks_under_it(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(8 * MiB)

    async def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/f", data)
        fd = r(p, "open", path="/shared/f", flags=["read", "write"])
        r(p, "seek", fd=fd, offset=4 * MiB)
        r(p, "write", fd=fd, data=b"pending")
        await r.k.committer.durable(r.k.head_seq)
        r.k.blob_cache = cache = BlobCache(r.k)
        asked: list[str] = []
        get_many = cache.get_many
        cache.get_many = lambda hashes: (asked.extend(hashes), get_many(hashes))[1]  # type: ignore[method-assign]
        r(p, "seek", fd=fd, offset=7 * MiB)
        assert r(p, "read", fd=fd, n=100) == data[7 * MiB : 7 * MiB + 100]
        assert 1 <= len(asked) <= 2  # the chunk or two under those 100 bytes, not the 8 MiB
        r(p, "seek", fd=fd, offset=4 * MiB - 2)
        assert (
            r(p, "read", fd=fd, n=10)
            == data[4 * MiB - 2 : 4 * MiB] + b"pending" + data[4 * MiB + 7 : 4 * MiB + 8]
        )
        r(p, "close", fd=fd)

    run(tmp_path, body)


def test_a_chunk_damaged_on_disk_is_eio(tmp_path: Path) -> None:
    data = random.Random(9).randbytes(200_000)

    async def body(r: Rig) -> None:
        p = r.person
        r.put(p, "/shared/f", data)
        await r.k.committer.durable(r.k.head_seq)
        m = Manifest.decode(r.k.blob(r.version("/shared/f")[0]) or b"")
        victim = m.chunks[3][0]
        with r.k.log.conn:
            r.k.log.conn.execute("UPDATE blobs SET data=? WHERE hash=?", (b"garbage", victim))
        r.k.blob_cache = BlobCache(r.k)
        err = r.fails(p, "EIO", "read", fd=r(p, "open", path="/shared/f"), n=len(data))
        assert victim in err.message and not err.retryable
        fd = r(p, "open", path="/shared/f")  # the chunks before it still read
        assert r(p, "read", fd=fd, n=1000) == data[:1000]

    run(tmp_path, body)


# -- the caches and the store's batched reads ---------------------------------------------------------


class _Committer:
    pending_blobs: dict[str, bytes] = {}
    inflight_blobs: dict[str, bytes] = {}


def test_the_caches_stay_within_their_bounds(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log.db")
    k = Kernel.__new__(Kernel)  # only what BlobCache reads: committer, log, reader
    k.committer, k.log, k.reader = _Committer(), log, log.conn  # type: ignore[assignment]
    cache = BlobCache(k, chunk_bytes=64 * 1024, manifest_entries=100)
    pieces = {blob_hash(b): b for b in (random.Random(i).randbytes(5000) for i in range(40))}
    log.append([], pieces)
    assert cache.get_many(list(pieces)) == pieces
    assert cache._chunk_bytes <= 64 * 1024 and len(cache._chunks) == (64 * 1024) // 5000
    assert cache.stored_many([*pieces, "0" * 64]) == set(pieces)
    for i in range(30):
        m, _ = chunks.split(random.Random(i).randbytes(20_000))
        cache.keep_manifest(str(i), m)
    assert cache._manifest_entries <= 100 and cache.manifest("29") is not None and cache.manifest("0") is None


@pytest.mark.parametrize("count", [0, 1, 8, 9, 500])
def test_get_blobs_and_stored_blobs_answer_for_any_number_of_hashes(tmp_path: Path, count: int) -> None:
    log = EventLog(tmp_path / "log.db")
    stored = {blob_hash(b): b for b in (b"blob %d" % i for i in range(count))}
    log.append([], stored)
    absent = [blob_hash(b"absent %d" % i) for i in range(3)]
    asked = [*stored, *absent]
    assert log.get_blobs(asked) == stored
    assert log.stored_blobs(asked) == set(stored)
    assert log.get_blobs([]) == {} and log.stored_blobs([]) == set()


def test_a_new_home_keeps_blobs_in_a_rowid_table_and_an_old_one_still_works(tmp_path: Path) -> None:
    new = EventLog(tmp_path / "new.db")
    (sql,) = new.conn.execute("SELECT sql FROM sqlite_master WHERE name='blobs'").fetchall()[0]
    assert "WITHOUT ROWID" not in sql.upper()
    old_path = tmp_path / "old.db"
    conn = apsw.Connection(str(old_path))
    conn.execute(
        "CREATE TABLE blobs(hash TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID"
    )
    conn.close()
    old = EventLog(old_path)
    blobs = {blob_hash(b"x" * i): b"x" * i for i in range(1, 20)}
    old.append([], blobs)
    assert old.get_blobs(list(blobs)) == blobs and old.get_blob(next(iter(blobs))) == b"x"
