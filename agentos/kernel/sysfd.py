"""sys_* handlers for calls on an open fd: write, read, seek, fsync, close (``docs/vfs.md``).

Capability: the rows name ``sys:fd`` (right ``use``); each call is then held to the mode the fd
was opened with (EBADF otherwise), which ``open`` checked against the path's capability. A
``write`` stores its bytes as chunk blobs with its ``vfs.wrote`` event (so an acknowledged write
survives kill -9); ``close`` and ``fsync`` cut a version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentos import param
from agentos.abi import syscalls as sc
from agentos.errors import InvalidArgument
from agentos.kernel.calls import Caller, Done
from agentos.kernel.filedata import read_bytes, store_bytes, version_events
from agentos.kernel.sysfile import open_fd
from agentos.state import events as ev
from agentos.state.vfs import APPEND, READ, WRITE

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def sys_write(k: Kernel, c: Caller, a: sc.WriteArgs) -> Done:
    f, node = open_fd(k, c, a.fd, WRITE)
    if not a.data:
        return Done(0)
    offset = node.pending_size if f.flags & APPEND else f.offset
    end = offset + len(a.data)
    if end > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
    h, blobs = store_bytes(k, a.data)
    stored = sum(len(b) for b in blobs.values())
    if c.kind == "agent":
        k.quotas.check(c.pid, {"file_bytes": len(a.data), "stored_bytes": stored})
    wrote = ev.VfsWrote(
        pid=c.pid,
        fd=a.fd,
        ino=node.ino,
        offset=offset,
        data=h,
        length=len(a.data),
        pos=end,
        size=max(node.pending_size, end),
        stored=stored,
    )
    return Done(len(a.data), [wrote], blobs)


def sys_read(k: Kernel, c: Caller, a: sc.ReadArgs) -> Done:
    f, node = open_fd(k, c, a.fd, READ)
    data = read_bytes(k, node, f.offset, a.n)
    events: list[ev.Payload] = [ev.VfsOffset(pid=c.pid, fd=a.fd, offset=f.offset + len(data))] if data else []
    return Done(data, events)


def sys_seek(k: Kernel, c: Caller, a: sc.SeekArgs) -> Done:
    f, node = open_fd(k, c, a.fd)
    base = {"set": 0, "cur": f.offset, "end": node.pending_size}[a.whence]
    offset = base + a.offset
    if offset < 0 or offset > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"seek to {offset}: out of range (0 to {param.MAX_FILE_BYTES})")
    return Done(offset, [ev.VfsOffset(pid=c.pid, fd=a.fd, offset=offset)] if offset != f.offset else [])


def sys_fsync(k: Kernel, c: Caller, a: sc.FdArgs) -> Done:
    _, node = open_fd(k, c, a.fd)
    events, blobs = version_events(k, node, c.pid)
    return Done(None, events, blobs)


def sys_close(k: Kernel, c: Caller, a: sc.FdArgs) -> Done:
    f, node = open_fd(k, c, a.fd)
    events, blobs = version_events(k, node, c.pid) if f.flags & WRITE else ([], {})
    return Done(None, [*events, ev.VfsClosed(pid=c.pid, fd=a.fd)], blobs)
