"""sys_* handlers for the calls that change what a name is or says rather than what a file holds:
``link``, ``symlink``, ``readlink``, ``chmod``, ``truncate`` (``docs/vfs.md``).

Each reads state and returns ``Done(result, events, blobs)``; it mutates nothing. Their rows check
``fs:<physical path>`` (``kernel/fsaccess.py``): ``link`` needs ``write`` on both names — a hard
link lets writes through the new name change the file — so the handler checks ``dst`` as the row
checked ``src``; ``symlink`` needs ``write`` where the link goes, and its target is any text, not
resolved now (a capability is checked on where it leads each time it is used).

``truncate`` by path is a whole change: its version is cut at once (as a transaction's write),
its new chunk bytes checked against ``stored_bytes`` first; ``ftruncate`` on an fd is pending until
close, as a write is (``sysfd.py``). These calls work on the versioned tree: a path on a mounted file
system is EPERM (a link across file systems EXDEV).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentos import param
from agentos.abi import syscalls as sc
from agentos.errors import InvalidArgument, NotFound, PermissionDenied
from agentos.kernel import fsaccess
from agentos.kernel.calls import Caller, Done
from agentos.kernel.filedata import cut_version
from agentos.kernel.fsaccess import W
from agentos.kernel.sysfile import free_name, lookup_entry, paths
from agentos.kernel.vfs import mounts
from agentos.state import events as ev
from agentos.state.vfs import DIR, FILE, SYMLINK, Inode, PendingWrite

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def _tree_only(k: Kernel, c: Caller, call: str, *paths_given: str) -> None:
    """EPERM for a path on a mounted file system (EXDEV when only one end of a link is)."""
    routed = [mounts.route(k, c, p) for p in paths_given]
    if all(r is None for r in routed):
        return
    if any(r is None for r in routed) or len({id(r.fs) for r in routed if r is not None}) > 1:
        raise InvalidArgument(
            f"{call}: {' and '.join(paths_given)} are on different file systems", code="EXDEV"
        )
    point = next(r.point for r in routed if r is not None)
    raise PermissionDenied(f"{call} is not supported on the file system mounted at {point}", code="EPERM")


def _file(k: Kernel, path: str) -> Inode:
    """The inode ``path`` names, following symlinks."""
    fs = k.state.world.vfs
    with paths():
        return fs.inodes[fs.resolve(path)]


def sys_link(k: Kernel, c: Caller, a: sc.LinkArgs) -> Done:
    fsaccess.authorise(k, c, "link", a.dst, "write", follow=False)  # the row checked src
    _tree_only(k, c, "link", a.src, a.dst)
    fs = k.state.world.vfs
    _, _, node = lookup_entry(fs, a.src)
    if node.kind == DIR:
        raise PermissionDenied(f"{a.src} is a directory: directories cannot be hard-linked", code="EPERM")
    if a.src.endswith("/") or a.dst.endswith("/"):
        raise InvalidArgument(f"{a.src} is not a directory", code="ENOTDIR")
    holder, name = free_name(fs, a.dst)
    fsaccess.need(c, holder, W, f"{a.dst}: its directory")
    return Done(None, [ev.VfsLinked(parent=holder.ino, name=name, ino=node.ino, pid=c.pid)])


def sys_symlink(k: Kernel, c: Caller, a: sc.SymlinkArgs) -> Done:
    _tree_only(k, c, "symlink", a.path)
    if a.path.endswith("/"):
        raise NotFound(f"{a.path}: a symlink's name cannot end in /", code="ENOENT")
    holder, name = free_name(k.state.world.vfs, a.path)
    return Done(None, [fsaccess.new_inode(k, c, a.path, holder, name, SYMLINK, 0o777, target=a.target)])


def sys_readlink(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    fs = k.state.world.vfs
    if mounts.route(k, c, a.path) is None:
        with paths():
            node = fs.inodes[fs.resolve(a.path, follow=False)]
        if node.kind == SYMLINK:
            return Done(node.target)
    raise InvalidArgument(f"{a.path} is not a symlink", code="EINVAL")


def sys_chmod(k: Kernel, c: Caller, a: sc.ChmodArgs) -> Done:
    """Set a file's or directory's mode (a symlink's target's: symlinks have no mode of their own)."""
    _tree_only(k, c, "chmod", a.path)
    node = _file(k, a.path)
    return Done(None, [ev.VfsChmod(ino=node.ino, mode=a.mode, pid=c.pid)])


def sys_truncate(k: Kernel, c: Caller, a: sc.TruncateArgs) -> Done:
    """Set the size of the file at ``path`` (growing reads as zeros) and cut its version now."""
    _tree_only(k, c, "truncate", a.path)
    node = _file(k, a.path)
    if node.kind == DIR:
        raise InvalidArgument(f"{a.path} is a directory", code="EISDIR")
    if node.kind != FILE:
        raise InvalidArgument(f"{a.path} is a {node.kind}, not a file")
    if a.size > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
    fsaccess.need(c, node, W, a.path)
    if a.size == node.pending_size:
        return Done(None)  # no change (POSIX leaves even the times alone)
    h, blobs, _ = cut_version(k, node, [PendingWrite(a.size, "", 0)])  # the pending changes, then the cut
    stored = sum(len(b) for b in blobs.values())
    if c.confined:
        k.quotas.check(c.pid, {"stored_bytes": stored})
    cut = ev.VfsVersion(ino=node.ino, manifest=h, size=a.size, pid=c.pid, stored=stored)
    return Done(None, [ev.VfsTruncated(ino=node.ino, size=a.size, pid=c.pid), cut], blobs)
