"""Structural snapshots of the projected state: a manifest of content-addressed pieces.

The large tables (processes, inodes, capabilities) are cut into pages of :data:`PAGE` consecutive
keys, each page one piece; the rest of the state is a few pieces more. A snapshot stores only the
pieces that changed since the last one (unchanged pieces hash the same and are already in the blob
store): storage grows with what changed, not with the size of the state. Why pages, not one piece
per item: a manifest naming every item cost ~70 bytes an item per snapshot (megabytes at a million
events, rewritten each time), and a load fetched and checked thousands of pieces one by one; a page
costs one fetch and one hash check, and a change rewrites at most its page. Old manifests (one piece
per process and per inode, one for the capability table) still load. Snapshots are caches keyed by
(branch, seq, projection version), never a source of truth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from agentos.state.caps import Capability, CapTable
from agentos.state.groups import GroupTable
from agentos.state.proc import Process, ProcessTable
from agentos.state.vfs import FileSystem, Inode
from agentos.state.world import Ledger, State, World

PAGE = 32  # items per page, about: keys in [n * span, (n + 1) * span), span = PAGE * a power of two

GetBlobs = Callable[[list[str]], dict[str, bytes]]


class Manifest(msgspec.Struct):
    seq: int
    branch: int
    ledger: str
    procs: dict[str, str] = {}  # pid -> piece hash (older snapshots; now proc_pages)
    chain_digest: str = ""  # hex digest of the event at seq: ties the snapshot to this log
    caps: str = ""  # the capability table, one piece (older snapshots; now cap_pages)
    groups: str = ""  # the resource groups, one piece
    vfs: str = ""  # the file system less its inodes (root, open files, fd tables), one piece
    inodes: dict[str, str] = {}  # ino -> piece hash (older snapshots; now inode_pages)
    proc_pages: dict[str, str] = {}  # first key of the page -> piece: {pid: Process} of the page's pids
    inode_pages: dict[str, str] = {}  # first key -> piece: {ino: Inode}
    cap_pages: dict[str, str] = {}  # first key -> piece: {capability id: Capability}
    paged: bool = False  # the tables are in the *_pages fields (an empty table has no page)


_encode = msgspec.msgpack.Encoder().encode  # dicts in their order (a directory's entries, say): kept
_decoders = {
    cls: msgspec.msgpack.Decoder(dict[int, cls])  # type: ignore[valid-type]
    for cls in (Process, Inode, Capability)
}


def _span(items: dict[int, Any]) -> int:
    """Keys per page: PAGE, times the power of two nearest below how sparse the keys are (capability
    ids of reaped processes leave holes: fixed spans would make thousands of tiny pages). It moves
    only when the density halves or doubles, so pages stay the same from one snapshot to the next."""
    if not items:
        return PAGE
    sparse = (max(items) + 1) // len(items)
    return PAGE << max(0, sparse.bit_length() - 1)


def _paged(items: dict[int, Any], put: Callable[[object], str]) -> dict[str, str]:
    span = _span(items)
    pages: dict[int, dict[int, Any]] = {}
    for key, item in items.items():
        page = pages.get(key // span)
        if page is None:
            page = pages[key // span] = {}
        page[key] = item
    # keys sorted: a page's bytes, and so its hash, do not depend on the order items were made in
    return {str(n * span): put(dict(sorted(page.items()))) for n, page in pages.items()}


def to_pieces(state: State, chain_digest: bytes = b"") -> tuple[bytes, dict[str, bytes]]:
    pieces: dict[str, bytes] = {}

    def put(obj: object) -> str:
        data = _encode(obj)
        h = hashlib.sha256(data).hexdigest()
        pieces[h] = data
        return h

    world = state.world
    manifest = Manifest(
        seq=state.seq,
        branch=world.branch,
        ledger=put(state.ledger),
        chain_digest=chain_digest.hex(),
        groups=put(world.groups),
        vfs=put(msgspec.structs.replace(world.vfs, inodes={})),
        proc_pages=_paged(world.procs.procs, put),
        inode_pages=_paged(world.vfs.inodes, put),
        cap_pages=_paged(world.caps.caps, put),
        paged=True,
    )
    return _encode(manifest), pieces


def from_pieces(
    manifest_bytes: bytes,
    get_blob: Callable[[str], bytes | None],
    chain_digest: bytes | None = None,
    get_blobs: GetBlobs | None = None,
) -> State:
    """Rebuild the state from a manifest; raise KeyError if a piece is missing or it belongs to
    another chain (its digest at seq differs from ``chain_digest``). ``get_blobs``, when given,
    fetches all the pieces at once (one query, not one per piece)."""
    manifest = msgspec.msgpack.decode(manifest_bytes, type=Manifest)
    if chain_digest is not None and manifest.chain_digest != chain_digest.hex():
        raise KeyError(f"snapshot at seq {manifest.seq} was taken on another chain")
    fetched: dict[str, bytes] = {}
    if get_blobs is not None:
        fetched = get_blobs(sorted(_hashes(manifest)))

    def get(h: str) -> bytes:
        data = fetched.get(h)
        if data is None:
            data = get_blob(h)
        if data is None or hashlib.sha256(data).hexdigest() != h:
            raise KeyError(f"snapshot piece {h} missing or corrupt")
        return data

    def pages(table: dict[str, str], cls: type) -> dict[int, Any]:
        out: dict[int, Any] = {}
        decode = _decoders[cls].decode
        for _, h in sorted(table.items(), key=lambda kv: int(kv[0])):
            out.update(decode(get(h)))
        return out

    ledger = msgspec.msgpack.decode(get(manifest.ledger), type=Ledger)
    groups = msgspec.msgpack.decode(get(manifest.groups), type=GroupTable)
    vfs = msgspec.msgpack.decode(get(manifest.vfs), type=FileSystem) if manifest.vfs else FileSystem()
    if manifest.paged:
        procs = pages(manifest.proc_pages, Process)
        vfs.inodes = pages(manifest.inode_pages, Inode)
        caps = CapTable(pages(manifest.cap_pages, Capability))
    else:  # an older snapshot: one piece per process and per inode
        procs = {int(pid): msgspec.msgpack.decode(get(h), type=Process) for pid, h in manifest.procs.items()}
        vfs.inodes = {int(i): msgspec.msgpack.decode(get(h), type=Inode) for i, h in manifest.inodes.items()}
        caps = msgspec.msgpack.decode(get(manifest.caps), type=CapTable)
    world = World(branch=manifest.branch, procs=ProcessTable(procs), caps=caps, groups=groups, vfs=vfs)
    return State(seq=manifest.seq, world=world, ledger=ledger)


def _hashes(m: Manifest) -> set[str]:
    """Every piece ``m`` names."""
    tables = (m.procs, m.inodes, m.proc_pages, m.inode_pages, m.cap_pages)
    return {h for h in (m.ledger, m.caps, m.groups, m.vfs) if h} | {h for t in tables for h in t.values()}


def piece_hashes(manifest_bytes: bytes) -> set[str]:
    """The pieces a snapshot's manifest names (for sizing what snapshots store)."""
    return _hashes(msgspec.msgpack.decode(manifest_bytes, type=Manifest))
