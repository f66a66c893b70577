"""What confined host lookups share: typed errors from OSErrors (POSIX codes, mount-relative
paths in messages), path parsing and checks, and whole-file read/write on fds."""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple

from agentos.errors import (
    AgentOSError,
    Conflict,
    InternalError,
    InvalidArgument,
    IOFailure,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    WouldBlock,
)
from agentos.kernel.vfs.openat2 import MAX_HOPS, NAME_MAX, PATH_MAX


class _Refused(OSError):
    """An OSError raised by this module itself, whose strerror is the reason to show."""


class _Swapped(_Refused):
    """The entry changed kind between its lookup and its use (EAGAIN): look it up again."""

    def __init__(self) -> None:
        super().__init__(errno.EAGAIN, "the entry changed while it was being used; try again")


def _escape(reason: str) -> _Refused:
    return _Refused(errno.EXDEV, reason)


def _oserror(code: int, reason: str | None = None) -> _Refused:
    return _Refused(code, reason or os.strerror(code))


_REASONS = {
    errno.EXDEV: "leads outside the mount, or onto another filesystem mounted inside it",
    errno.ELOOP: "too many symbolic links, a symlink loop, a /proc magic link, or a symlink under O_NOFOLLOW",
}
_CONFLICT = frozenset(
    {errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY, errno.EBUSY, errno.ETXTBSY}
)
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.EXDEV, errno.ELOOP})


def _typed(err: OSError, op: str, shown: str) -> AgentOSError:
    """The typed error for an OSError of ``op`` on the mount-relative path ``shown``."""
    num = err.errno if isinstance(err.errno, int) else errno.EIO
    code = errno.errorcode.get(num, "EIO")
    if isinstance(err, _Refused):
        reason = err.strerror or os.strerror(num)
    else:
        reason = _REASONS.get(num) or os.strerror(num)
    message = f"{op} {shown!r}: {reason}"
    if num == errno.ENOENT:
        return NotFound(message, code=code)
    if num in _CONFLICT:
        return Conflict(message, code=code)
    if num in _DENIED:
        return PermissionDenied(message, code=code)
    if num in (errno.EINVAL, errno.ENAMETOOLONG):
        return InvalidArgument(message, code=code)
    if num in (errno.ENOSPC, errno.EDQUOT):
        return QuotaExceeded(message, code=code)
    if num == errno.EAGAIN:
        return WouldBlock(message, code=code)
    if num == errno.EBADF:
        return InternalError(message, code=code)
    return IOFailure(message, code=code)


class _as_typed:  # lower case: it reads as a function, ``with _as_typed(op, shown):``
    """Turn any OSError raised inside into the typed error for ``op`` on ``shown`` (cheaper than contextlib)."""

    __slots__ = ("op", "shown")

    def __init__(self, op: str, shown: str) -> None:
        self.op = op
        self.shown = shown

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: object) -> None:
        if isinstance(err, OSError):
            raise _typed(err, self.op, self.shown) from None


class _Path(NamedTuple):
    shown: str  # for messages: "/" + the path as given, without its leading slashes
    parts: tuple[bytes, ...]  # components, "" and "." dropped, ".." kept
    last: bytes  # the last component as written ("" for the root), "." and ".." included
    dir_only: bool  # a trailing slash: the path must name a directory


def _encode(path: object, what: str) -> bytes:
    if not isinstance(path, str):
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str):
            raise InvalidArgument(f"{what} must be a string, not {type(path).__name__}")
    if not path:
        raise InvalidArgument(f"{what} is empty (the mount root is '/')")
    if "\x00" in path:
        raise InvalidArgument(f"{what} {_clip(path)!r} contains a NUL byte")
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} {_clip(path)!r} cannot be encoded for the host filesystem") from None
    if len(raw) > NAME_MAX:
        if len(raw) >= PATH_MAX:
            raise InvalidArgument(
                f"{what} is {len(raw)} bytes long (at most {PATH_MAX - 1})", code="ENAMETOOLONG"
            )
        if any(len(name) > NAME_MAX for name in raw.split(b"/")):
            raise InvalidArgument(
                f"{what} {_clip(path)!r} has a name over {NAME_MAX} bytes", code="ENAMETOOLONG"
            )
    return raw


def _clip(path: str) -> str:
    return path[:200] + ("…" if len(path) > 200 else "")


def _parse(path: object) -> _Path:
    if not isinstance(path, str) and isinstance(path, os.PathLike):
        path = os.fspath(path)
    raw = _encode(path, "path")
    named = [c for c in raw.split(b"/") if c]
    return _Path(
        "/" + path.lstrip("/"),  # type: ignore[union-attr]  # _encode made sure it is a str
        tuple(c for c in named if c != b".") if b"." in named else tuple(named),
        named[-1] if named else b"",
        raw[-1] == 0x2F and bool(named),  # "/"
    )


def _target_parts(target: bytes) -> list[bytes]:
    """The components of a symlink's target, to resolve again beneath the root; absolute is refused."""
    if target.startswith(b"/"):
        raise _escape("a symlink with an absolute target is not followed in a host mount")
    if not target:
        raise _oserror(errno.ENOENT)
    return [c for c in target.split(b"/") if c and c != b"."]


def _hop(hops: int) -> int:
    if hops >= MAX_HOPS:
        raise _oserror(errno.ELOOP, f"more than {MAX_HOPS} symbolic links (a loop?)")
    return hops + 1


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return name
    return f"file of type {stat.S_IFMT(mode):#o}"


def _check_mode(op: str, p: _Path, mode: object) -> None:
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"{op} {p.shown!r}: bad mode {mode!r}")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
