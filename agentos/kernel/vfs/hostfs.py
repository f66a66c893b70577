"""Host mounts: a host directory that an agent reaches only beneath its root, resolved from a directory fd.

``HostMount(root)`` opens the root once (``O_PATH|O_DIRECTORY``) and resolves every path given to it
from that fd — never by string prefix. Paths are mount-relative POSIX strings: ``"a/b"`` and ``"/a/b"``
name the same file; ``"/"`` (or ``"."``) is the root; ``""``, NUL bytes, names the filesystem cannot
encode and over-long paths are ``InvalidArgument``. ``..`` is resolved physically (as the kernel does),
never lexically, and may not climb above the root.

Resolution. With ``openat2`` (Linux 5.6+, detected once; ENOSYS, or a seccomp EPERM, means fallback)
every lookup is ``openat2(rootfd, path, O_PATH…, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
RESOLVE_NO_XDEV)``: the kernel refuses ``..`` above the root, absolute symlinks, symlinks whose target
leaves the root, ``/proc`` magic links and mount crossings, all atomically with the lookup. Without it,
a walk does the same from user space, one component at a time from the root fd: each component is
opened ``O_PATH|O_NOFOLLOW`` relative to the directory fd before it, so no symlink is ever followed by
the kernel; a symlink is read (``readlinkat``) and its target resolved again from the link's directory
on the walk's own stack of directory fds, so ``..`` pops to a directory already reached from the root
and never above it. Limits and choices, the same in both resolvers:

* a symlink with an *absolute* target is refused (EXDEV), not re-rooted: ``RESOLVE_BENEATH`` does this,
  and an agent that planted ``/etc/passwd`` means the host's, so reading the mount's ``etc/passwd``
  instead would be a surprise; relative symlinks that stay beneath the root are followed;
* at most 40 symlinks per lookup (ELOOP), as the kernel;
* another filesystem mounted inside the mount root is not entered (EXDEV): openat2's RESOLVE_NO_XDEV;
  the walk compares ``st_dev`` and, where ``/proc`` is there, the mount id of every directory, which
  also catches bind mounts of the same filesystem. Mount the inner filesystem as a mount of its own.

The walk trusts one thing openat2 does not: that no host process moves a directory the walk is inside
out of the mount while it walks (openat2 rechecks ``..`` against renames). Agents cannot do this
through a ``HostMount`` — every rename it makes is beneath the root.

Opening. A file is first resolved to an ``O_PATH`` fd (which opens nothing: no driver ``open``, no
FIFO wait), checked with ``fstat``, and only then reopened for reading or writing through
``/proc/self/fd/N`` — the very inode checked, with no window for a swap. Refused (PermissionDenied):
anything that is not a regular file or a directory (devices, FIFOs, sockets: EACCES); a regular file
with more than one hard link (EACCES: a hard link can alias a file outside the mount, and nothing
inside tells which); anything on another filesystem (EXDEV). Where ``/proc`` is missing, the file is
opened again by name (beneath the root, non-blocking, ``O_NOFOLLOW``, not truncating) and kept only if
it is the inode checked; a device swapped in for that moment would see its driver's ``open``. Metadata
is not content: ``stat``, ``exists``, ``readlink`` work on any entry.

Writing. A read-only mount refuses every write with PermissionDenied EROFS. Operations on an entry
(create, write, mkdir, rmdir, unlink, rename, symlink) resolve the parent directory beneath the root to
an fd and act on the final name relative to it without following it (``dir_fd=``, ``O_NOFOLLOW``); the
final component must be a name (not ``.`` or ``..``). Every write records what it destroys first, for
undo: ``write_file`` returns the previous content (``None`` if there was no file) and writes
atomically — a temporary file in the same directory, ``fsync``, ``rename`` over the name, ``fsync`` of
the directory — keeping the old file's mode (and owner, where allowed); ``unlink`` and ``rename``
return the content of the regular file they remove or replace. ``write_file`` follows a final symlink
that stays inside (so the target is written and the link kept); ``O_CREAT`` through a dangling symlink
creates its target, beneath the root or not at all. The record is read just before the change, not
atomically with it: a host process writing the same file at the same moment can make it stale.

Errors are typed (``agentos.errors``) with the POSIX code: ENOENT NotFound; EEXIST, ENOTDIR, EISDIR,
ENOTEMPTY, EBUSY Conflict; EACCES, EPERM, EROFS, EXDEV (escape or mount crossing), ELOOP (symlink loop,
magic link, or a symlink under ``O_NOFOLLOW``) PermissionDenied; EINVAL, ENAMETOOLONG InvalidArgument;
ENOSPC, EDQUOT QuotaExceeded; EAGAIN WouldBlock; the rest IOFailure. Messages name the mount-relative
path only. No ``OSError`` leaves a ``HostMount`` method.
"""

from __future__ import annotations

import errno
import os
import stat

from agentos.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
)
from agentos.kernel.vfs.hostpath import (
    _as_typed,
    _check_mode,
    _encode,
    _oserror,
    _parse,
    _read_all,
    _Swapped,
)
from agentos.kernel.vfs.openat2 import (
    _OPEN_FLAGS,
    _RACE_TRIES,
    _WRITE_FLAGS,
    _mnt_id,
    openat2_available,
    proc_reopen_available,
)
from agentos.kernel.vfs.resolve import Resolution


class HostMount(Resolution):
    """A host directory, reachable only beneath its root. See the module docstring for the rules.

    ``use_openat2``: None picks openat2 where the kernel has it; False forces the user-space walk;
    True insists on openat2 (InvalidArgument ENOSYS without it). Close it (or use ``with``).
    """

    def __init__(
        self, root: str | os.PathLike[str], *, read_only: bool = False, use_openat2: bool | None = None
    ) -> None:
        self.root = os.fspath(root)
        self.read_only = read_only
        if use_openat2 is None:
            use_openat2 = openat2_available()
        elif use_openat2 and not openat2_available():
            raise InvalidArgument("openat2 is not available on this kernel", code="ENOSYS")
        self.uses_openat2 = use_openat2
        self._proc_reopen = proc_reopen_available()
        self._fd = -1
        with _as_typed("mount", self.root):
            fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fd = fd
        self._dev = os.fstat(fd).st_dev
        self._mnt = _mnt_id(fd)

    def __repr__(self) -> str:
        how = "openat2" if self.uses_openat2 else "walk"
        return (
            f"HostMount({self.root!r}, read_only={self.read_only}, {how}{', closed' if self._fd < 0 else ''})"
        )

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> HostMount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------------

    def open(self, path: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
        """An OS fd (close-on-exec) for ``path`` opened with ``flags`` beneath the root; the caller closes it.

        Symlinks are followed while they stay beneath the root (not the final one under O_NOFOLLOW).
        Only regular files with one link and directories are opened; see the module docstring.
        """
        p = _parse(path)
        if not isinstance(flags, int) or flags & ~_OPEN_FLAGS or flags & os.O_ACCMODE == os.O_ACCMODE:
            raise InvalidArgument(f"open {p.shown!r}: flags {flags!r} are not allowed on a host mount")
        _check_mode("open", p, mode)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & _WRITE_FLAGS:
            self._writable("open", p)
        with _as_typed("open", p.shown):
            return self._open(p, flags, mode, "open")

    def read_file(self, path: str) -> bytes:
        """The whole content of the regular file at ``path``."""
        p = _parse(path)
        with _as_typed("read_file", p.shown):
            fd = self._open(p, os.O_RDONLY, 0, "read_file", file_only=True)
            try:
                return _read_all(fd)
            finally:
                os.close(fd)

    def stat(self, path: str, *, follow_symlinks: bool = True) -> os.stat_result:
        """``stat`` (``lstat`` with ``follow_symlinks=False``) of ``path``; any kind of entry."""
        p = _parse(path)
        with _as_typed("stat", p.shown):
            fd = self._walk(p.parts, follow=follow_symlinks, want_dir=p.dir_only)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)

    def exists(self, path: str, *, follow_symlinks: bool = True) -> bool:
        """Whether ``path`` names an entry (False also where a component is not a directory).

        A path that leaves the mount is not an answer of False: it is refused (PermissionDenied).
        """
        try:
            self.stat(path, follow_symlinks=follow_symlinks)
        except NotFound:
            return False
        except Conflict as err:
            if err.code == "ENOTDIR":
                return False
            raise
        return True

    def listdir(self, path: str = "/") -> list[str]:
        """The names in the directory ``path``, sorted."""
        p = _parse(path)
        with _as_typed("listdir", p.shown):
            fd = self._open(p, os.O_RDONLY | os.O_DIRECTORY, 0, "listdir")
            try:
                return sorted(os.listdir(fd))
            finally:
                os.close(fd)

    def readlink(self, path: str) -> str:
        """The target of the symlink ``path``, as written (it may name a place the mount will not follow)."""
        p = _parse(path)
        with _as_typed("readlink", p.shown):
            pfd, name = self._locate(p, follow=False, op="readlink")
            try:
                return os.fsdecode(os.readlink(name, dir_fd=pfd))
            finally:
                os.close(pfd)

    # -- writing ----------------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes, *, create: bool = True) -> bytes | None:
        """Replace the content of ``path`` atomically; returns the previous content (None: it was created).

        The undo record: write the returned bytes back, or unlink when it is None.
        """
        p = _parse(path)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument(f"write_file {p.shown!r}: data must be bytes, not {type(data).__name__}")
        self._writable("write_file", p)
        with _as_typed("write_file", p.shown):
            if p.dir_only:
                raise _oserror(errno.EISDIR)
            for _ in range(_RACE_TRIES):
                pfd, name = self._locate(p, follow=True, op="write_file")
                try:
                    try:
                        previous, old = self._previous(pfd, name, p, "write_file")
                    except _Swapped:
                        continue
                    if old is None and not create:
                        raise _oserror(errno.ENOENT)
                    self._replace(pfd, name, bytes(data), old)
                    return previous
                finally:
                    os.close(pfd)
            raise _oserror(errno.EAGAIN, "the file kept changing while it was being written")

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create the directory ``path`` (its parent must exist). Undo: ``rmdir``."""
        p = _parse(path)
        _check_mode("mkdir", p, mode)
        self._writable("mkdir", p)
        with _as_typed("mkdir", p.shown):
            pfd, name = self._locate(p, follow=False, op="mkdir")
            try:
                os.mkdir(name, mode, dir_fd=pfd)
            finally:
                os.close(pfd)

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path``. Undo: ``mkdir``."""
        p = _parse(path)
        self._writable("rmdir", p)
        with _as_typed("rmdir", p.shown):
            pfd, name = self._locate(p, follow=False, op="rmdir")
            try:
                os.rmdir(name, dir_fd=pfd)
            finally:
                os.close(pfd)

    def unlink(self, path: str) -> bytes | None:
        """Remove the entry ``path`` (not a directory; a symlink itself, not its target).

        Returns the content of the regular file removed, for undo (None for anything else).
        """
        p = _parse(path)
        self._writable("unlink", p)
        with _as_typed("unlink", p.shown):
            pfd, name = self._locate(p, follow=False, op="unlink")
            try:
                previous, old = self._previous(pfd, name, p, "unlink", any_kind=True)
                if old is None:
                    raise _oserror(errno.ENOENT)
                if stat.S_ISDIR(old.st_mode):
                    raise _oserror(errno.EISDIR)
                now = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if (now.st_dev, now.st_ino) != (old.st_dev, old.st_ino):
                    raise _oserror(errno.EAGAIN, "the entry changed while it was being removed")
                os.unlink(name, dir_fd=pfd)
                return previous
            finally:
                os.close(pfd)

    def rename(self, src: str, dst: str) -> bytes | None:
        """Rename ``src`` to ``dst``, both beneath the root (a final symlink is renamed, not followed).

        Returns the content of the regular file ``dst`` replaced, for undo (None if none was).
        """
        ps, pd = _parse(src), _parse(dst)
        self._writable("rename", ps)
        shown = f"{ps.shown} -> {pd.shown}"
        with _as_typed("rename", shown):
            sfd, sname = self._locate(ps, follow=False, op="rename")
            try:
                dfd, dname = self._locate(pd, follow=False, op="rename")
                try:
                    previous, _old = self._previous(dfd, dname, pd, "rename", any_kind=True)
                    os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                    return previous
                finally:
                    os.close(dfd)
            finally:
                os.close(sfd)

    def symlink(self, target: str, path: str) -> None:
        """Create the symlink ``path`` -> ``target`` (any target; lookups refuse those that leave)."""
        p = _parse(path)
        raw = _encode(target, "symlink target")
        self._writable("symlink", p)
        with _as_typed("symlink", p.shown):
            pfd, name = self._locate(p, follow=False, op="symlink")
            try:
                os.symlink(raw, name, dir_fd=pfd)
            finally:
                os.close(pfd)
