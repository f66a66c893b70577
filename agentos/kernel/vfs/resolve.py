"""Resolution beneath a host mount's root: openat2 with RESOLVE_BENEATH and friends, or an fd-relative
walk that reads symlinks itself; every file found is fstat-checked before it is used."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable

from agentos.errors import (
    InvalidArgument,
    PermissionDenied,
)
from agentos.kernel.vfs.hostpath import (
    _escape,
    _hop,
    _kind,
    _oserror,
    _Path,
    _read_all,
    _Swapped,
    _target_parts,
    _write_all,
)
from agentos.kernel.vfs.openat2 import _O_PATH, _RACE_TRIES, CONFINED, _mnt_id, openat2


class Resolution:
    """Path resolution beneath a mount's root fd (openat2, or the user-space walk) and the checks on
    what it finds: the machinery under ``HostMount``'s public operations."""

    _fd: int
    root: str
    read_only: bool
    uses_openat2: bool
    _proc_reopen: bool
    _dev: int
    _mnt: int | None

    def _root(self) -> int:
        if self._fd < 0:
            raise InvalidArgument(f"the host mount of {self.root!r} is closed", code="EBADF")
        return self._fd

    def _writable(self, op: str, p: _Path) -> None:
        if self.read_only:
            raise PermissionDenied(f"{op} {p.shown!r}: the host mount is read-only", code="EROFS")

    def _walk(self, parts: tuple[bytes, ...] | list[bytes], *, follow: bool, want_dir: bool) -> int:
        """An ``O_PATH`` fd for ``parts`` resolved beneath the root (raises OSError)."""
        root = self._root()
        if not self.uses_openat2:
            return self._walk_fallback(root, list(parts), follow=follow, want_dir=want_dir)
        flags = _O_PATH | (0 if follow else os.O_NOFOLLOW) | (os.O_DIRECTORY if want_dir else 0)
        path = b"/".join(parts) or b"."
        for _ in range(_RACE_TRIES):
            try:
                return openat2(root, path, flags, 0, CONFINED)
            except OSError as err:
                if err.errno != errno.EAGAIN:  # EAGAIN: a rename raced a "..": look up again
                    raise
        raise _oserror(errno.EAGAIN, "the path kept changing while it was looked up")

    def _walk_fallback(self, root: int, parts: list[bytes], *, follow: bool, want_dir: bool) -> int:
        """The user-space ``RESOLVE_BENEATH``: component by component, symlinks read, never followed."""
        stack = [root]  # directory fds from the root to where the walk is: ".." pops
        todo = parts[::-1]
        hops = retries = 0
        try:
            while todo:
                name = todo.pop()
                if name == b".":
                    continue
                if name == b"..":
                    if len(stack) == 1:
                        raise _escape("'..' leads above the mount root")
                    os.close(stack.pop())
                    continue
                last = not todo
                flags = _O_PATH | os.O_NOFOLLOW | (os.O_DIRECTORY if want_dir or not last else 0)
                try:
                    fd = os.open(name, flags, dir_fd=stack[-1])
                except OSError as err:
                    if err.errno != errno.ENOTDIR or (last and not follow):
                        raise
                    # not a directory: a symlink to read and resolve, or just not a directory
                    try:
                        target = os.readlink(name, dir_fd=stack[-1])
                    except OSError as again:
                        if again.errno != errno.EINVAL:
                            raise
                        mode = os.stat(name, dir_fd=stack[-1], follow_symlinks=False).st_mode
                        if not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                            raise err from None
                        retries += 1  # it is being swapped between a directory and a symlink: again
                        if retries > _RACE_TRIES:
                            raise _oserror(
                                errno.EAGAIN, "the path kept changing while it was looked up"
                            ) from None
                        todo.append(name)
                        continue
                    hops = _hop(hops)
                    todo.extend(reversed(_target_parts(target)))
                    continue
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and follow:  # a final symlink (O_PATH|O_NOFOLLOW opens the link)
                    try:
                        target = os.readlink(b"", dir_fd=fd)
                    finally:
                        os.close(fd)
                    hops = _hop(hops)
                    todo.extend(reversed(_target_parts(target)))
                    continue
                if not stat.S_ISLNK(st.st_mode) and not self._same_mount(fd, st):
                    os.close(fd)
                    raise _escape("another filesystem is mounted there; a host mount does not cross into it")
                stack.append(fd)
            return stack.pop() if len(stack) > 1 else os.dup(root)
        finally:
            for fd in stack[1:]:
                os.close(fd)

    def _same_mount(self, fd: int, st: os.stat_result) -> bool:
        if st.st_dev != self._dev:
            return False
        return self._mnt is None or _mnt_id(fd) == self._mnt

    def _entry(self, pfd: int, name: bytes) -> int:
        """An ``O_PATH|O_NOFOLLOW`` fd of the entry ``name`` in the directory ``pfd``, not crossing mounts."""
        if self.uses_openat2:
            return openat2(pfd, name, _O_PATH | os.O_NOFOLLOW, 0, CONFINED)
        fd = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=pfd)
        st = os.fstat(fd)
        if not stat.S_ISLNK(st.st_mode) and not self._same_mount(fd, st):
            os.close(fd)
            raise _escape("another filesystem is mounted there; a host mount does not cross into it")
        return fd

    def _locate(self, p: _Path, *, follow: bool, op: str) -> tuple[int, bytes]:
        """(directory fd, name) of the entry ``p`` names; with ``follow``, of a final symlink's target.

        The directory is resolved beneath the root; the name is a plain name; the caller closes the fd.
        """
        if not p.parts:
            raise InvalidArgument(f"{op} {p.shown!r}: not possible on the mount root itself")
        if p.last in (b".", b".."):
            raise InvalidArgument(
                f"{op} {p.shown!r}: the path must end in a name, not {os.fsdecode(p.last)!r}"
            )
        dirs, name = list(p.parts[:-1]), p.parts[-1]
        hops = 0
        while True:
            pfd = self._walk(dirs, follow=True, want_dir=True)
            if not follow:
                return pfd, name
            try:
                target = os.readlink(name, dir_fd=pfd)
            except OSError as err:
                if err.errno in (errno.EINVAL, errno.ENOENT):  # not a symlink, or nothing there yet
                    return pfd, name
                os.close(pfd)
                raise
            os.close(pfd)
            hops = _hop(hops)
            whole = dirs + _target_parts(target)
            if not whole or whole[-1] == b"..":
                raise _oserror(errno.EISDIR)
            dirs, name = whole[:-1], whole[-1]

    # -- opening and checking ---------------------------------------------------------------------

    def _check(self, fd: int, p: _Path, op: str) -> os.stat_result:
        """Refuse content access to anything but a directory or a singly linked regular file here."""
        st = os.fstat(fd)
        if st.st_dev != self._dev:
            raise _escape("another filesystem is mounted there; a host mount does not cross into it")
        if stat.S_ISDIR(st.st_mode):
            return st
        if stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                raise PermissionDenied(
                    f"{op} {p.shown!r}: the file has {st.st_nlink} hard links, and a hard link can alias "
                    "a file outside the mount",
                    code="EACCES",
                )
            return st
        if stat.S_ISLNK(st.st_mode):
            raise _oserror(errno.ELOOP, "is a symbolic link (O_NOFOLLOW)")
        raise PermissionDenied(
            f"{op} {p.shown!r}: is a {_kind(st.st_mode)}; only regular files and directories can be opened "
            "through a host mount",
            code="EACCES",
        )

    def _open(self, p: _Path, flags: int, mode: int, op: str, *, file_only: bool = False) -> int:
        excl = flags & os.O_CREAT and flags & os.O_EXCL  # never follows a final symlink: EEXIST
        follow = not flags & os.O_NOFOLLOW and not excl
        want_dir = bool(flags & os.O_DIRECTORY) or p.dir_only
        for _ in range(_RACE_TRIES):
            try:
                ofd = self._walk(p.parts, follow=follow, want_dir=want_dir)
            except OSError as err:
                if err.errno != errno.ENOENT or not flags & os.O_CREAT or want_dir:
                    raise
                fd = self._create(p, flags, mode, follow, op)
                if fd is None:  # created by someone else meanwhile: open that
                    continue
                return fd
            try:
                if excl:
                    raise _oserror(errno.EEXIST)
                st = self._check(ofd, p, op)
                if file_only and stat.S_ISDIR(st.st_mode):
                    raise _oserror(errno.EISDIR)
                fd = self._reopen(ofd, st, flags, lambda: self._locate(p, follow=follow, op=op))
                if fd is not None:
                    return fd
            finally:
                os.close(ofd)
        raise _oserror(errno.EAGAIN, "the file kept changing while it was opened")

    def _create(self, p: _Path, flags: int, mode: int, follow: bool, op: str) -> int | None:
        """Create ``p`` (``O_EXCL``, never following the final name); None if it appeared meanwhile."""
        excl = bool(flags & os.O_EXCL)
        pfd, name = self._locate(p, follow=follow and not excl, op=op)
        try:
            fd = os.open(
                name, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd
            )
        except OSError as err:
            if err.errno == errno.EEXIST and not excl:
                return None
            raise
        finally:
            os.close(pfd)
        try:
            self._check(fd, p, op)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _reopen(
        self, ofd: int, st: os.stat_result, flags: int, locate: Callable[[], tuple[int, bytes]]
    ) -> int | None:
        """Open the checked ``O_PATH`` fd for real; None if (without /proc) the name holds another file."""
        flags = (flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)) | os.O_CLOEXEC
        if stat.S_ISDIR(st.st_mode):
            return os.open(".", flags, dir_fd=ofd)  # a directory reopens itself: no name, no race
        if self._proc_reopen:
            fd = os.open(f"/proc/self/fd/{ofd}", flags)
        else:  # by name again: non-blocking, not truncating, until it is known to be the file checked
            pfd, name = locate()
            try:
                fd = os.open(
                    name, (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=pfd
                )
            finally:
                os.close(pfd)
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)
                return None
            if not self._proc_reopen:
                if not flags & os.O_NONBLOCK:
                    os.set_blocking(fd, True)
                if flags & os.O_TRUNC:
                    os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _previous(
        self, pfd: int, name: bytes, p: _Path, op: str, *, any_kind: bool = False
    ) -> tuple[bytes | None, os.stat_result | None]:
        """What a write to ``name`` in ``pfd`` would destroy: (content of a regular file or None, its lstat).

        Without ``any_kind`` only a regular file (or nothing) may be there. Raises ``_Swapped`` when a
        symlink appeared where the lookup had found none.
        """
        try:
            efd = self._entry(pfd, name)
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None, None
            raise
        try:
            st = os.fstat(efd)
            if not stat.S_ISREG(st.st_mode):
                if any_kind:
                    return None, st
                if stat.S_ISLNK(st.st_mode):
                    raise _Swapped()
                if stat.S_ISDIR(st.st_mode):
                    raise _oserror(errno.EISDIR)
            self._check(efd, p, op)
            fd = self._reopen(efd, st, os.O_RDONLY, lambda: (os.dup(pfd), name))
            if fd is None:
                raise _Swapped()
            try:
                return _read_all(fd), st
            finally:
                os.close(fd)
        finally:
            os.close(efd)

    def _replace(self, pfd: int, name: bytes, data: bytes, old: os.stat_result | None) -> None:
        """Atomically make ``name`` in ``pfd`` a regular file holding ``data`` (temp file, fsync, rename)."""
        tmp = b".agentos-" + secrets.token_hex(8).encode() + b".tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=pfd
        )
        try:
            try:
                if old is not None:
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
                    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                        with contextlib.suppress(PermissionError):
                            os.fchown(fd, old.st_uid, old.st_gid)
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=pfd)
            raise
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
