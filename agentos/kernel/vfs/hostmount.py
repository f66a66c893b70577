"""The ``host`` mount kind: a host directory in the tree (``agentos mount HOSTDIR /mnt/x [--ro]``).

Reaching only what lies beneath the root is ``hostfs.HostMount``'s job (openat2 RESOLVE_BENEATH or
an fd-relative walk; no ``..``, symlink, hard-link or device escape). This module makes it a file
system of the kernel, under one rule: **nothing on the host changes before the kernel has durably
recorded what the change destroys** (ARCHITECTURE.md §4.3, the output-commit rule).

Writing a file. Bytes written through an fd are journaled like a world file's (``vfs.host_wrote``:
chunk blobs, pending in the open file, so an acknowledged write survives kill -9), and read back
through that fd over the host's bytes. ``close``, ``fsync`` or the writer's exit *publish* them:
the host's current bytes and the new bytes are stored as versions, a ``vfs.host_change`` names
both, and the caller waits (``Block``) until ``hostwriter.py`` has made the change — once the event
is durable, atomically (temporary file, fsync, rename). A file created or truncated by ``open``
therefore appears on the host, with its content, at that publish: a host process never sees it
half written.

Names. ``mkdir``, ``rmdir``, ``unlink``, ``rename`` are recorded the same way (an unlinked or
replaced file's bytes, an unlinked symlink's target) and made after the record is durable.

What a replayed agent sees: a host change whose call was parked when the kernel died was recorded
first and is made at the next boot (``hostwriter.py``); the replayed call finds it recorded
(``Caller.intent``) and answers without recording it again.
"""

from __future__ import annotations

import os
import stat as st
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import AgentOSError, Conflict, InvalidArgument, IOFailure, NotFound
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.vfs.hostfs import HostMount
from agentos.kernel.vfs.mountfs import (
    Handle,
    MountFS,
    Open,
    Routed,
    busy,
    exists,
    is_dir,
    not_dir,
    opened,
    readonly,
    stat_row,
)
from agentos.state import events as ev
from agentos.state.vfs import WRITE, Mount, OpenFile, PendingWrite
from agentos.store import chunks

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

KIND = "host"


def overlay(k: Kernel, base: bytes, pending: list[PendingWrite]) -> bytes:
    """``base`` with the pending writes and truncates applied in order (a hole reads as zeros)."""
    buf = bytearray(base)
    for w in pending:
        if w.data:
            data = version_bytes(k, w.data)
            if w.offset > len(buf):
                buf.extend(bytes(w.offset - len(buf)))
            buf[w.offset : w.offset + len(data)] = data
        elif w.offset < len(buf):
            del buf[w.offset :]
        else:
            buf.extend(bytes(w.offset - len(buf)))
    return bytes(buf)


def version_bytes(k: Kernel, h: str) -> bytes:
    """The bytes of the version stored under manifest hash ``h``."""
    from agentos.kernel.filedata import _manifest  # noqa: PLC0415 - filedata imports mounts

    return chunks.join(_manifest(k, h), k.blob)


def digest(data: bytes | None) -> str | None:
    """The manifest hash ``data`` is stored under (None for no file): how contents are compared."""
    return None if data is None else chunks.store(data, lambda _h: True)[0]


def stored(k: Kernel, data: bytes | None) -> tuple[str | None, dict[str, bytes]]:
    """``data`` stored as a version: its manifest hash (None for no file) and the new blobs."""
    if data is None:
        return None, {}
    return chunks.store(data, k.has_blob)


def wait_for_change(
    k: Kernel, call: str, events: list[ev.Payload], blobs: dict[str, bytes], result: Any = None
) -> Block:
    """Park the caller until the host changes among ``events`` are made (the last one decides:
    they are made in order); answer ``result``, or the error of the last if it failed."""
    block = Block(call, events=events, blobs=blobs)
    last = max(i for i, e in enumerate(events) if isinstance(e, ev.VfsHostChange))
    after = len(events) - 1 - last  # events emitted after it (a close's vfs.closed)

    def poll() -> Done | None:
        done = k.host.outcome(block.emitted - after if block.emitted else 0)
        return None if done is None else Done(result)

    block.poll = poll
    return block


class HostFS(MountFS):
    kind = KIND

    def __init__(self, k: Kernel, point: str, mount: Mount) -> None:
        self.k, self.point, self.mount = k, point, mount
        self._host: HostMount | None = None

    @property
    def host(self) -> HostMount:
        """The open mount root (opened at first use: the kernel boots even if the directory went)."""
        if self._host is None:
            try:
                self._host = HostMount(self.mount.source, read_only=self.mount.readonly)
            except AgentOSError as err:
                raise IOFailure(
                    f"{self.point}: host directory unavailable: {err.message}", code="EIO"
                ) from err
        return self._host

    def _writable(self, r: Routed) -> None:
        if self.mount.readonly:
            raise readonly(r)

    # -- reading ----------------------------------------------------------------------------------------

    def stat(self, r: Routed) -> dict[str, Any]:
        s = self.host.stat(r.path)
        kind = "dir" if st.S_ISDIR(s.st_mode) else "file" if st.S_ISREG(s.st_mode) else "other"
        return stat_row(r, kind, st.S_IMODE(s.st_mode), size=s.st_size, ino=0, mtime_ns=s.st_mtime_ns)

    def readdir(self, r: Routed) -> list[str]:
        return self.host.listdir(r.path)

    def content(self, path: str) -> bytes | None:
        """The regular file's bytes now, None when there is no such entry."""
        try:
            return self.host.read_file(path)
        except NotFound:
            return None

    def open(self, r: Routed, want: Open) -> Done:
        writing = bool(want.rw & WRITE)
        if writing:
            self._writable(r)
        try:
            s = self.host.stat(r.path)
        except NotFound:
            if "create" not in want.flags:
                raise
            if r.wants_dir:
                raise is_dir(r) from None
            self.host.stat(os.path.dirname(r.path) or "/")  # ENOENT/ENOTDIR for a missing parent
            s = None
        if s is not None:
            if "exclusive" in want.flags:
                raise exists(r)
            if st.S_ISDIR(s.st_mode):
                raise is_dir(r, " (use readdir)")
            os.close(self.host.open(r.path))  # a regular file with one link, or a typed refusal
        done = opened(r, want)
        if s is None or "truncate" in want.flags:  # the file is empty from here on, for this fd
            done.events.append(ev.VfsHostWrote(pid=r.c.pid, fd=want.fd, offset=0, data="", length=0))
        return done

    def handle(self, k: Kernel, f: OpenFile, *, fresh: bool) -> Handle:
        return HostFile(self, f.id)

    # -- names: recorded first, made once durable ------------------------------------------------------

    def _change(self, r: Routed, op: str, **fields: Any) -> Done | Block:
        if r.c.intent is not None:  # recorded before the kernel restarted: made at its boot
            return Done(None)
        before = fields.pop("before_bytes", None)
        before_hash, blobs = stored(self.k, before)
        change = ev.VfsHostChange(
            mount=self.point,
            path=r.path,
            op=op,
            pid=r.c.pid,
            before=before_hash,
            cause=op,
            stored=sum(map(len, blobs.values())),
            **fields,
        )
        return wait_for_change(self.k, op, [change], blobs)

    def mkdir(self, r: Routed, mode: int) -> Done | Block:
        if r.is_root:
            raise exists(r)
        self._writable(r)
        if self.host.exists(r.path, follow_symlinks=False):
            raise exists(r)
        self.host.stat(os.path.dirname(r.path) or "/")
        return self._change(r, "mkdir")

    def unlink(self, r: Routed) -> Done | Block:
        if r.is_root:
            raise busy(r)
        self._writable(r)
        s = self.host.stat(r.path, follow_symlinks=False)
        if st.S_ISDIR(s.st_mode):
            raise is_dir(r, " (use rmdir)")
        if st.S_ISLNK(s.st_mode):
            return self._change(r, "unlink", to=self.host.readlink(r.path))
        return self._change(r, "unlink", before_bytes=self.host.read_file(r.path))

    def rmdir(self, r: Routed) -> Done | Block:
        if r.is_root:
            raise busy(r)
        self._writable(r)
        s = self.host.stat(r.path, follow_symlinks=False)
        if not st.S_ISDIR(s.st_mode):
            raise not_dir(r)
        if self.host.listdir(r.path):
            raise Conflict(f"{r.full} is not empty", code="ENOTEMPTY")
        return self._change(r, "rmdir")

    def rename(self, src: Routed, dst: Routed) -> Done | Block:
        if src.is_root or dst.is_root:
            raise busy(src if src.is_root else dst)
        self._writable(src)
        s = self.host.stat(src.path, follow_symlinks=False)
        if st.S_ISDIR(s.st_mode) and (dst.path + "/").startswith(src.path + "/"):
            raise InvalidArgument(f"cannot move {src.full} into itself ({dst.full})")
        try:
            d = self.host.stat(dst.path, follow_symlinks=False)
        except NotFound:
            d = None
        before = None
        if d is not None:
            if st.S_ISDIR(d.st_mode) != st.S_ISDIR(s.st_mode):
                raise is_dir(dst) if st.S_ISDIR(d.st_mode) else not_dir(dst)
            if st.S_ISDIR(d.st_mode) and self.host.listdir(dst.path):
                raise Conflict(f"{dst.full} is not empty", code="ENOTEMPTY")
            if st.S_ISREG(d.st_mode):
                before = self.host.read_file(dst.path)
        return self._change(src, "rename", to=dst.path, before_bytes=before)


class HostFile(Handle):
    """An open file on a host mount: the host's bytes, with this open file's pending writes over them."""

    def __init__(self, fs: HostFS, file_id: int) -> None:
        self.fs, self.file_id = fs, file_id

    @property
    def f(self) -> OpenFile:
        f = self.fs.k.state.world.vfs.files.get(self.file_id)
        if f is None:
            raise InvalidArgument("this file is closed", code="EBADF")
        return f

    def bytes_now(self) -> bytes:
        f = self.f
        return overlay(self.fs.k, self.fs.content(f.path) or b"", f.pending)

    def size(self) -> int:
        f = self.f
        if f.pending:
            return len(self.bytes_now())
        try:
            return self.fs.host.stat(f.path).st_size
        except NotFound:
            return 0

    def read(self, offset: int, n: int) -> bytes:
        f = self.f
        if f.pending:
            return self.bytes_now()[offset : offset + n]
        fd = self.fs.host.open(f.path)
        try:
            return os.pread(fd, n, offset)
        finally:
            os.close(fd)

    def write(self, c: Caller, offset: int, data: bytes) -> tuple[int, list[ev.Payload], dict[str, bytes]]:
        end = offset + len(data)
        if end > param.MAX_FILE_BYTES:
            raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
        h, blobs = chunks.store(data, self.fs.k.has_blob)
        stored = sum(map(len, blobs.values()))
        if c.confined:
            self.fs.k.quotas.check(c.pid, {"file_bytes": len(data), "stored_bytes": stored})
        fd = next(
            fd for fd, fid in self.fs.k.state.world.vfs.fds.get(c.pid, {}).items() if fid == self.file_id
        )
        return (
            len(data),
            [ev.VfsHostWrote(pid=c.pid, fd=fd, offset=offset, data=h, length=len(data), stored=stored)],
            blobs,
        )

    def publish(self, pid: int, cause: str) -> tuple[list[ev.Payload], dict[str, bytes]]:
        """The record that makes this open file's pending writes the host file's content (none: no
        pending writes). The host's current bytes are read now, as the ``before``."""
        f = self.f
        if not f.pending:
            return [], {}
        before = self.fs.content(f.path)
        new = overlay(self.fs.k, before or b"", f.pending)
        before_hash, blobs = stored(self.fs.k, before)
        after_hash, more = stored(self.fs.k, new)
        change = ev.VfsHostChange(
            mount=self.fs.point,
            path=f.path,
            op="write",
            pid=pid,
            before=before_hash,
            after=after_hash,
            file=f.id,
            cause=cause,
            stored=sum(map(len, (blobs | more).values())),
        )
        return [change], blobs | more


def publish(
    k: Kernel, c: Caller, f: OpenFile, h: Handle, cause: str
) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """``close``/``fsync`` of an fd on a mounted file: the host change it records, if any."""
    if not isinstance(h, HostFile) or not f.pending:
        return [], {}
    return h.publish(c.pid, cause)


def publish_at_exit(k: Kernel, pid: int) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """An exiting process's host files with pending writes: their records (made after its exit is
    durable; nobody waits for them). One that cannot be read now is left unpublished, never fails
    the exit."""
    events: list[ev.Payload] = []
    blobs: dict[str, bytes] = {}
    fs = k.state.world.vfs
    for fid in sorted(set(fs.fds.get(pid, {}).values())):
        f = fs.files.get(fid)
        if f is None or not f.mount or not f.pending:
            continue
        try:
            more, more_blobs = publish(k, Caller(pid, "agent"), f, k.mounts.handle_of(f), "exit")
        except AgentOSError:
            continue
        events += more
        blobs |= more_blobs
    return events, blobs


def missing_mount(point: str) -> NotFound:
    return NotFound(f"nothing is mounted at {point}", code="ENOENT")
