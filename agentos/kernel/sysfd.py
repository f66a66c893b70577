"""sys_* handlers for calls on an open fd: write, read, seek, fsync, close, dup, dup2, ftruncate
(``docs/vfs.md``).

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
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.filedata import read_bytes, store_bytes, version_events
from agentos.kernel.sysfile import MAX_FDS, bad_fd, open_fd
from agentos.kernel.vfs import mounts
from agentos.state import events as ev
from agentos.state.vfs import APPEND, FIRST_FD, READ, WRITE, OpenFile

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def sys_write(k: Kernel, c: Caller, a: sc.WriteArgs) -> Done:
    if (m := mounts.fd(k, c, a.fd)) is not None:
        return m.write(a.data)
    f, node = open_fd(k, c, a.fd, WRITE)
    if not a.data:
        return Done(0)
    offset = node.pending_size if f.flags & APPEND else f.offset
    end = offset + len(a.data)
    if end > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
    h, blobs = store_bytes(k, a.data)
    stored = sum(len(b) for b in blobs.values())
    if c.confined:
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
    if (m := mounts.fd(k, c, a.fd)) is not None:
        return m.read(a.n)
    f, node = open_fd(k, c, a.fd, READ)
    data = read_bytes(k, node, f.offset, a.n)
    events: list[ev.Payload] = [ev.VfsOffset(pid=c.pid, fd=a.fd, offset=f.offset + len(data))] if data else []
    return Done(data, events)


def sys_seek(k: Kernel, c: Caller, a: sc.SeekArgs) -> Done:
    if (m := mounts.fd(k, c, a.fd)) is not None:
        return m.seek(a.offset, a.whence)
    f, node = open_fd(k, c, a.fd)
    base = {"set": 0, "cur": f.offset, "end": node.pending_size}[a.whence]
    offset = base + a.offset
    if offset < 0 or offset > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"seek to {offset}: out of range (0 to {param.MAX_FILE_BYTES})")
    return Done(offset, [ev.VfsOffset(pid=c.pid, fd=a.fd, offset=offset)] if offset != f.offset else [])


def sys_fsync(k: Kernel, c: Caller, a: sc.FdArgs) -> Done | Block:
    if (m := mounts.fd(k, c, a.fd)) is not None:
        return m.fsync()
    _, node = open_fd(k, c, a.fd)
    events, blobs = version_events(k, node, c.pid, "fsync")
    return Done(None, events, blobs)


def sys_close(k: Kernel, c: Caller, a: sc.FdArgs) -> Done | Block:
    if c.intent is not None and k.state.world.vfs.open_file(c.pid, a.fd) is None:
        return Done(None)  # a host file's close, parked when the kernel died: recorded, made at boot
    if (m := mounts.fd(k, c, a.fd)) is not None:
        return m.close()
    f, node = open_fd(k, c, a.fd)
    events, blobs = version_events(k, node, c.pid, "close") if f.flags & WRITE else ([], {})
    return Done(None, [*events, ev.VfsClosed(pid=c.pid, fd=a.fd)], blobs)


# -- dup, dup2, ftruncate -------------------------------------------------------------------------------


def _open_any(k: Kernel, c: Caller, fd: int) -> OpenFile:
    """The caller's open file at ``fd``, on the versioned tree or a mount (EBADF if none)."""
    f = k.state.world.vfs.open_file(c.pid, fd)
    if f is None:
        raise bad_fd(fd)
    return f


def sys_dup(k: Kernel, c: Caller, a: sc.FdArgs) -> Done:
    """The lowest free fd, sharing ``fd``'s open file (its offset and flags)."""
    _open_any(k, c, a.fd)
    new_fd = k.state.world.vfs.lowest_free_fd(c.pid)
    if new_fd >= FIRST_FD + MAX_FDS:
        raise InvalidArgument(f"process {c.pid} has {MAX_FDS} files open", code="EMFILE")
    return Done(new_fd, [ev.VfsDup(pid=c.pid, fd=a.fd, new_fd=new_fd)])


def sys_dup2(k: Kernel, c: Caller, a: sc.Dup2Args) -> Done:
    """``new_fd`` made to share ``fd``'s open file; an open ``new_fd`` is closed first, as by
    ``close`` (a file written through it gets its version)."""
    _open_any(k, c, a.fd)
    if not FIRST_FD <= a.new_fd < FIRST_FD + MAX_FDS:
        raise bad_fd(a.new_fd, f"is out of range ({FIRST_FD} to {FIRST_FD + MAX_FDS - 1})")
    if a.new_fd == a.fd:
        return Done(a.fd)
    closed = Done(None)
    if k.state.world.vfs.open_file(c.pid, a.new_fd) is not None:
        closed = sys_close(k, c, sc.FdArgs(fd=a.new_fd))
    return Done(a.new_fd, [*closed.events, ev.VfsDup(pid=c.pid, fd=a.fd, new_fd=a.new_fd)], closed.blobs)


def sys_ftruncate(k: Kernel, c: Caller, a: sc.FtruncateArgs) -> Done:
    """Set the size of the file open for writing at ``fd`` (growing reads as zeros); pending, as a
    write is, until ``close`` or ``fsync`` cuts the version."""
    if _open_any(k, c, a.fd).mount:
        raise InvalidArgument(f"fd {a.fd}: ftruncate is not supported on a mounted file system")
    _, node = open_fd(k, c, a.fd, WRITE)
    if a.size > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
    if a.size == node.pending_size:
        return Done(None)
    return Done(None, [ev.VfsTruncated(ino=node.ino, size=a.size, pid=c.pid)])
