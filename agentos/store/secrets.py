"""The home's secret store: named secret values kept out of the event log, blobs and exports.

Each secret is one file ``<home>/secrets/<NAME>`` (mode 0600) in a directory of mode 0700 owned
by the kernel's user. Values are stored in plain text, not encrypted: the file permissions are the
protection, as for ``hmac.key``. Keeping them in their own files (never in SQLite) is what keeps
them out of the log, its backups and anything exported from it.

Every operation works relative to a descriptor of the directory opened with ``O_NOFOLLOW``, and
opens secret files with ``O_NOFOLLOW``, so a symlink planted in the home cannot redirect a read or
a write. Writes are atomic: a temporary file (``.tmp-*``, never a valid name) is written, fsynced
and renamed over the secret, then the directory is fsynced. No error message ever includes a
value or a file's contents; names are quoted truncated to 64 characters.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentos.errors import (
    AgentOSError,
    InvalidArgument,
    IOFailure,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    SecurityViolation,
)

MAX_SECRET_BYTES = 65536
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
TMP_PREFIX = ".tmp-"
DIR_MODE = 0o700
FILE_MODE = 0o600

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _quote(name: object) -> str:
    """A name fit for an error message: truncated, repr-quoted, never anything but the name."""
    return repr(name[:64]) if isinstance(name, str) else f"<{type(name).__name__}>"


def check_name(name: object) -> str:
    """The name itself if it is a valid secret name; else InvalidArgument (no path tricks get through)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"invalid secret name {_quote(name)}: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or _"
        )
    return name


def _translate(exc: OSError, action: str, name: str | None) -> AgentOSError:
    """A typed error for an OSError, built from its errno and strerror only (never contents or str(exc))."""
    what = f"secret {_quote(name)}" if name is not None else "the secret store"
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "unknown error")
    message = f"cannot {action} {what}: {reason}"
    if exc.errno == errno.ENOENT:
        return NotFound(f"no secret {_quote(name)}" if name is not None else message, code="ENOENT")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(message, code="EACCES")
    if exc.errno == errno.ELOOP:
        return SecurityViolation(f"{message} (a symlink; refusing to follow it)")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return QuotaExceeded(message, code="EDQUOT")
    return IOFailure(message, code="EIO")


class SecretStore:
    """Named byte values in ``directory`` (``<home>/secrets``), owned and used by the kernel process."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory).absolute()
        with self._dir():  # create it (0700) or tighten it now, so a bad home fails at boot
            pass

    # -- the directory ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _dir(self) -> Iterator[int]:
        """A descriptor of the store's directory, created 0700 if missing and re-tightened if loosened."""
        try:
            self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(self.directory, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.ELOOP):
                if self.directory.is_symlink():  # O_DIRECTORY|O_NOFOLLOW says ENOTDIR for a symlink
                    raise SecurityViolation(
                        f"cannot open the secret store: {self.directory} is a symlink; refusing to follow it"
                    ) from None
                raise IOFailure(
                    f"cannot open the secret store: {self.directory} is not a directory"
                ) from None
            raise _translate(exc, "open", None) from None
        try:
            try:
                st = os.fstat(fd)
                if st.st_uid != os.geteuid():
                    raise PermissionDenied(
                        f"the secret store {self.directory} belongs to uid {st.st_uid}, not to us",
                        code="EACCES",
                    )
                if stat.S_IMODE(st.st_mode) != DIR_MODE:
                    os.fchmod(fd, DIR_MODE)
            except OSError as exc:
                raise _translate(exc, "secure", None) from None
            yield fd
        finally:
            os.close(fd)

    # -- operations ------------------------------------------------------------------------

    def set(self, name: str, value: bytes) -> dict[str, Any]:
        """Create or replace a secret atomically; the answer describes it and never holds the value."""
        check_name(name)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidArgument(
                f"the value of secret {_quote(name)} must be bytes, not {type(value).__name__}"
            )
        data = bytes(value)
        if not data:
            raise InvalidArgument(f"the value of secret {_quote(name)} is empty")
        if len(data) > MAX_SECRET_BYTES:
            raise InvalidArgument(
                f"the value of secret {_quote(name)} is {len(data)} bytes; the limit is {MAX_SECRET_BYTES}",
                code="E2BIG",
            )
        with self._dir() as dfd:
            tmp = f"{TMP_PREFIX}{os.urandom(8).hex()}"
            try:
                fd = os.open(
                    tmp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    FILE_MODE,
                    dir_fd=dfd,
                )
            except OSError as exc:
                raise _translate(exc, "write", name) from None
            try:
                try:
                    os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                if exc.errno == errno.ENOENT:  # the directory vanished under us: not a missing secret
                    raise IOFailure(f"cannot write secret {_quote(name)}: the store went away") from None
                raise _translate(exc, "write", name) from None
            self._sync(dfd, name)
        return {"name": name, "size": st.st_size, "updated_ns": st.st_mtime_ns}

    def get(self, name: str) -> bytes:
        """The secret's value; NotFound (ENOENT) if there is none."""
        check_name(name)
        with self._dir() as dfd:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                raise _translate(exc, "read", name) from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise IOFailure(f"cannot read secret {_quote(name)}: not a regular file")
                chunks: list[bytes] = []
                size = 0
                while size <= MAX_SECRET_BYTES:
                    chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            except OSError as exc:
                raise _translate(exc, "read", name) from None
            finally:
                os.close(fd)
        if size > MAX_SECRET_BYTES:
            raise IOFailure(f"cannot read secret {_quote(name)}: the file is over {MAX_SECRET_BYTES} bytes")
        return b"".join(chunks)

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every secret's name, size and modification time, sorted by name; no values."""
        out: list[dict[str, Any]] = []
        with self._dir() as dfd:
            try:
                names = os.listdir(dfd)
            except OSError as exc:
                raise _translate(exc, "list", None) from None
            for name in sorted(names):
                if not NAME_PATTERN.fullmatch(name):  # temporary files and strays
                    continue
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:  # removed while we listed
                    continue
                except OSError as exc:
                    raise _translate(exc, "stat", name) from None
                if stat.S_ISREG(st.st_mode):
                    out.append({"name": name, "size": st.st_size, "updated_ns": st.st_mtime_ns})
        return out

    def remove(self, name: str) -> None:
        """Delete a secret durably; NotFound (ENOENT) if there is none."""
        check_name(name)
        with self._dir() as dfd:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise IOFailure(f"cannot remove secret {_quote(name)}: not a regular file")
                os.unlink(name, dir_fd=dfd)
            except OSError as exc:
                raise _translate(exc, "remove", name) from None
            self._sync(dfd, name)

    def exists(self, name: str) -> bool:
        """Whether a secret of this name is stored (InvalidArgument for a name that could never be)."""
        check_name(name)
        with self._dir() as dfd:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise _translate(exc, "stat", name) from None
        return stat.S_ISREG(st.st_mode)

    @staticmethod
    def _sync(dfd: int, name: str) -> None:
        """Make a rename or unlink durable: fsync the directory."""
        try:
            os.fsync(dfd)
        except OSError as exc:
            raise _translate(exc, "sync", name) from None
