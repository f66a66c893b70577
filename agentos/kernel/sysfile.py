"""sys_* handlers for calls on paths: mkdir, open, stat, readdir, unlink, rmdir, rename, over the
projected tree (``state/vfs.py``, ``docs/vfs.md``); calls on fds are in ``sysfd.py``, a file's
bytes and versions in ``filedata.py``.

Each handler reads state and returns ``Done(result, events, blobs)``; it mutates nothing.

Capabilities: path calls name ``fs:<physical path>`` — symlinks and ``..`` resolved in the tree as
the call resolves them (``kernel/fsaccess.py``); ``rename`` checks the destination too, in the
handler. Mode bits and the ``files`` quota are checked here, by ``fsaccess``. Directories cannot
be opened (EISDIR; ``readdir`` lists them). ``open`` with ``create`` through a dangling symlink
creates what it names, as POSIX (EEXIST with ``exclusive``).
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agentos.abi import syscalls as sc
from agentos.errors import Conflict, InvalidArgument, NotFound
from agentos.kernel import fsaccess
from agentos.kernel.calls import Caller, Done
from agentos.kernel.fsaccess import R, W
from agentos.kernel.vfs import mounts
from agentos.kernel.vfs.mountfs import Open
from agentos.state import events as ev
from agentos.state import vfs
from agentos.state.vfs import APPEND, DIR, FILE, READ, WRITE, FileSystem, Inode, OpenFile

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

MAX_FDS = 1024  # open fds per process (EMFILE past it)
_WRITING = frozenset({"write", "append", "create", "truncate"})


# -- capabilities: the resource (and right) a row names, from its arguments ----------------------------


def fs_path(path: str) -> str:
    """``path`` normalised lexically (``.``, ``..`` and repeated slashes gone): where a mount
    routes it. A capability is checked on ``fsaccess.canonical`` of it instead."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


def open_right(a: Any) -> str:
    """``write`` when the open may change the file (write, append, create, truncate), else ``read``."""
    return "write" if _WRITING.intersection(a.flags) else "read"


# -- errors -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def paths() -> Iterator[None]:
    """A path that does not resolve, as the typed error with its POSIX code."""
    try:
        yield
    except vfs.NoEntry as e:
        raise NotFound(f"no such file or directory: {e}", code="ENOENT") from None
    except vfs.PathError as e:
        raise InvalidArgument(f"{e.code}: {e}", code=e.code) from None


def bad_fd(fd: int, why: str = "is not open") -> InvalidArgument:
    return InvalidArgument(f"fd {fd} {why}", code="EBADF")


def open_fd(k: Kernel, c: Caller, fd: int, need: int = 0) -> tuple[OpenFile, Inode]:
    f = k.state.world.vfs.open_file(c.pid, fd)
    node = k.state.world.vfs.get(f.ino) if f is not None else None
    if f is None or node is None:
        raise bad_fd(fd)
    if need and not f.flags & need:
        raise bad_fd(fd, f"is not open for {'reading' if need == READ else 'writing'}")
    return f, node


# -- path calls -------------------------------------------------------------------------------------------


def free_name(fs: FileSystem, path: str) -> tuple[Inode, str]:
    """The directory that would hold a new ``path`` and its name; EEXIST if the name is taken."""
    with paths():
        parent, name = fs.parent_of(path)
    holder = fs.inodes[parent]
    if name in holder.entries:
        raise Conflict(f"{path} exists", code="EEXIST")
    return holder, name


def lookup_entry(fs: FileSystem, path: str) -> tuple[Inode, str, Inode]:
    """An existing name: its directory, the name and the inode it names (not following it)."""
    with paths():
        parent, name = fs.parent_of(path)
    holder = fs.inodes[parent]
    ino = holder.entries.get(name)
    if ino is None or ino not in fs.inodes:
        raise NotFound(f"no such file or directory: {path}", code="ENOENT")
    return holder, name, fs.inodes[ino]


def sys_mkdir(k: Kernel, c: Caller, a: sc.MkdirArgs) -> Done:
    if (r := mounts.route(k, c, a.path, follow=False)) is not None:
        return r.fs.mkdir(r, a.mode)
    holder, name = free_name(k.state.world.vfs, a.path)
    return Done(None, [fsaccess.new_inode(k, c, a.path, holder, name, DIR, a.mode)])


def sys_open(k: Kernel, c: Caller, a: sc.OpenArgs) -> Done:
    fs = k.state.world.vfs
    flags = set(a.flags)
    writing = bool(flags & {"write", "append"})
    if "truncate" in flags and not writing:
        raise InvalidArgument("truncate needs write or append")
    if "exclusive" in flags and "create" not in flags:
        raise InvalidArgument("exclusive needs create")
    if writing and "read" in flags:  # the row checked write; reading needs read too
        fsaccess.authorise(k, c, "open", a.path, "read")
    mode = (READ if "read" in flags or not writing else 0) | (WRITE if writing else 0)
    mode |= APPEND if "append" in flags else 0
    fd = fs.lowest_free_fd(c.pid)
    if fd >= vfs.FIRST_FD + MAX_FDS:
        raise InvalidArgument(f"process {c.pid} has {MAX_FDS} files open", code="EMFILE")
    if (r := mounts.route(k, c, a.path)) is not None:
        return r.fs.open(r, Open(fd, frozenset(flags), mode, a.mode))
    events: list[ev.Payload] = []
    if "create" in flags and a.path.endswith("/"):  # as Linux: the directory on the way, then EISDIR
        with paths():
            fs.resolve(a.path.rstrip("/").rpartition("/")[0] + "/")
        raise InvalidArgument(f"{a.path} names a directory", code="EISDIR")
    try:
        with paths():
            ino = fs.resolve(a.path)
    except NotFound:
        if "create" not in flags:
            raise
        where = a.path
        if fs.lookup(a.path, follow=False) is not None:  # a dangling symlink: create what it names
            if "exclusive" in flags:
                raise Conflict(f"{a.path} exists (a symlink)", code="EEXIST") from None
            where = fsaccess.canonical(k, a.path)
        holder, name = free_name(fs, where)
        created = fsaccess.new_inode(k, c, a.path, holder, name, FILE, a.mode)
        ino = created.ino
        events.append(created)
    else:
        if "exclusive" in flags:
            raise Conflict(f"{a.path} exists", code="EEXIST")
        node = fs.inodes[ino]
        if node.kind == DIR:
            raise InvalidArgument(f"{a.path} is a directory (use readdir)", code="EISDIR")
        if node.kind != FILE:
            raise InvalidArgument(f"{a.path} is a {node.kind}, not a file")
        fsaccess.need(c, node, (R if mode & READ else 0) | (W if mode & WRITE else 0), a.path)
        if "truncate" in flags and node.pending_size:
            events.append(ev.VfsTruncated(ino=ino, size=0, pid=c.pid))
    events.append(ev.VfsOpened(pid=c.pid, fd=fd, ino=ino, flags=mode))
    return Done(fd, events)


def sys_stat(k: Kernel, c: Caller, a: sc.StatArgs) -> Done:
    if (r := mounts.route(k, c, a.path, follow=a.follow)) is not None:
        return Done(r.fs.stat(r))
    fs = k.state.world.vfs
    with paths():
        node = fs.inodes[fs.resolve(a.path, follow=a.follow)]
    out = {
        "ino": node.ino,
        "kind": node.kind,
        "size": node.pending_size,
        "mode": node.mode,
        "nlink": node.nlink,
        "mtime_ns": node.mtime_ns,
        "version_seq": node.version_seq,
    }
    return Done(out | {"target": node.target} if node.kind == vfs.SYMLINK else out)


def sys_readdir(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    if (r := mounts.route(k, c, a.path)) is not None:
        return Done(r.fs.readdir(r))
    fs = k.state.world.vfs
    with paths():
        ino = fs.resolve(a.path)
        names = fs.listdir(ino)
    fsaccess.need(c, fs.inodes[ino], R, a.path)
    return Done(mounts.listing(k, c, a.path, names))


def sys_unlink(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    if (r := mounts.route(k, c, a.path, follow=False)) is not None:
        return r.fs.unlink(r)
    holder, name, node = lookup_entry(k.state.world.vfs, a.path)
    if node.kind == DIR:
        raise InvalidArgument(f"{a.path} is a directory (use rmdir)", code="EISDIR")
    if a.path.endswith("/"):
        raise InvalidArgument(f"{a.path} is not a directory", code="ENOTDIR")
    fsaccess.need(c, holder, W, f"{a.path}: its directory")
    return Done(None, [ev.VfsUnlinked(parent=holder.ino, name=name, ino=node.ino, pid=c.pid)])


def sys_rmdir(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    if (r := mounts.route(k, c, a.path, follow=False)) is not None:
        return r.fs.rmdir(r)
    holder, name, node = lookup_entry(k.state.world.vfs, a.path)
    if node.kind != DIR:
        raise InvalidArgument(f"{a.path} is not a directory", code="ENOTDIR")
    if node.entries:
        raise Conflict(f"{a.path} is not empty", code="ENOTEMPTY")
    fsaccess.need(c, holder, W, f"{a.path}: its directory")
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
    fsaccess.authorise(k, c, "rename", a.dst, "write", follow=False)  # the row checked the source
    if (moved := mounts.rename(k, c, a.src, a.dst)) is not None:
        return moved
    # Linux's order, so the first error is the one a user knows: both directories, the source,
    # trailing slashes, then a move into itself (EINVAL) or over an ancestor of itself (ENOTEMPTY).
    with paths():
        fs.parent_of(a.src)
        parent, new_name = fs.parent_of(a.dst)
    src, name, node = lookup_entry(fs, a.src)
    dst = fs.inodes[parent]
    old = dst.entries.get(new_name)
    is_dir = node.kind == DIR
    if not is_dir and (a.src.endswith("/") or a.dst.endswith("/")):
        raise InvalidArgument(f"{a.src} is not a directory", code="ENOTDIR")
    if is_dir and _inside(fs, dst.ino, node.ino):
        raise InvalidArgument(f"cannot move {a.src} into itself ({a.dst})")
    if old is not None and old != node.ino and _inside(fs, src.ino, old):
        raise Conflict(f"{a.dst} is not empty (it holds {a.src})", code="ENOTEMPTY")
    if old == node.ino:
        return Done(None)  # the same file: POSIX does nothing
    if old is not None:
        victim = fs.inodes[old]
        if victim.kind == DIR and not is_dir:
            raise InvalidArgument(f"{a.dst} is a directory", code="EISDIR")
        if is_dir and victim.kind != DIR:
            raise InvalidArgument(f"{a.dst} is not a directory", code="ENOTDIR")
        if victim.entries:
            raise Conflict(f"{a.dst} is not empty", code="ENOTEMPTY")
    fsaccess.need(c, src, W, f"{a.src}: its directory")
    fsaccess.need(c, dst, W, f"{a.dst}: its directory")
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
