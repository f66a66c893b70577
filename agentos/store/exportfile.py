"""The portable checkpoint file of ``agentos export`` / ``agentos import``: one msgpack document.

Layout (``FORMAT``, version ``VERSION``)::

    {"format": "agentos-checkpoint", "version": 1, "sha256": H, "content": <bytes>}

``content`` is the msgpack of :class:`Content`, and ``H`` is the sha256 of exactly those bytes: the
content hash the import checks before it decodes anything. Inside, every blob is named by its own
sha256 (checked again one by one), the world is a snapshot manifest of content-addressed pieces
(``state/snapshot.py``), and the journal rows carry their chain digests. A file whose hash does not
match, or that is not this format, is refused with a typed error (``EBADMSG``) and nothing is written.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import msgspec

from agentos.errors import InvalidArgument
from agentos.store.events import EventRecord

FORMAT = "agentos-checkpoint"
VERSION = 1
MAX_FILE_BYTES = 8 << 30  # refused beyond this: the whole document is read into memory


class Checkpoint(msgspec.Struct, kw_only=True):
    name: str
    branch: int
    seq: int
    digest: str  # hex chain digest of the event at seq in the source home
    made_ts: int


class Content(msgspec.Struct, kw_only=True):
    checkpoint: Checkpoint
    world_hash: str  # kernel/exports.world_hash of the world at the checkpoint
    manifest: bytes  # the state's snapshot manifest (state.snapshot.Manifest, encoded)
    blobs: dict[str, bytes]  # every blob the state and the journals name: pieces, file chunks, code
    journal: list[EventRecord]  # the journal rows of the agents alive there, with their digests
    branches: list[EventRecord]  # the branch.created rows of the checkpoint's lineage
    source: dict[str, Any]  # where it came from: home, hash seed, agentos version, exported ts
    counts: dict[str, int]


class Envelope(msgspec.Struct):
    format: str
    version: int
    sha256: str
    content: bytes


def write(path: Path, content: Content) -> tuple[int, str]:
    """Write ``content`` to ``path`` atomically (a temporary file renamed): (bytes, content hash)."""
    body = msgspec.msgpack.encode(content)
    digest = hashlib.sha256(body).hexdigest()
    data = msgspec.msgpack.encode(Envelope(FORMAT, VERSION, digest, body))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(data), digest


def read(path: Path) -> tuple[Content, str]:
    """The content of the file at ``path`` and its hash, once both are checked (else EBADMSG)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}", code="ENOENT") from None
    if size > MAX_FILE_BYTES:
        raise InvalidArgument(f"{path} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit", code="EFBIG")
    try:
        env = msgspec.msgpack.decode(path.read_bytes(), type=Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _bad(path, "it is not an AgentOS checkpoint file") from None
    if env.format != FORMAT or env.version != VERSION:
        raise _bad(path, f"it is {env.format!r} version {env.version}, not {FORMAT!r} version {VERSION}")
    actual = hashlib.sha256(env.content).hexdigest()
    if actual != env.sha256:
        raise _bad(
            path, f"its content hashes to {actual[:16]}…, not the {env.sha256[:16]}… it names: it was changed"
        )
    try:
        content = msgspec.msgpack.decode(env.content, type=Content)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _bad(path, f"its content does not decode: {exc}") from None
    for h, data in content.blobs.items():
        if hashlib.sha256(data).hexdigest() != h:
            raise _bad(path, f"blob {h[:16]}… does not hash to its name")
    return content, env.sha256


def _bad(path: Path, why: str) -> InvalidArgument:
    return InvalidArgument(f"refusing {path}: {why}", code="EBADMSG")
