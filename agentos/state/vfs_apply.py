"""The file system's apply functions: one per vfs.* event, small, trusting the log (the handlers
validate); an event naming something missing, or one that would break the tree, changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentos.state import events as ev
from agentos.state.vfs import (
    DIR,
    FILE,
    KINDS,
    SYMLINK,
    FileSystem,
    HostIntent,
    Inode,
    Mount,
    OpenFile,
    PendingWrite,
)


def _live_dir(fs: FileSystem, ino: int) -> Inode | None:
    node = fs.inodes.get(ino)
    return node if node is not None and node.kind == DIR and node.nlink > 0 else None


def _touch(node: Inode, ts: int) -> None:
    node.mtime_ns = node.ctime_ns = ts


def _maybe_free(fs: FileSystem, node: Inode) -> None:
    if node.nlink <= 0 and node.opens <= 0 and node.ino != fs.root:
        del fs.inodes[node.ino]
        if node.group:  # the files quota: its count goes back to the group charged for it
            left = fs.files_of.get(node.group, 0) - 1
            if left > 0:
                fs.files_of[node.group] = left
            else:
                fs.files_of.pop(node.group, None)


def _remove_name(fs: FileSystem, parent: Inode, name: str, ts: int) -> None:
    node = fs.inodes[parent.entries.pop(name)]
    if node.kind == DIR:
        parent.nlink -= 1  # its ".." is gone
        node.nlink = 0
    else:
        node.nlink -= 1
    node.ctime_ns = ts
    _touch(parent, ts)
    _maybe_free(fs, node)


def _within(fs: FileSystem, ino: int, ancestor: int) -> bool:
    """Whether directory ``ino`` is ``ancestor`` or below it."""
    for _ in range(len(fs.inodes) + 1):
        if ino == ancestor:
            return True
        node = fs.inodes.get(ino)
        if node is None or ino == fs.root:
            return False
        ino = node.parent
    return True  # a cycle: say yes, so nothing is moved into it


def _close(fs: FileSystem, pid: int, fd: int) -> None:
    table = fs.fds.get(pid)
    fid = table.pop(fd, None) if table is not None else None
    if table is not None and not table:
        del fs.fds[pid]
    f = fs.files.get(fid) if fid is not None else None
    if f is None:
        return
    f.refs -= 1
    if f.refs <= 0:
        del fs.files[f.id]
        node = fs.inodes.get(f.ino)
        if node is not None:
            node.opens -= 1
            _maybe_free(fs, node)


def _mkfs(fs: FileSystem, seq: int, ts: int, e: ev.VfsMkfs) -> None:
    if fs.root in fs.inodes or e.ino in fs.inodes:
        return  # one root per world
    fs.root = e.ino
    fs.inodes[e.ino] = Inode(
        ino=e.ino, kind=DIR, mode=e.mode, nlink=2, parent=e.ino, mtime_ns=ts, ctime_ns=ts, created_seq=seq
    )


def _created(fs: FileSystem, seq: int, ts: int, e: ev.VfsCreated) -> None:
    parent = _live_dir(fs, e.parent)
    if parent is None or e.name in parent.entries or e.ino in fs.inodes or e.kind not in KINDS:
        return
    is_dir = e.kind == DIR
    target = e.target if e.kind == SYMLINK else ""
    size = len(target.encode("utf-8", "surrogatepass"))  # never raises, whatever the text
    fs.inodes[e.ino] = Inode(
        ino=e.ino,
        kind=e.kind,
        mode=e.mode,
        nlink=2 if is_dir else 1,
        size=size,
        pending_size=size,
        target=target,
        parent=e.parent,
        name=e.name,
        mtime_ns=ts,
        ctime_ns=ts,
        created_by=e.pid,
        created_seq=seq,
        group=e.group,
    )
    if e.group:
        fs.files_of[e.group] = fs.files_of.get(e.group, 0) + 1
    parent.entries[e.name] = e.ino
    parent.nlink += int(is_dir)  # the new directory's ".."
    _touch(parent, ts)


def _opened(fs: FileSystem, seq: int, ts: int, e: ev.VfsOpened) -> None:
    if e.mount:  # a file on a mounted file system: no inode here, only the fd
        if seq not in fs.files:
            _close(fs, e.pid, e.fd)
            fs.files[seq] = OpenFile(id=seq, pid=e.pid, ino=0, flags=e.flags, mount=e.mount, path=e.path)
            fs.fds.setdefault(e.pid, {})[e.fd] = seq
        return
    if e.ino not in fs.inodes or seq in fs.files:
        return
    _close(fs, e.pid, e.fd)  # never emitted over an open fd; if it were, that fd is replaced
    node = fs.inodes.get(e.ino)
    if node is None:
        return  # that close freed it (an fd reopened over its own unlinked file)
    fs.files[seq] = OpenFile(id=seq, pid=e.pid, ino=e.ino, flags=e.flags, offset=e.offset)
    fs.fds.setdefault(e.pid, {})[e.fd] = seq
    node.opens += 1


def _closed(fs: FileSystem, seq: int, ts: int, e: ev.VfsClosed) -> None:
    _close(fs, e.pid, e.fd)


def _dup(fs: FileSystem, seq: int, ts: int, e: ev.VfsDup) -> None:
    f = fs.open_file(e.pid, e.fd)
    if f is None or e.new_fd == e.fd:
        return
    _close(fs, e.pid, e.new_fd)
    fs.fds.setdefault(e.pid, {})[e.new_fd] = f.id
    f.refs += 1


def _wrote(fs: FileSystem, seq: int, ts: int, e: ev.VfsWrote) -> None:
    node = fs.inodes.get(e.ino)
    if node is None or node.kind != FILE:
        return
    node.pending.append(PendingWrite(e.offset, e.data, e.length))
    node.pending_size = e.size
    _touch(node, ts)
    f = fs.open_file(e.pid, e.fd)
    if f is not None and f.ino == e.ino:
        f.offset = e.pos


def _offset(fs: FileSystem, seq: int, ts: int, e: ev.VfsOffset) -> None:
    f = fs.open_file(e.pid, e.fd)
    if f is not None:
        f.offset = e.offset


def _truncated(fs: FileSystem, seq: int, ts: int, e: ev.VfsTruncated) -> None:
    node = fs.inodes.get(e.ino)
    if node is None or node.kind != FILE:
        return
    node.pending.append(PendingWrite(e.size, "", 0))
    node.pending_size = e.size
    _touch(node, ts)


def _version(fs: FileSystem, seq: int, ts: int, e: ev.VfsVersion) -> None:
    node = fs.inodes.get(e.ino)
    if node is None or node.kind != FILE:
        return
    if not node.pending:  # a version with no writes behind it (a restore) changes the content now
        node.mtime_ns = ts
    node.manifest, node.size, node.pending_size = e.manifest, e.size, e.size
    node.pending, node.version_seq, node.ctime_ns = [], seq, ts


def _unlinked(fs: FileSystem, seq: int, ts: int, e: ev.VfsUnlinked) -> None:
    parent = fs.inodes.get(e.parent)
    if parent is None or parent.entries.get(e.name) != e.ino or fs.inodes[e.ino].kind == DIR:
        return
    _remove_name(fs, parent, e.name, ts)


def _rmdir(fs: FileSystem, seq: int, ts: int, e: ev.VfsRmdir) -> None:
    parent = fs.inodes.get(e.parent)
    if parent is None or parent.entries.get(e.name) != e.ino:
        return
    node = fs.inodes[e.ino]
    if node.kind != DIR or node.entries:
        return  # ENOTDIR / ENOTEMPTY: the handler never emits it
    _remove_name(fs, parent, e.name, ts)


def _linked(fs: FileSystem, seq: int, ts: int, e: ev.VfsLinked) -> None:
    parent = _live_dir(fs, e.parent)
    node = fs.inodes.get(e.ino)
    if parent is None or node is None or node.kind == DIR or e.name in parent.entries:
        return
    parent.entries[e.name] = e.ino
    node.nlink += 1
    node.parent, node.name, node.ctime_ns = e.parent, e.name, ts
    _touch(parent, ts)


def _renamed(fs: FileSystem, seq: int, ts: int, e: ev.VfsRenamed) -> None:
    src, dst = fs.inodes.get(e.parent), _live_dir(fs, e.new_parent)
    if src is None or dst is None or src.entries.get(e.name) != e.ino:
        return
    node = fs.inodes[e.ino]
    old = dst.entries.get(e.new_name)
    if old == e.ino:
        return  # the same name, or two links to one file: POSIX does nothing
    is_dir = node.kind == DIR
    if is_dir and _within(fs, dst.ino, e.ino):
        return  # into itself
    if old is not None:
        victim = fs.inodes[old]
        if (victim.kind == DIR) != is_dir or (is_dir and victim.entries):
            return  # EISDIR / ENOTDIR / ENOTEMPTY
        _remove_name(fs, dst, e.new_name, ts)
    del src.entries[e.name]
    dst.entries[e.new_name] = e.ino
    if is_dir:  # its ".." moves
        src.nlink -= 1
        dst.nlink += 1
    node.parent, node.name, node.ctime_ns = dst.ino, e.new_name, ts
    _touch(src, ts)
    _touch(dst, ts)


def _chmod(fs: FileSystem, seq: int, ts: int, e: ev.VfsChmod) -> None:
    node = fs.inodes.get(e.ino)
    if node is not None:
        node.mode, node.ctime_ns = e.mode, ts


def _mounted(fs: FileSystem, seq: int, ts: int, e: ev.VfsMounted) -> None:
    if e.path not in fs.mounts:  # one file system per mount point: unmount first
        fs.mounts[e.path] = Mount(kind=e.kind, source=e.source, readonly=e.readonly, pid=e.pid)


def _unmounted(fs: FileSystem, seq: int, ts: int, e: ev.VfsUnmounted) -> None:
    fs.mounts.pop(e.path, None)


def _host_wrote(fs: FileSystem, seq: int, ts: int, e: ev.VfsHostWrote) -> None:
    f = fs.open_file(e.pid, e.fd)
    if f is not None and f.mount:
        f.pending.append(PendingWrite(e.offset, e.data, e.length))


def _host_change(fs: FileSystem, seq: int, ts: int, e: ev.VfsHostChange) -> None:
    f = fs.files.get(e.file)
    if f is not None:
        f.pending = []
    fs.host_unmade[seq] = HostIntent(
        mount=e.mount, path=e.path, op=e.op, pid=e.pid, before=e.before, after=e.after, to=e.to
    )


def _host_done(fs: FileSystem, seq: int, ts: int, e: ev.VfsHostDone) -> None:
    fs.host_unmade.pop(e.change, None)


def _reaped(fs: FileSystem, seq: int, ts: int, e: ev.ProcReaped) -> None:
    """A reaped process's files are closed (the kernel cuts their versions at exit; this frees)."""
    for fd in sorted(fs.fds.get(e.pid, {})):
        _close(fs, e.pid, fd)


VFS_APPLY: dict[type, Callable[[FileSystem, int, int, Any], None]] = {
    ev.VfsMkfs: _mkfs,
    ev.VfsCreated: _created,
    ev.VfsOpened: _opened,
    ev.VfsClosed: _closed,
    ev.VfsDup: _dup,
    ev.VfsWrote: _wrote,
    ev.VfsOffset: _offset,
    ev.VfsTruncated: _truncated,
    ev.VfsVersion: _version,
    ev.VfsUnlinked: _unlinked,
    ev.VfsRmdir: _rmdir,
    ev.VfsLinked: _linked,
    ev.VfsRenamed: _renamed,
    ev.VfsChmod: _chmod,
    ev.VfsMounted: _mounted,
    ev.VfsUnmounted: _unmounted,
    ev.VfsHostWrote: _host_wrote,
    ev.VfsHostChange: _host_change,
    ev.VfsHostDone: _host_done,
    ev.ProcReaped: _reaped,
}
