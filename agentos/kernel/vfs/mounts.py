"""The mount table, and the routing of path and fd calls to the file system that serves them.

The table has two parts:

- the kernel's own mounts, :data:`BUILTIN` — ``/dev``, ``/proc`` and the private ``/tmp`` — always
  there, in every home from its first boot on, as much part of the kernel as its syscalls. They
  hold no world data (devices, generated text, memory thrown away at exit), so a rewind or a
  rebuild has nothing of theirs to see, and they are not state;
- the world's, ``FileSystem.mounts`` (``vfs.mounted`` / ``vfs.unmounted`` events): what a person
  mounts (host directories, served by a kind registered in :data:`KINDS`) is state, so rewinds and
  rebuilds see it.

Routing is by path components — the longest mount point that is the (lexically normalised) path
or a directory above it (``/procx`` is not ``/proc``); everything else is the versioned tree.
``readdir`` of a world directory shows the mount points in it. A rename across file systems is
EXDEV; what a kind does not allow is EROFS (or EBUSY for a mount point itself).

fds: a mounted file's fd is in the process's fd table like any (lowest free from 3,
``sysfile.MAX_FDS``, ``dup``, ``close``, closed at exit), recorded by ``vfs.opened`` with its
``mount`` and ``path`` (ino 0); offsets move by ``vfs.offset`` as a world file's. The kernel keeps
a runtime :class:`~agentos.kernel.vfs.mountfs.Handle` per open file, made at the open (a
``Kernel.watch`` on ``vfs.opened``) and re-made on first use after a restart — so an in-kernel
agent resumed by replay keeps using its fd on ``/dev/null``; a private /tmp's fd then answers
EBADF (its memory went with the kernel).

Transactions (``fs_transaction``) change the versioned tree only: a path under a mount in one is
EXDEV (the transaction's view of the kernel is told apart from the kernel itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentos import param
from agentos.errors import AgentOSError, InvalidArgument
from agentos.kernel import fsaccess, sysfile
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.vfs import devfs, hostmount, procfs, tmpfs
from agentos.kernel.vfs.mountfs import BUILTIN, Handle, Lost, MountFS, Routed
from agentos.state import events as ev
from agentos.state.vfs import APPEND, READ, WRITE, Mount, OpenFile

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

KINDS: dict[str, Callable[[Kernel, str, Mount], MountFS]] = {  # world mounts' kinds: (kernel, point, mount)
    hostmount.KIND: hostmount.HostFS,
}
SHARED = "shared"  # the shared, versioned scratch directory under "/" (mode 1777)
WATCHED = frozenset({ev.VfsOpened, ev.VfsClosed, ev.ProcReaped, ev.ProcExited})


class Mounts:
    """The kernel's runtime side of the mount layer: file system instances and open files' handles."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.dev = devfs.DevFS()
        self.proc = procfs.ProcFS(self)
        self.tmps: dict[int, tmpfs.TmpFS] = {}  # pid -> its private /tmp, made at its first use
        self.world: dict[str, tuple[Mount, MountFS]] = {}  # point -> an instance of a world mount
        self.handles: dict[int, tuple[int, Handle]] = {}  # open file id -> (pid, handle)
        k.watch(WATCHED, self.on_event)

    @staticmethod
    def builtin() -> list[tuple[str, str]]:
        return sorted(BUILTIN.items())

    def point_of(self, path: str) -> str | None:
        """The mount point serving normalised ``path``, None for the versioned tree."""
        table = self.k.state.world.vfs.mounts
        if not table:  # the kernel's own mounts only: they are all directly under "/"
            end = path.find("/", 1)
            head = path if end < 0 else path[:end]
            return head if head in BUILTIN else None
        while path != "/":
            if path in BUILTIN or path in table:
                return path
            path = path.rpartition("/")[0] or "/"
        return None

    def fs_at(self, point: str, pid: int) -> MountFS:
        kind = BUILTIN.get(point)
        if kind == "dev":
            return self.dev
        if kind == "proc":
            return self.proc
        if kind == "tmp":
            tmp = self.tmps.get(pid)
            if tmp is None:
                tmp = self.tmps[pid] = tmpfs.TmpFS(self.k, pid)
            return tmp
        mount = self.k.state.world.vfs.mounts[point]
        made = self.world.get(point)
        if made is None or made[0] is not mount:
            make = KINDS.get(mount.kind)
            made = self.world[point] = (mount, make(self.k, point, mount) if make else MountFS())
        return made[1]

    def root_of(self, pid: int) -> str:
        """The directory ``pid`` sees as "/" ("" for the real root: ``view.py``)."""
        p = self.k.state.world.procs.get(pid)
        return p.root if p is not None else ""

    def points_in(self, directory: str) -> set[str]:
        """The names of the mount points directly in normalised ``directory``."""
        out = set()
        for point in (*BUILTIN, *self.k.state.world.vfs.mounts):
            head, _, name = point.rpartition("/")
            if (head or "/") == directory:
                out.add(name)
        return out

    # -- open files' handles ---------------------------------------------------------------------------

    def handle_of(self, f: OpenFile, *, fresh: bool = False) -> Handle:
        held = self.handles.get(f.id)
        if held is not None:
            return held[1]
        if self.point_of(f.mount) != f.mount:
            h: Handle = Lost(f"{f.mount} is no longer mounted")
        else:
            try:
                h = self.fs_at(f.mount, f.pid).handle(self.k, f, fresh=fresh)
            except AgentOSError as err:
                h = Lost(f"{f.mount}{f.path}: {err.message}")
        self.handles[f.id] = (f.pid, h)
        return h

    def on_event(self, seq: int, e: ev.Payload) -> None:
        if isinstance(e, ev.VfsOpened):
            f = self.k.state.world.vfs.files.get(seq) if e.mount else None
            if f is not None:
                self.handle_of(f, fresh=True)  # a /proc file's content is made now, at its open
            return
        if self.handles and isinstance(e, ev.VfsClosed | ev.ProcReaped | ev.ProcExited):
            self._prune(e.pid)
        if isinstance(e, ev.ProcExited):
            tmp = self.tmps.pop(e.pid, None)
            if tmp is not None:
                tmp.gone = True
                self.k.quotas.release(e.pid)

    def rewound(self) -> None:
        """The world was replaced (``timeline.py``): drop the /tmps and handles it no longer has."""
        procs = self.k.state.world.procs
        for pid in [pid for pid in self.tmps if (p := procs.get(pid)) is None or not p.alive]:
            self.tmps.pop(pid).gone = True
        for pid in {owner for owner, _ in self.handles.values()}:
            self._prune(pid)

    def _prune(self, pid: int) -> None:
        """Release the handles of ``pid``'s open files that have closed."""
        files = self.k.state.world.vfs.files
        for fid, (owner, h) in list(self.handles.items()):
            if owner == pid and fid not in files:
                del self.handles[fid]
                h.release()


# -- what the handlers call: a line each --------------------------------------------------------------------


def route(k: Kernel, c: Caller, path: str, *, follow: bool = True) -> Routed | None:
    """The mounted file system serving ``path``, None when it is in the versioned tree. Routed on
    its physical path (``fsaccess.canonical``, as its capability is checked: a world symlink may
    lead into a mount); ``follow``: whether a final symlink is followed (not by mkdir, unlink,
    rmdir, rename, which act on the name itself)."""
    m: Mounts = k.mounts
    norm = fsaccess.canonical(k, path, follow=follow)
    point = m.point_of(norm)
    if point is None:
        return None
    if k is not m.k:  # a transaction's view of the kernel
        raise InvalidArgument(f"{path}: only the versioned tree is in this view, not {point}", code="EXDEV")
    return Routed(k, c, m.fs_at(point, c.pid), point, norm[len(point) :] or "/", path)


def rename(k: Kernel, c: Caller, src: str, dst: str) -> Done | None:
    """A rename on a mounted file system (both ends on the same one, else EXDEV); None: the world's."""
    s, d = route(k, c, src, follow=False), route(k, c, dst, follow=False)
    if s is None and d is None:
        return None
    if s is None or d is None or s.fs is not d.fs:
        raise InvalidArgument(f"cannot rename {src} to {dst}: not on the same file system", code="EXDEV")
    return s.fs.rename(s, d)


def listing(k: Kernel, c: Caller, path: str, names: list[str]) -> list[str]:
    """A world directory's names with the mount points in it (a rooted process's root: its own)."""
    norm = sysfile.fs_path(path)
    points = k.mounts.points_in(norm)
    if c.kind == "agent" and norm != "/" and norm == k.mounts.root_of(c.pid):
        points |= {point[1:] for point in BUILTIN}
    return sorted(points.union(names)) if points else names


def fd(k: Kernel, c: Caller, fd: int) -> MountedFd | None:
    """The caller's ``fd`` when it is on a mounted file system, else None."""
    f = k.state.world.vfs.open_file(c.pid, fd)
    if f is None or not f.mount:
        return None
    return MountedFd(k, c, fd, f, k.mounts.handle_of(f))


@dataclass(slots=True)
class MountedFd:
    """The fd calls on a mounted file: offsets and modes as a world file's, bytes from its handle."""

    k: Kernel
    c: Caller
    fd: int
    f: OpenFile
    h: Handle

    def _need(self, bit: int) -> None:
        if not self.f.flags & bit:
            raise sysfile.bad_fd(self.fd, f"is not open for {'reading' if bit == READ else 'writing'}")

    def _moved(self, offset: int) -> list[ev.Payload]:
        if not self.h.seekable or offset == self.f.offset:
            return []
        return [ev.VfsOffset(pid=self.c.pid, fd=self.fd, offset=offset)]

    def read(self, n: int) -> Done:
        self._need(READ)
        data = self.h.read(self.f.offset, n)
        return Done(data, self._moved(self.f.offset + len(data)))

    def write(self, data: bytes) -> Done:
        self._need(WRITE)
        if not data:
            return Done(0)
        offset = self.h.size() if self.f.flags & APPEND else self.f.offset
        n, events, blobs = self.h.write(self.c, offset, data)
        return Done(n, [*events, *self._moved(offset + n)], blobs)

    def seek(self, offset: int, whence: str) -> Done:
        if not self.h.seekable:
            return Done(0)
        to = offset + (self.h.size() if whence == "end" else self.f.offset if whence == "cur" else 0)
        if to < 0 or to > param.MAX_FILE_BYTES:
            raise InvalidArgument(f"seek to {to}: out of range (0 to {param.MAX_FILE_BYTES})")
        return Done(to, self._moved(to))

    def fsync(self) -> Done | Block:
        self.h.sync()
        events, blobs = hostmount.publish(self.k, self.c, self.f, self.h, "fsync")
        return hostmount.wait_for_change(self.k, "fsync", events, blobs) if events else Done(None)

    def close(self) -> Done | Block:
        events, blobs = hostmount.publish(self.k, self.c, self.f, self.h, "close")
        closed = ev.VfsClosed(pid=self.c.pid, fd=self.fd)
        if events:  # a host file's writes: closed now, answered once they are on the host
            return hostmount.wait_for_change(self.k, "close", [*events, closed], blobs)
        return Done(None, [closed])


def first_tree(k: Kernel) -> list[ev.Payload]:
    """At boot: "/" and the shared, versioned scratch directory "/shared" (mode 1777). A home from
    before mounts had that directory at "/tmp", now the private /tmp's mount point: it is renamed."""
    fs, next_ino = k.state.world.vfs, k.state.ledger.next_ino
    if fs.root == 0:
        return [
            ev.VfsMkfs(ino=next_ino),
            ev.VfsCreated(
                parent=next_ino, name=SHARED, ino=next_ino + 1, kind="dir", mode=0o1777, pid=param.KERNEL_PID
            ),
        ]
    root = fs.inodes[fs.root]
    if SHARED in root.entries:
        return []
    old = root.entries.get("tmp")
    if old is not None and fs.inodes[old].kind == "dir":
        return [
            ev.VfsRenamed(
                parent=fs.root, name="tmp", new_parent=fs.root, new_name=SHARED, ino=old, pid=param.KERNEL_PID
            )
        ]
    return [
        ev.VfsCreated(
            parent=fs.root, name=SHARED, ino=next_ino, kind="dir", mode=0o1777, pid=param.KERNEL_PID
        )
    ]
