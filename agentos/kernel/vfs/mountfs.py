"""What a mounted file system is to the kernel: the calls it answers on paths, and the runtime
handle behind each open file on it. The kinds (``devfs.py``, ``procfs.py``, ``tmpfs.py``, host
mounts later) subclass these; ``mounts.py`` routes paths and fds to them (``docs/vfs.md``, mounts).

Why a handle per open file: a mounted file's bytes are not world state (a device's, a /proc
file's, a private /tmp's, a host file's), so the kernel keeps them at runtime, keyed by the open
file's id; the fd itself (its number, flags and offset) is state like any other, so it survives
what world fds survive. A handle lost with the kernel is re-created on first use where the file
system can (``fresh=False``); a private /tmp cannot, and says so (EBADF).

The path calls return ``Done`` like any handler. A file system held in kernel memory (a private
/tmp) changes that memory in the call itself: it is no state, and no event records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentos.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from agentos.kernel.calls import Caller, Done
from agentos.state import events as ev
from agentos.state.vfs import OpenFile

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

# the kernel's own mounts, every process's at the same place (``mounts.py``): point -> kind
BUILTIN: dict[str, str] = {"/dev": "dev", "/proc": "proc", "/tmp": "tmp"}


@dataclass(slots=True)
class Routed:
    """A path the caller gave, routed to the file system mounted over it."""

    k: Kernel
    c: Caller
    fs: MountFS
    point: str  # the mount point: "/dev"
    path: str  # inside the mount, normalised: "/null" ("/" is its root)
    given: str  # as the caller wrote it (a trailing "/" asks for a directory)

    @property
    def full(self) -> str:
        return self.point if self.path == "/" else self.point + self.path

    @property
    def is_root(self) -> bool:
        return self.path == "/"

    @property
    def wants_dir(self) -> bool:
        return self.given.endswith(("/", "/.", "/.."))


@dataclass(frozen=True, slots=True)
class Open:
    """An ``open`` as ``sys_open`` checked it: the fd it gets, its flags and the fd mode bits."""

    fd: int
    flags: frozenset[str]
    rw: int  # state.vfs.READ | WRITE | APPEND
    mode: int  # of a file it creates


# -- errors, worded once ----------------------------------------------------------------------------------


def readonly(r: Routed) -> PermissionDenied:
    return PermissionDenied(f"{r.full}: {r.fs.kind} is a read-only file system here", code="EROFS")


def missing(r: Routed) -> NotFound:
    return NotFound(f"no such file or directory: {r.full}", code="ENOENT")


def busy(r: Routed) -> Conflict:
    return Conflict(f"{r.full} is a mount point", code="EBUSY")


def exists(r: Routed) -> Conflict:
    return Conflict(f"{r.full} exists", code="EEXIST")


def is_dir(r: Routed, hint: str = "") -> InvalidArgument:
    return InvalidArgument(f"{r.full} is a directory{hint}", code="EISDIR")


def not_dir(r: Routed) -> InvalidArgument:
    return InvalidArgument(f"{r.full} is not a directory", code="ENOTDIR")


def opened(r: Routed, want: Open, path: str | None = None) -> Done:
    """The outcome of a successful open: the fd, recorded in the caller's fd table (state), naming
    the file by ``path`` inside the mount (default: as routed)."""
    return Done(
        want.fd,
        [ev.VfsOpened(pid=r.c.pid, fd=want.fd, ino=0, flags=want.rw, mount=r.point, path=path or r.path)],
    )


def stat_row(
    r: Routed, kind: str, mode: int, *, size: int = 0, ino: int = 0, mtime_ns: int = 0
) -> dict[str, Any]:
    """``stat``'s answer for a mounted file: the world's fields, plus the mount point."""
    return {
        "ino": ino,
        "kind": kind,
        "size": size,
        "mode": mode,
        "nlink": 2 if kind == "dir" else 1,
        "mtime_ns": mtime_ns,
        "version_seq": 0,
        "mount": r.point,
    }


# -- the two interfaces ---------------------------------------------------------------------------------------


class Handle:
    """The runtime side of one open file. Default: empty, seekable, not writable."""

    seekable = True  # False: offsets never move (a device), seek answers 0

    def size(self) -> int:
        return 0

    def read(self, offset: int, n: int) -> bytes:
        return b""

    def write(self, c: Caller, offset: int, data: bytes) -> tuple[int, list[ev.Payload], dict[str, bytes]]:
        """Write ``data`` at ``offset``: (bytes written, events, blobs). Quotas are checked here."""
        raise InvalidArgument("this file cannot be written", code="EBADF")

    def sync(self) -> None:
        """``fsync``: nothing to make durable by default."""

    def release(self) -> None:
        """The open file's last fd closed (or its process ended)."""


class Lost(Handle):
    """A handle that could not be re-created (a private /tmp after a kernel restart): EBADF."""

    def __init__(self, why: str) -> None:
        self.why = why

    def size(self) -> int:
        raise InvalidArgument(self.why, code="EBADF")

    def read(self, offset: int, n: int) -> bytes:
        raise InvalidArgument(self.why, code="EBADF")

    def write(self, c: Caller, offset: int, data: bytes) -> tuple[int, list[ev.Payload], dict[str, bytes]]:
        raise InvalidArgument(self.why, code="EBADF")

    def sync(self) -> None:
        raise InvalidArgument(self.why, code="EBADF")


class MountFS:
    """A file system mounted somewhere. Every call is refused unless a kind answers it."""

    kind = "?"

    def stat(self, r: Routed) -> dict[str, Any]:
        raise missing(r)

    def readdir(self, r: Routed) -> list[str]:
        raise missing(r)

    def open(self, r: Routed, want: Open) -> Done:
        raise missing(r)

    def mkdir(self, r: Routed, mode: int) -> Done:
        raise exists(r) if r.is_root else readonly(r)

    def unlink(self, r: Routed) -> Done:
        raise busy(r) if r.is_root else readonly(r)

    def rmdir(self, r: Routed) -> Done:
        raise busy(r) if r.is_root else readonly(r)

    def rename(self, src: Routed, dst: Routed) -> Done:
        raise busy(src) if src.is_root or dst.is_root else readonly(src)

    def handle(self, k: Kernel, f: OpenFile, *, fresh: bool) -> Handle:
        """The runtime handle of open file ``f``: at its open (``fresh``), or re-created on first
        use after a kernel restart."""
        return Lost(f"fd on {f.mount}{f.path} cannot be used")
