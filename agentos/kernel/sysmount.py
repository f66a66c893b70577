"""sys_* handlers for the mount table: ``mount``, ``umount``, ``mounts`` (admin calls: ``docs/vfs.md``).

A mount is world state (``vfs.mounted``), so a rewind or a rebuild sees it. The mount point is a
normalised absolute path whose parent is a directory in the versioned tree; the point itself is
free or an empty directory there (nothing is hidden beneath a mount), never under another mount,
and never one of the kernel's own (/dev, /proc, /tmp). The source is the host directory's real path,
resolved once here: the mount keeps serving that directory even if a symlink to it is changed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from agentos.abi import syscalls as sc
from agentos.errors import Conflict, InvalidArgument, NotFound
from agentos.kernel import sysfile
from agentos.kernel.calls import Caller, Done
from agentos.kernel.vfs.mountfs import BUILTIN
from agentos.kernel.vfs.mounts import KINDS
from agentos.state import events as ev
from agentos.state.vfs import DIR, lexical

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def _covered(k: Kernel, point: str) -> str | None:
    """The mount (kernel's or world's) ``point`` is at or under, if any."""
    for m in (*BUILTIN, *k.state.world.vfs.mounts):
        if point == m or point.startswith(m + "/"):
            return m
    return None


def sys_mount(k: Kernel, c: Caller, a: sc.MountArgs) -> Done:
    point = lexical(a.path)
    if a.kind not in KINDS:
        raise InvalidArgument(f"unknown file system kind {a.kind!r}")
    if point == "/":
        raise Conflict("/ is the versioned tree; mount below it", code="EBUSY")
    if (m := _covered(k, point)) is not None:
        raise Conflict(
            f"{point} is {'already a mount point' if m == point else f'under the mount {m}'}", code="EBUSY"
        )
    source = os.path.realpath(a.source)
    if not os.path.isdir(source):
        raise NotFound(f"no such host directory: {a.source}", code="ENOENT")
    fs = k.state.world.vfs
    with sysfile.paths():
        parent = fs.resolve(os.path.dirname(point))
    if fs.inodes[parent].kind != DIR:
        raise InvalidArgument(f"{os.path.dirname(point)} is not a directory", code="ENOTDIR")
    existing = fs.inodes[parent].entries.get(os.path.basename(point))
    if existing is not None:
        node = fs.inodes[existing]
        if node.kind != DIR:
            raise InvalidArgument(f"{point} exists and is not a directory", code="ENOTDIR")
        if node.entries:
            raise Conflict(f"{point} is not empty: mounting there would hide its files", code="ENOTEMPTY")
    return Done(
        {"path": point, "source": source, "readonly": a.readonly, "kind": a.kind},
        [ev.VfsMounted(path=point, kind=a.kind, source=source, readonly=a.readonly, pid=c.pid)],
    )


def sys_umount(k: Kernel, c: Caller, a: sc.PathArgs) -> Done:
    point = lexical(a.path)
    fs = k.state.world.vfs
    if point in BUILTIN:
        raise Conflict(f"{point} is the kernel's own mount", code="EBUSY")
    if point not in fs.mounts:
        raise InvalidArgument(f"{point} is not a mount point")
    users = sorted({f.pid for f in fs.files.values() if f.mount == point})
    if users:
        raise Conflict(f"{point} has files open (processes {', '.join(map(str, users))})", code="EBUSY")
    if any(i.mount == point for i in fs.host_unmade.values()):
        raise Conflict(f"{point} has changes still being made", code="EBUSY")
    return Done(None, [ev.VfsUnmounted(path=point)])


def sys_mounts(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    """Every mount: the kernel's own, then the world's, by mount point."""
    rows: list[dict[str, Any]] = [
        {"path": point, "kind": kind, "source": "", "readonly": False, "builtin": True}
        for point, kind in sorted(BUILTIN.items())
    ]
    for point, m in sorted(k.state.world.vfs.mounts.items()):
        rows.append(
            {
                "path": point,
                "kind": m.kind,
                "source": m.source,
                "readonly": m.readonly,
                "builtin": False,
                "by": m.pid,
            }
        )
    return Done(rows)
