"""Structural snapshots of the projected state: a manifest of content-addressed pieces.

Each process is its own piece, and so is each inode, so a snapshot stores only the pieces that
changed since the last one (unchanged pieces hash the same and are already in the blob store):
storage grows with what changed, not with the size of the state. Snapshots are caches keyed by
(branch, seq, projection version), never a source of truth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec

from agentos.state.caps import CapTable
from agentos.state.groups import GroupTable
from agentos.state.proc import Process, ProcessTable
from agentos.state.vfs import FileSystem, Inode
from agentos.state.world import Ledger, State, World


class Manifest(msgspec.Struct):
    seq: int
    branch: int
    ledger: str
    procs: dict[str, str]  # pid -> piece hash
    chain_digest: str = ""  # hex digest of the event at seq: ties the snapshot to this log
    caps: str = ""  # the capability table, one piece
    groups: str = ""  # the resource groups, one piece
    vfs: str = ""  # the file system less its inodes (root, open files, fd tables), one piece
    inodes: dict[str, str] = {}  # ino -> piece hash


def to_pieces(state: State, chain_digest: bytes = b"") -> tuple[bytes, dict[str, bytes]]:
    pieces: dict[str, bytes] = {}

    def put(obj: object) -> str:
        data = msgspec.msgpack.encode(obj)
        h = hashlib.sha256(data).hexdigest()
        pieces[h] = data
        return h

    manifest = Manifest(
        seq=state.seq,
        branch=state.world.branch,
        ledger=put(state.ledger),
        procs={str(pid): put(p) for pid, p in sorted(state.world.procs.procs.items())},
        chain_digest=chain_digest.hex(),
        caps=put(state.world.caps),
        groups=put(state.world.groups),
        vfs=put(msgspec.structs.replace(state.world.vfs, inodes={})),
        inodes={str(ino): put(node) for ino, node in sorted(state.world.vfs.inodes.items())},
    )
    return msgspec.msgpack.encode(manifest), pieces


def from_pieces(
    manifest_bytes: bytes, get_blob: Callable[[str], bytes | None], chain_digest: bytes | None = None
) -> State:
    """Rebuild the state from a manifest; raise KeyError if a piece is missing or it belongs to
    another chain (its digest at seq differs from ``chain_digest``)."""
    manifest = msgspec.msgpack.decode(manifest_bytes, type=Manifest)
    if chain_digest is not None and manifest.chain_digest != chain_digest.hex():
        raise KeyError(f"snapshot at seq {manifest.seq} was taken on another chain")

    def get(h: str) -> bytes:
        data = get_blob(h)
        if data is None or hashlib.sha256(data).hexdigest() != h:
            raise KeyError(f"snapshot piece {h} missing or corrupt")
        return data

    procs = {int(pid): msgspec.msgpack.decode(get(h), type=Process) for pid, h in manifest.procs.items()}
    ledger = msgspec.msgpack.decode(get(manifest.ledger), type=Ledger)
    caps = msgspec.msgpack.decode(get(manifest.caps), type=CapTable)
    groups = msgspec.msgpack.decode(get(manifest.groups), type=GroupTable)
    vfs = msgspec.msgpack.decode(get(manifest.vfs), type=FileSystem) if manifest.vfs else FileSystem()
    vfs.inodes = {int(ino): msgspec.msgpack.decode(get(h), type=Inode) for ino, h in manifest.inodes.items()}
    world = World(branch=manifest.branch, procs=ProcessTable(procs), caps=caps, groups=groups, vfs=vfs)
    return State(seq=manifest.seq, world=world, ledger=ledger)
