"""sys_* handlers for the file system (slice 1): mkdir, open, write, read, seek, close, fsync, stat,
readdir, unlink, rmdir and rename over the projected tree (``state/vfs.py``, ``docs/vfs.md``).

Each handler reads state and returns ``Done(result, events, blobs)``; it mutates nothing. File
bytes never sit in an event: a ``write`` stores its bytes as chunk blobs plus a manifest blob
(``store/chunks.py``) in the transaction of the ``vfs.wrote`` event naming them, so an
acknowledged write survives kill -9; ``close`` and ``fsync`` cut a version (the last version plus
the pending writes, re-chunked) named by one ``vfs.version`` event. A process that exits has its
files closed the same way (:func:`close_all`, called from ``sysproc.exit_events``).

Capabilities: path calls name ``fs:<normalised path>`` (``rename`` checks the destination too, in
the handler); fd calls name ``sys:fd`` (right ``use``) and are then held to the mode the fd was
opened with (EBADF otherwise), which the open checked against the path's capability.

Discussion — what is simplified in this slice. Materialising a file's content (:func:`content`)
builds the whole file in memory, and a version re-chunks all of it: fine for the files agents
write today, to be replaced by a chunk-level merge of the pending writes. Directories cannot be
opened (EISDIR; ``readdir`` lists them). Capability paths are normalised lexically (``..``
removed before the check); with no symlink syscall yet, the lexical path and the resolved one
name the same inode.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.abi import syscalls as sc
from agentos.errors import AgentOSError, Conflict, InvalidArgument, IOFailure, NotFound
from agentos.kernel.calls import Caller, Done
from agentos.state import events as ev
from agentos.state import vfs
from agentos.state.vfs import APPEND, DIR, FILE, READ, WRITE, FileSystem, Inode, OpenFile
from agentos.store import chunks
from agentos.store.chunks import Manifest, join, read_range

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

MAX_FDS = 1024  # open fds per process (EMFILE past it)
_WRITING = frozenset({"write", "append", "create", "truncate"})


# -- capabilities: the resource (and right) a row names, from its arguments ----------------------------


def fs_path(path: str) -> str:
    """``path`` normalised lexically (``.``, ``..`` and repeated slashes gone), as a capability names it."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


def path_resource(a: Any) -> str:
    return f"fs:{fs_path(a.path)}"


def rename_resource(a: Any) -> str:
    return f"fs:{fs_path(a.src)}"


def open_right(a: Any) -> str:
    """``write`` when the open may change the file (write, append, create, truncate), else ``read``."""
    return "write" if _WRITING.intersection(a.flags) else "read"


# -- errors -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _paths() -> Iterator[None]:
    """A path that does not resolve, as the typed error with its POSIX code."""
    try:
        yield
    except vfs.NoEntry as e:
        raise NotFound(f"no such file or directory: {e}", code="ENOENT") from None
    except vfs.PathError as e:
        raise InvalidArgument(f"{e.code}: {e}", code=e.code) from None


def _bad_fd(fd: int, why: str = "is not open") -> InvalidArgument:
    return InvalidArgument(f"fd {fd} {why}", code="EBADF")


def _fd(k: Kernel, c: Caller, fd: int, need: int = 0) -> tuple[OpenFile, Inode]:
    f = k.state.world.vfs.open_file(c.pid, fd)
    node = k.state.world.vfs.get(f.ino) if f is not None else None
    if f is None or node is None:
        raise _bad_fd(fd)
    if need and not f.flags & need:
        raise _bad_fd(fd, f"is not open for {'reading' if need == READ else 'writing'}")
    return f, node


# -- content: a file's bytes from state and blobs --------------------------------------------------------


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


def _read(k: Kernel, node: Inode, offset: int, n: int) -> bytes:
    if not node.pending:
        return read_range(_manifest(k, node.manifest), k.blob, offset, n) if node.manifest else b""
    return content(k, node)[offset : offset + n]


def _stored(k: Kernel, blobs: dict[str, bytes]) -> int:
    """Bytes of the blobs not stored yet (what storing them would add)."""
    return sum(len(b) for h, b in blobs.items() if not k.has_blob(h))


def _store(k: Kernel, data: bytes) -> tuple[str, dict[str, bytes]]:
    """``data`` chunked: its manifest's hash ("" for nothing) and the blobs not stored yet."""
    if not data:
        return "", {}
    return chunks.store(data, k.has_blob)


def version_events(k: Kernel, node: Inode, pid: int) -> tuple[list[ev.Payload], dict[str, bytes]]:
    """Cut a version of ``node`` if it has pending changes: its event and the blobs to store."""
    if not node.pending:
        return [], {}
    data = content(k, node)
    h, blobs = _store(k, data)
    stored = sum(len(b) for b in blobs.values())
    return [ev.VfsVersion(ino=node.ino, manifest=h, size=len(data), pid=pid, stored=stored)], blobs


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
                more, more_blobs = version_events(k, node, pid)
                events += more
                blobs |= more_blobs
        events.append(ev.VfsClosed(pid=pid, fd=fd))
    return events, blobs


# -- path calls -------------------------------------------------------------------------------------------


def _new_name(fs: FileSystem, path: str) -> tuple[Inode, str]:
    """The directory that would hold a new ``path`` and its name; EEXIST if the name is taken."""
    with _paths():
        parent, name = fs.parent_of(path)
    holder = fs.inodes[parent]
    if name in holder.entries:
        raise Conflict(f"{path} exists", code="EEXIST")
    return holder, name


def _entry(fs: FileSystem, path: str) -> tuple[Inode, str, Inode]:
    """An existing name: its directory, the name and the inode it names (not following it)."""
    with _paths():
        parent, name = fs.parent_of(path)
    holder = fs.inodes[parent]
    ino = holder.entries.get(name)
    if ino is None or ino not in fs.inodes:
        raise NotFound(f"no such file or directory: {path}", code="ENOENT")
    return holder, name, fs.inodes[ino]


def sys_mkdir(k: Kernel, c: Caller, a: sc.MkdirArgs) -> Done:
    holder, name = _new_name(k.state.world.vfs, a.path)
    ino = k.state.ledger.next_ino
    return Done(
        None, [ev.VfsCreated(parent=holder.ino, name=name, ino=ino, kind=DIR, mode=a.mode, pid=c.pid)]
    )


def sys_open(k: Kernel, c: Caller, a: sc.OpenArgs) -> Done:
    fs = k.state.world.vfs
    flags = set(a.flags)
    writing = bool(flags & {"write", "append"})
    if "truncate" in flags and not writing:
        raise InvalidArgument("truncate needs write or append")
    if "exclusive" in flags and "create" not in flags:
        raise InvalidArgument("exclusive needs create")
    if writing and "read" in flags and c.kind != "kernel":  # the row checked write; reading needs read too
        k.authority.authorise(c, "open", path_resource(a), "read")
    mode = (READ if "read" in flags or not writing else 0) | (WRITE if writing else 0)
    mode |= APPEND if "append" in flags else 0
    fd = fs.lowest_free_fd(c.pid)
    if fd >= vfs.FIRST_FD + MAX_FDS:
        raise InvalidArgument(f"process {c.pid} has {MAX_FDS} files open", code="EMFILE")
    events: list[ev.Payload] = []
    try:
        with _paths():
            ino = fs.resolve(a.path)
    except NotFound:
        if "create" not in flags:
            raise
        if a.path.endswith("/"):
            raise InvalidArgument(f"{a.path} names a directory", code="EISDIR") from None
        holder, name = _new_name(fs, a.path)
        ino = k.state.ledger.next_ino
        events.append(ev.VfsCreated(parent=holder.ino, name=name, ino=ino, kind=FILE, mode=a.mode, pid=c.pid))
    else:
        if "exclusive" in flags:
            raise Conflict(f"{a.path} exists", code="EEXIST")
        node = fs.inodes[ino]
        if node.kind == DIR:
            raise InvalidArgument(f"{a.path} is a directory (use readdir)", code="EISDIR")
        if node.kind != FILE:
            raise InvalidArgument(f"{a.path} is a {node.kind}, not a file")
        if "truncate" in flags and node.pending_size:
            events.append(ev.VfsTruncated(ino=ino, size=0, pid=c.pid))
    events.append(ev.VfsOpened(pid=c.pid, fd=fd, ino=ino, flags=mode))
    return Done(fd, events)


def sys_stat(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    fs = k.state.world.vfs
    with _paths():
        node = fs.inodes[fs.resolve(a.path)]
    return Done(
        {
            "ino": node.ino,
            "kind": node.kind,
            "size": node.pending_size,
            "mode": node.mode,
            "nlink": node.nlink,
            "mtime_ns": node.mtime_ns,
            "version_seq": node.version_seq,
        }
    )


def sys_readdir(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    fs = k.state.world.vfs
    with _paths():
        return Done(fs.listdir(fs.resolve(a.path)))


def sys_unlink(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    holder, name, node = _entry(k.state.world.vfs, a.path)
    if node.kind == DIR:
        raise InvalidArgument(f"{a.path} is a directory (use rmdir)", code="EISDIR")
    if a.path.endswith("/"):
        raise InvalidArgument(f"{a.path} is not a directory", code="ENOTDIR")
    return Done(None, [ev.VfsUnlinked(parent=holder.ino, name=name, ino=node.ino, pid=c.pid)])


def sys_rmdir(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    holder, name, node = _entry(k.state.world.vfs, a.path)
    if node.kind != DIR:
        raise InvalidArgument(f"{a.path} is not a directory", code="ENOTDIR")
    if node.entries:
        raise Conflict(f"{a.path} is not empty", code="ENOTEMPTY")
    return Done(None, [ev.VfsRmdir(parent=holder.ino, name=name, ino=node.ino, pid=c.pid)])


def _inside(fs: FileSystem, ino: int, ancestor: int) -> bool:
    """Whether directory ``ino`` is ``ancestor`` or below it."""
    for _ in range(len(fs.inodes) + 1):
        if ino == ancestor:
            return True
        node = fs.inodes.get(ino)
        if node is None or ino == fs.root:
            return False
        ino = node.parent
    return True


def sys_rename(k: Kernel, c: Caller, a: sc.RenameArgs) -> Done:
    fs = k.state.world.vfs
    if c.kind != "kernel":  # the row checked the source
        k.authority.authorise(c, "rename", f"fs:{fs_path(a.dst)}", "write")
    src, name, node = _entry(fs, a.src)
    with _paths():
        parent, new_name = fs.parent_of(a.dst)
    dst = fs.inodes[parent]
    old = dst.entries.get(new_name)
    if old == node.ino:
        return Done(None)  # the same file: POSIX does nothing
    is_dir = node.kind == DIR
    if not is_dir and (a.src.endswith("/") or a.dst.endswith("/")):
        raise InvalidArgument(f"{a.src} is not a directory", code="ENOTDIR")
    if is_dir and _inside(fs, dst.ino, node.ino):
        raise InvalidArgument(f"cannot move {a.src} into itself ({a.dst})")
    if old is not None:
        victim = fs.inodes[old]
        if victim.kind == DIR and not is_dir:
            raise InvalidArgument(f"{a.dst} is a directory", code="EISDIR")
        if is_dir and victim.kind != DIR:
            raise InvalidArgument(f"{a.dst} is not a directory", code="ENOTDIR")
        if victim.entries:
            raise Conflict(f"{a.dst} is not empty", code="ENOTEMPTY")
    renamed = ev.VfsRenamed(
        parent=src.ino,
        name=name,
        new_parent=dst.ino,
        new_name=new_name,
        ino=node.ino,
        replaced=old or 0,
        pid=c.pid,
    )
    return Done(None, [renamed])


# -- fd calls ---------------------------------------------------------------------------------------------


def sys_write(k: Kernel, c: Caller, a: sc.WriteArgs) -> Done:
    f, node = _fd(k, c, a.fd, WRITE)
    if not a.data:
        return Done(0)
    offset = node.pending_size if f.flags & APPEND else f.offset
    end = offset + len(a.data)
    if end > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
    h, blobs = _store(k, a.data)
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
    f, node = _fd(k, c, a.fd, READ)
    data = _read(k, node, f.offset, a.n)
    events: list[ev.Payload] = [ev.VfsOffset(pid=c.pid, fd=a.fd, offset=f.offset + len(data))] if data else []
    return Done(data, events)


def sys_seek(k: Kernel, c: Caller, a: sc.SeekArgs) -> Done:
    f, node = _fd(k, c, a.fd)
    base = {"set": 0, "cur": f.offset, "end": node.pending_size}[a.whence]
    offset = base + a.offset
    if offset < 0 or offset > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"seek to {offset}: out of range (0 to {param.MAX_FILE_BYTES})")
    return Done(offset, [ev.VfsOffset(pid=c.pid, fd=a.fd, offset=offset)] if offset != f.offset else [])


def sys_fsync(k: Kernel, c: Caller, a: sc.FdArgs) -> Done:
    _, node = _fd(k, c, a.fd)
    events, blobs = version_events(k, node, c.pid)
    return Done(None, events, blobs)


def sys_close(k: Kernel, c: Caller, a: sc.FdArgs) -> Done:
    f, node = _fd(k, c, a.fd)
    events, blobs = version_events(k, node, c.pid) if f.flags & WRITE else ([], {})
    return Done(None, [*events, ev.VfsClosed(pid=c.pid, fd=a.fd)], blobs)
