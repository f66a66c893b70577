"""A private ``/tmp`` per process: a small file system in kernel memory, deliberately not journaled.

Why: agents need scratch space that costs nothing to throw away — no events, no blobs, no
versions, no history. Each process sees its own ``/tmp`` (two agents may both write
``/tmp/out`` and get two files); it is gone when the process exits, and with the kernel (as a
tmpfs is with a reboot): an fd on it that outlives a kernel restart answers EBADF.

Memory is the cost, so it is counted: the bytes of its files plus :data:`NODE_BYTES` and the name
of each file or directory, held against the process's ``memory_bytes`` quota while it exists
(``Quotas.hold``: runtime usage, given back at exit, never charged to the ledger) — EDQUOT past
it — and at most ``param.TMP_MAX_BYTES`` per process (ENOSPC).

Replay: an agent resumed after a crash is answered from its journal, which holds each call's
result (a read's bytes too, as every result); the writes themselves are not redone, so its
``/tmp`` starts empty after a restart. A session's ``/tmp`` lives as long as its connection.

The tree: directories and regular files only (no links), POSIX semantics as the world tree's
(an unlinked file stays readable through its fds until the last close).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import Conflict, InvalidArgument, NotFound, QuotaExceeded
from agentos.kernel.calls import Caller, Done
from agentos.kernel.vfs.mountfs import (
    Handle,
    Lost,
    MountFS,
    Open,
    Routed,
    busy,
    exists,
    is_dir,
    missing,
    not_dir,
    opened,
    stat_row,
)
from agentos.state import events as ev
from agentos.state.vfs import DIR, FILE, OpenFile

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

NODE_BYTES = 64  # what an inode costs, counted with its name and bytes


class Node:
    __slots__ = ("ino", "kind", "mode", "data", "entries", "nlink", "opens", "mtime_ns")

    def __init__(self, ino: int, kind: str, mode: int) -> None:
        self.ino, self.kind, self.mode = ino, kind, mode
        self.data = bytearray()
        self.entries: dict[str, Node] = {}
        self.nlink, self.opens = 1, 0
        self.mtime_ns = time.time_ns()


class TmpFS(MountFS):
    kind = "tmp"

    def __init__(self, k: Kernel, pid: int) -> None:
        self.k, self.pid = k, pid
        self.root = Node(1, DIR, 0o1777)
        self.next_ino = 2
        self.used = 0  # bytes held against memory_bytes
        self.files = 0  # live nodes (names and open unlinked files)
        self.gone = False  # its process exited: nothing is held any more

    # -- lookups --------------------------------------------------------------------------------------

    def find(self, path: str) -> Node | None:
        node = self.root
        for part in path.split("/"):
            if not part:
                continue
            child = node.entries.get(part) if node.kind == DIR else None
            if child is None:
                return None
            node = child
        return node

    def _walk(self, r: Routed) -> Node:
        node = self.root
        for part in r.path.split("/"):
            if not part:
                continue
            if node.kind != DIR:
                raise not_dir(r)
            child = node.entries.get(part)
            if child is None:
                raise missing(r)
            node = child
        if r.wants_dir and node.kind != DIR:
            raise not_dir(r)
        return node

    def _parent(self, r: Routed) -> tuple[Node, str]:
        """The directory holding (or to hold) ``r``'s last name, and that name (ENOTDIR through a
        file on the way, as POSIX)."""
        head, _, name = r.path.rpartition("/")
        parent = self.root
        for part in head.split("/"):
            if not part:
                continue
            if parent.kind != DIR:
                raise not_dir(r)
            child = parent.entries.get(part)
            if child is None:
                raise missing(r)
            parent = child
        if parent.kind != DIR:
            raise not_dir(r)
        return parent, name

    # -- memory -----------------------------------------------------------------------------------------

    def _grow(self, c: Caller, more: int) -> None:
        """Before holding ``more`` bytes: the per-process cap (ENOSPC), then the quota (EDQUOT)."""
        if more <= 0:
            return
        if self.used + more > param.TMP_MAX_BYTES:
            raise QuotaExceeded(
                f"the private /tmp of process {self.pid} is full ({self.used} of {param.TMP_MAX_BYTES} bytes)",
                code="ENOSPC",
            )
        if c.confined:
            self.k.quotas.check(self.pid, {"memory_bytes": more})

    def _account(self, delta: int) -> None:
        self.used += delta
        if not self.gone:
            self.k.quotas.hold(self.pid, "memory_bytes", self.used)

    def _add(self, c: Caller, parent: Node, name: str, kind: str, mode: int) -> Node:
        self._grow(c, NODE_BYTES + len(name))
        node = Node(self.next_ino, kind, mode)
        self.next_ino += 1
        parent.entries[name] = node
        parent.mtime_ns = node.mtime_ns
        self.files += 1
        self._account(NODE_BYTES + len(name))
        return node

    def _remove(self, parent: Node, name: str) -> None:
        node = parent.entries.pop(name)
        node.nlink = 0
        parent.mtime_ns = time.time_ns()
        self._account(-len(name))
        if node.opens <= 0:
            self.free(node)

    def free(self, node: Node) -> None:
        """A node with no name and no open file: its memory is given back."""
        self.files -= 1
        self._account(-NODE_BYTES - len(node.data))
        node.data = bytearray()

    # -- the path calls -------------------------------------------------------------------------------

    def stat(self, r: Routed) -> dict[str, Any]:
        node = self._walk(r)
        return stat_row(r, node.kind, node.mode, size=len(node.data), ino=node.ino, mtime_ns=node.mtime_ns)

    def readdir(self, r: Routed) -> list[str]:
        node = self._walk(r)
        if node.kind != DIR:
            raise not_dir(r)
        return sorted(node.entries)

    def open(self, r: Routed, want: Open) -> Done:
        if "create" in want.flags and r.wants_dir:  # as Linux: the directory on the way, then EISDIR
            self._parent(r)
            raise is_dir(r)
        try:
            node = self._walk(r)
        except NotFound:
            if "create" not in want.flags:
                raise
            parent, name = self._parent(r)
            self._add(r.c, parent, name, FILE, want.mode)
        else:
            if "exclusive" in want.flags:
                raise exists(r)
            if node.kind == DIR:
                raise is_dir(r, " (use readdir)")
            if "truncate" in want.flags and node.data:
                self._account(-len(node.data))
                node.data = bytearray()
                node.mtime_ns = time.time_ns()
        return opened(r, want)

    def mkdir(self, r: Routed, mode: int) -> Done:
        if r.is_root:
            raise exists(r)
        parent, name = self._parent(r)
        if name in parent.entries:
            raise exists(r)
        self._add(r.c, parent, name, DIR, mode)
        return Done(None)

    def unlink(self, r: Routed) -> Done:
        if r.is_root:
            raise busy(r)
        node = self._walk(r)
        if node.kind == DIR:
            raise is_dir(r, " (use rmdir)")
        parent, name = self._parent(r)
        self._remove(parent, name)
        return Done(None)

    def rmdir(self, r: Routed) -> Done:
        if r.is_root:
            raise busy(r)
        node = self._walk(r)
        if node.kind != DIR:
            raise not_dir(r)
        if node.entries:
            raise Conflict(f"{r.full} is not empty", code="ENOTEMPTY")
        parent, name = self._parent(r)
        self._remove(parent, name)
        return Done(None)

    def rename(self, src: Routed, dst: Routed) -> Done:
        if src.is_root or dst.is_root:
            raise busy(src if src.is_root else dst)
        # Linux's order: both directories, the source, trailing slashes, then a move into itself
        # (EINVAL) or over an ancestor of itself (ENOTEMPTY). No links here: paths are physical.
        old_parent, name = self._parent(src)
        new_parent, new_name = self._parent(dst)
        node = self._walk(src)
        old = new_parent.entries.get(new_name)
        if node.kind != DIR and dst.wants_dir:
            raise not_dir(dst)
        if src.path != dst.path:
            if node.kind == DIR and (dst.path + "/").startswith(src.path + "/"):
                raise InvalidArgument(f"cannot move {src.full} into itself ({dst.full})")
            if (src.path + "/").startswith(dst.path + "/"):
                raise Conflict(f"{dst.full} is not empty (it holds {src.full})", code="ENOTEMPTY")
        if old is node:
            return Done(None)  # the same file: POSIX does nothing
        if old is not None:
            if old.kind == DIR and node.kind != DIR:
                raise is_dir(dst)
            if node.kind == DIR and old.kind != DIR:
                raise not_dir(dst)
            if old.entries:
                raise Conflict(f"{dst.full} is not empty", code="ENOTEMPTY")
        self._grow(src.c, len(new_name) - len(name))
        if old is not None:
            self._remove(new_parent, new_name)
        del old_parent.entries[name]
        new_parent.entries[new_name] = node
        old_parent.mtime_ns = new_parent.mtime_ns = time.time_ns()
        self._account(len(new_name) - len(name))
        return Done(None)

    def handle(self, k: Kernel, f: OpenFile, *, fresh: bool) -> Handle:
        node = self.find(f.path) if fresh else None
        if node is None or node.kind != FILE:
            return Lost(
                f"this fd was on the private /tmp of process {f.pid}, which the kernel lost when it restarted"
            )
        return TmpFile(self, node)


class TmpFile(Handle):
    """An open file in a private /tmp: reads and writes go straight to its bytes in memory."""

    def __init__(self, tmp: TmpFS, node: Node) -> None:
        self.tmp, self.node = tmp, node
        node.opens += 1

    def size(self) -> int:
        return len(self.node.data)

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self.node.data[offset : offset + n])

    def write(self, c: Caller, offset: int, data: bytes) -> tuple[int, list[ev.Payload], dict[str, bytes]]:
        buf = self.node.data
        end = offset + len(data)
        if end > param.MAX_FILE_BYTES:
            raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
        more = max(0, end - len(buf))
        self.tmp._grow(c, more)
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))  # a hole reads as zeros
        buf[offset:end] = data
        self.node.mtime_ns = time.time_ns()
        self.tmp._account(more)
        return len(data), [], {}

    def release(self) -> None:
        self.node.opens -= 1
        if self.node.opens <= 0 and self.node.nlink <= 0:
            self.tmp.free(self.node)
