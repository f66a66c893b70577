"""A file's bytes and its versions: content read from state and blobs, writes stored as chunk
blobs, versions cut at close/fsync/exit (``docs/vfs.md``). Used by the file syscalls (``sysfile.py``,
``sysfd.py``) and the process exit path; mutates nothing.

A file with pending writes is a list of pieces of stored contents (``filelayout.py``): a read
fetches only the chunks under its range, and a version is cut by merging the pieces' chunk lists,
cutting chunks again only around their seams (``fileversion.py``). :func:`content` still builds a
whole file, for the callers that need all of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agentos.errors import AgentOSError
from agentos.kernel import blobcache, fileversion
from agentos.kernel.filelayout import Layout
from agentos.state import events as ev
from agentos.state.vfs import WRITE, Inode, PendingWrite
from agentos.store import chunks
from agentos.store.chunks import Manifest, read_span

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def _manifest(k: Kernel, h: str) -> Manifest:
    return blobcache.manifest(k, h)[0]


def content(k: Kernel, node: Inode) -> bytes:
    """A file's current bytes: its last version, then its pending writes and truncates in order."""
    layout = Layout.of(node)
    return layout.read(k, 0, layout.size)


def read_bytes(k: Kernel, node: Inode, offset: int, n: int) -> bytes:
    if node.pending:
        return Layout.of(node).read(k, offset, n)
    if not node.manifest:
        return b""
    m, starts = blobcache.manifest(k, node.manifest)
    return read_span(m, starts, k.get_blobs, offset, n)


def store_bytes(k: Kernel, data: bytes) -> tuple[str, dict[str, bytes]]:
    """``data`` chunked: its manifest's hash ("" for nothing) and the blobs not stored yet."""
    if not data:
        return "", {}
    return chunks.store_many(data, k.stored_blobs)


def cut_version(
    k: Kernel, node: Inode, extra: Iterable[PendingWrite] = ()
) -> tuple[str, dict[str, bytes], int]:
    """``node``'s content with its pending changes and ``extra`` as one stored version: its manifest
    hash, the blobs not stored yet, its size."""
    layout = Layout.of(node, extra)
    h, blobs = fileversion.cut(k, layout)
    return h, blobs, layout.size


def version_events(
    k: Kernel, node: Inode, pid: int, cause: str = ""
) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """Cut a version of ``node`` if it has pending changes: its event and the blobs to store.
    ``cause``: what cut it (close, fsync, exit), kept in the event for ``fs_history``."""
    if not node.pending:
        return [], {}
    h, blobs, size = cut_version(k, node)
    stored = sum(len(b) for b in blobs.values())
    cut = ev.VfsVersion(ino=node.ino, manifest=h, size=size, pid=pid, stored=stored, cause=cause)
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
