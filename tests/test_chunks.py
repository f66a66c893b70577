"""Content-defined chunking (agentos.store.chunks): round trips, pinned boundaries, resynchronisation after
an edit, verified reads, and 100 versions of a 1 MiB file through a real EventLog within 3x one copy."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos.errors import InvalidArgument, IOFailure
from agentos.store import chunks
from agentos.store.chunks import (
    AVG_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    Manifest,
    chunk,
    join,
    new_blobs,
    read_range,
    split,
    store,
)
from agentos.store.log import EventLog, blob_hash
from agentos.testing.helpers import text_lines

MiB = 1 << 20


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aos-") as d:
        yield Path(d)


def stream(n: int, label: bytes = b"agentos chunks") -> bytes:
    """``n`` pseudo-random bytes defined by sha256 alone (no RNG: the same on every Python)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(label + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


def roundtrip(data: bytes) -> Manifest:
    manifest, blobs = split(data)
    assert manifest.size == len(data)
    assert set(blobs) == {h for h, _ in manifest.chunks}
    assert all(blob_hash(b) == h and len(b) == n for (h, n), b in ((c, blobs[c[0]]) for c in manifest.chunks))
    assert join(manifest, blobs.get) == data
    assert Manifest.decode(manifest.encode()) == manifest
    pieces = chunk(data)
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces] == [n for _, n in manifest.chunks]
    assert all(MIN_SIZE <= len(p) <= MAX_SIZE for p in pieces[:-1])
    assert all(1 <= len(p) <= MAX_SIZE for p in pieces[-1:])
    return manifest


# -- round trips ---------------------------------------------------------------------------------------


def test_an_empty_file_is_a_manifest_with_no_chunks() -> None:
    manifest, blobs = split(b"")
    assert manifest == Manifest(0, []) and blobs == {}
    assert chunk(b"") == []
    assert join(manifest, lambda h: None) == b""
    assert read_range(manifest, lambda h: None, 0, 10) == b""
    assert Manifest.decode(manifest.encode()) == manifest


@pytest.mark.parametrize(
    "size", [1, MIN_SIZE - 1, MIN_SIZE, MIN_SIZE + 1, AVG_SIZE, MAX_SIZE - 1, MAX_SIZE, MAX_SIZE + 1]
)
def test_round_trip_at_the_chunk_size_limits(size: int) -> None:
    manifest = roundtrip(stream(size))
    if size <= MIN_SIZE:
        assert len(manifest.chunks) == 1  # no cut before MIN_SIZE


def test_round_trip_5_mib_random() -> None:
    data = os.urandom(5 * MiB)
    manifest = roundtrip(data)
    assert 5 * MiB // MAX_SIZE < len(manifest.chunks) < 5 * MiB // MIN_SIZE
    mean = len(data) / len(manifest.chunks)
    assert AVG_SIZE <= mean <= AVG_SIZE + MIN_SIZE, mean  # ~5.3 KiB (see the module docstring)


def test_a_run_of_one_byte_value_is_cut_at_the_limits_and_stored_once() -> None:
    data = b"\x00" * (10 * MAX_SIZE + 5)
    manifest, blobs = split(data)
    assert len(blobs) <= 3  # the repeated chunk once, and the tail
    assert join(manifest, blobs.get) == data


def test_chunk_accepts_any_buffer() -> None:
    data = stream(100_000)
    assert chunk(bytearray(data)) == chunk(memoryview(data)) == chunk(data)
    assert split(memoryview(data)) == split(data)


# -- determinism ---------------------------------------------------------------------------------------

# The cut points of stream(256 KiB): pinned, because stored files deduplicate against each other only
# while every release cuts identical content identically.
GOLDEN_LENGTHS = [
    4960, 6723, 6054, 4264, 6779, 4319, 5889, 6516, 7286, 5710, 21092, 6867, 5149, 5625, 3965, 4422,
    5376, 3152, 3742, 3772, 7918, 6824, 4488, 2610, 11352, 4260, 7399, 5934, 4510, 4480, 15796, 2340,
    2535, 4715, 4162, 3655, 4159, 5487, 2485, 4522, 8470, 2570, 4311, 4852, 2991, 3823, 3834,
]  # fmt: skip


def test_chunk_boundaries_are_pinned() -> None:
    data = stream(256 * 1024)
    assert [len(p) for p in chunk(data)] == GOLDEN_LENGTHS
    assert chunk(data) == chunk(bytes(data))  # and repeatable


def test_the_compiled_chunker_is_loaded_and_agrees_with_the_pure_python_one() -> None:
    from pyfastcdc.py import FastCDC as PurePythonFastCDC  # its fallback (an inner module: tests only)

    assert chunks.ACCELERATED, "pyfastcdc's Cython extension did not load: chunking runs ~300x slower"
    pure = PurePythonFastCDC(
        chunks.AVG_SIZE,
        min_size=chunks.MIN_SIZE,
        max_size=chunks.MAX_SIZE,
        normalized_chunking=chunks.NORMALIZATION,
    )
    data = stream(256 * 1024)
    assert [c.length for c in pure.cut_buf(data)] == GOLDEN_LENGTHS


def test_boundaries_resynchronise_after_an_inserted_line() -> None:
    rng = random.Random(7)
    lines = text_lines(rng, MiB)
    base, base_blobs = split("".join(lines).encode())
    changed: list[int] = []
    for _ in range(40):
        i = rng.randrange(len(lines) // 4, 3 * len(lines) // 4)  # in the middle
        edited = lines[:i] + ["a line inserted by the test, of a few words\n"] + lines[i:]
        manifest, blobs = split("".join(edited).encode())
        fresh = set(blobs) - set(base_blobs)
        changed.append(len(fresh))
        assert len(fresh) <= 4, (i, len(fresh))
        assert len(manifest.chunks) - len(base.chunks) in (-1, 0, 1, 2)
    assert sum(changed) / len(changed) <= 1.5, changed  # almost always just the chunk holding the edit


# -- verified reads ------------------------------------------------------------------------------------


def test_a_missing_chunk_is_eio_naming_it() -> None:
    manifest, blobs = split(stream(100_000))
    gone, _ = manifest.chunks[3]
    del blobs[gone]
    with pytest.raises(IOFailure) as err:
        join(manifest, blobs.get)
    assert err.value.code == "EIO" and not err.value.retryable
    assert gone in err.value.message and "chunk 3" in err.value.message and "missing" in err.value.message


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_a_corrupt_chunk_is_eio_naming_it(damage: str) -> None:
    manifest, blobs = split(stream(100_000))
    h, _ = manifest.chunks[2]
    data = blobs[h]
    blobs[h] = {
        "flip": bytes([data[0] ^ 1]) + data[1:],
        "truncate": data[:-1],
        "extend": data + b"\x00",
    }[damage]
    with pytest.raises(IOFailure) as err:
        join(manifest, blobs.get)
    assert err.value.code == "EIO" and h in err.value.message and "corrupt" in err.value.message
    start = sum(n for _, n in manifest.chunks[:2])
    with pytest.raises(IOFailure):
        read_range(manifest, blobs.get, start + 10, 1)


def test_read_range_fetches_only_the_chunks_it_needs() -> None:
    data = stream(200_000)
    manifest, blobs = split(data)
    fetched: list[str] = []

    def get(h: str) -> bytes | None:
        fetched.append(h)
        return blobs.get(h)

    starts = [sum(n for _, n in manifest.chunks[:i]) for i in range(len(manifest.chunks) + 1)]
    # a range inside chunk 4 touches it alone; one across the 4|5 boundary, both; the rest may be gone
    assert read_range(manifest, get, starts[4] + 1, 10) == data[starts[4] + 1 : starts[4] + 11]
    assert fetched == [manifest.chunks[4][0]]
    fetched.clear()
    assert read_range(manifest, get, starts[5] - 3, 6) == data[starts[5] - 3 : starts[5] + 3]
    assert fetched == [manifest.chunks[4][0], manifest.chunks[5][0]]
    for h, _ in manifest.chunks[:4]:
        del blobs[h]
    assert read_range(manifest, blobs.get, starts[4], manifest.size) == data[starts[4] :]


def test_read_range_rejects_negative_arguments() -> None:
    manifest, blobs = split(b"hello")
    for offset, length in ((-1, 2), (0, -1)):
        with pytest.raises(InvalidArgument):
            read_range(manifest, blobs.get, offset, length)


RANGE_DATA = stream(150_000, b"ranges")
RANGE_SPLIT = split(RANGE_DATA)


@settings(max_examples=300, deadline=None)
@given(offset=st.integers(0, len(RANGE_DATA) + 100), length=st.integers(0, len(RANGE_DATA) + 100))
def test_read_range_equals_slicing(offset: int, length: int) -> None:
    manifest, blobs = RANGE_SPLIT
    assert read_range(manifest, blobs.get, offset, length) == RANGE_DATA[offset : offset + length]


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=3 * MAX_SIZE), offset=st.integers(0, 4 * MAX_SIZE), length=st.integers(0, 500))
def test_small_files_round_trip_and_read_ranges(data: bytes, offset: int, length: int) -> None:
    manifest, blobs = split(data)
    assert join(manifest, blobs.get) == data
    assert read_range(manifest, blobs.get, offset, length) == data[offset : offset + length]
    assert Manifest.decode(manifest.encode()) == manifest


# -- manifests and new blobs ---------------------------------------------------------------------------


def test_manifest_encoding_is_compact_and_canonical() -> None:
    manifest, _ = split(stream(300_000))
    encoded = manifest.encode()
    assert len(encoded) <= 40 * len(manifest.chunks) + 16  # raw digests: ~38 B a chunk
    assert Manifest.decode(encoded).encode() == encoded


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode([2, 0, []]),  # unknown format
        msgspec.msgpack.encode([1, 5, [[b"\x00" * 32, 4]]]),  # sizes disagree
        msgspec.msgpack.encode([1, 5, [[b"\x00" * 31, 5]]]),  # short digest
        msgspec.msgpack.encode([1, 0, [[b"\x00" * 32, 0]]]),  # empty chunk
        msgspec.msgpack.encode([1, 0, [], "extra"]),
        b"\x93\x01\xd1\x00\x00\x90",  # [1, 0, []] with a non-minimal int: not canonical
    ],
)
def test_a_damaged_manifest_is_eio(encoded: bytes) -> None:
    with pytest.raises(IOFailure) as err:
        Manifest.decode(encoded)
    assert err.value.code == "EIO"


def test_new_blobs_names_each_unstored_chunk_once_in_file_order() -> None:
    block = stream(3 * MAX_SIZE, b"block")
    data = block + stream(50_000, b"middle") + block  # the block's chunks appear twice
    manifest, blobs = split(data)
    order = list(dict.fromkeys(h for h, _ in manifest.chunks))
    assert len(order) < len(manifest.chunks)
    assert new_blobs(manifest, lambda h: False) == order
    stored = set(order[::2])
    assert new_blobs(manifest, stored.__contains__) == [h for h in order if h not in stored]
    assert new_blobs(manifest, lambda h: True) == []


# -- versions through a real log -----------------------------------------------------------------------


def test_100_versions_of_a_1_mib_file_store_within_3x_one_copy(tmp: Path) -> None:
    """Each version one inserted or replaced line away from the previous; each write stores only the
    new chunks and the version's encoded manifest (itself a blob), through ``EventLog.append``."""
    rng = random.Random(2024)
    lines = text_lines(rng, MiB)
    log = EventLog(tmp / "log.db")
    try:
        versions: list[tuple[str, int, str]] = []  # (manifest blob hash, size, sha256 of the content)
        for v in range(100):
            if v:
                i = rng.randrange(len(lines) + 1)
                line = (
                    f"version {v}: "
                    + " ".join(rng.choice(["alpha", "beta", "gamma"]) for _ in range(6))
                    + "\n"
                )
                if i < len(lines) and rng.random() < 0.5:
                    lines[i] = line
                else:
                    lines.insert(i, line)
            data = "".join(lines).encode()
            manifest_hash, fresh = store(data, log.has_blob)
            log.append([], fresh)
            versions.append((manifest_hash, len(data), hashlib.sha256(data).hexdigest()))
        one_copy = versions[0][1]
        assert one_copy >= MiB
        total = log.conn.execute("SELECT sum(size) FROM blobs").fetchall()[0][0]
        manifests = sum(len(log.get_blob(mh) or b"") for mh, _, _ in versions)
        assert total <= 3 * one_copy, (total / one_copy, manifests)
        assert total - manifests <= 2 * one_copy, (total - manifests) / one_copy  # chunks: ~1.6x
        for mh, size, digest in versions:
            encoded = log.get_blob(mh)
            assert encoded is not None
            content = join(Manifest.decode(encoded), log.get_blob)
            assert len(content) == size and hashlib.sha256(content).hexdigest() == digest
        last = Manifest.decode(log.get_blob(versions[-1][0]) or b"")
        assert read_range(last, log.get_blob, 500_000, 1000) == content[500_000:501_000]
    finally:
        log.close()
