"""A file's bytes and its versions: content materialised from state and blobs, writes stored as
chunk blobs, versions cut at close/fsync/exit (``docs/vfs.md``). Used by the file syscalls
(``sysfile.py``, ``sysfd.py``) and the process exit path; mutates nothing.

Discussion: :func:`content` builds the whole file in memory, and a version re-chunks all of it:
fine for the files agents write today (``param.MAX_FILE_BYTES``), to be replaced by a chunk-level
merge of the pending writes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from agentos.errors import AgentOSError, IOFailure
from agentos.state import events as ev
from agentos.state.vfs import WRITE, Inode
from agentos.store import chunks
from agentos.store.chunks import Manifest, join, read_range

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def _manifest(k: Kernel, h: str) -> Manifest:
    data = k.blob(h)
    if data is None:
        raise IOFailure(f"file manifest {h} is missing", code="EIO", retryable=False)
    return Manifest.decode(data)


def _place(buf: bytearray, offset: int, data: bytes) -> None:
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))  # a hole reads as zeros
    buf[offset : offset + len(data)] = data


def content(k: Kernel, node: Inode) -> bytes:
    """A file's current bytes: its last version, then its pending writes and truncates in order."""
    buf = bytearray(join(_manifest(k, node.manifest), k.blob) if node.manifest else b"")
    for w in node.pending:
        if w.data:
            _place(buf, w.offset, join(_manifest(k, w.data), k.blob))
        elif w.offset < len(buf):
            del buf[w.offset :]
        else:
            buf.extend(bytes(w.offset - len(buf)))
    return bytes(buf)


def read_bytes(k: Kernel, node: Inode, offset: int, n: int) -> bytes:
    if not node.pending:
        return read_range(_manifest(k, node.manifest), k.blob, offset, n) if node.manifest else b""
    return content(k, node)[offset : offset + n]


def _stored(k: Kernel, blobs: dict[str, bytes]) -> int:
    """Bytes of the blobs not stored yet (what storing them would add)."""
    return sum(len(b) for h, b in blobs.items() if not k.has_blob(h))


def store_bytes(k: Kernel, data: bytes) -> tuple[str, dict[str, bytes]]:
    """``data`` chunked: its manifest's hash ("" for nothing) and the blobs not stored yet."""
    if not data:
        return "", {}
    return chunks.store(data, k.has_blob)


def version_events(
    k: Kernel, node: Inode, pid: int, cause: str = ""
) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """Cut a version of ``node`` if it has pending changes: its event and the blobs to store.
    ``cause``: what cut it (close, fsync, exit), kept in the event for ``fs_history``."""
    if not node.pending:
        return [], {}
    data = content(k, node)
    h, blobs = store_bytes(k, data)
    stored = sum(len(b) for b in blobs.values())
    cut = ev.VfsVersion(ino=node.ino, manifest=h, size=len(data), pid=pid, stored=stored, cause=cause)
    return [cut], blobs


def close_all(k: Kernel, pid: int) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """Close every fd of ``pid`` (at its exit), cutting a version of each file with pending writes.

    Never raises: a file whose bytes cannot be read back (a missing blob) is closed without a
    version, its pending writes kept, rather than failing the exit."""
    fs = k.state.world.vfs
    events: list[ev.Payload] = []
    blobs: dict[str, bytes] = {}
    cut: set[int] = set()
    for fd in sorted(fs.fds.get(pid, {})):
        f = fs.open_file(pid, fd)
        node = fs.get(f.ino) if f is not None else None
        if node is not None and node.ino not in cut and f is not None and f.flags & WRITE:
            cut.add(node.ino)
            with contextlib.suppress(AgentOSError):
                more, more_blobs = version_events(k, node, pid, "exit")
                events += more
                blobs |= more_blobs
        events.append(ev.VfsClosed(pid=pid, fd=fd))
    return events, blobs
