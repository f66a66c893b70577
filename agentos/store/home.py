"""The kernel's home directory: where its socket, log, config, keys and lock live.

``$AGENTOS_HOME`` (default ``~/.agentos``) holds ``kernel.sock``, ``kernel.log``, ``log.db``
(events, blobs, snapshots), ``config.toml`` (the home's PYTHONHASHSEED and durability),
``hmac.key`` (signs the chain head; kept outside the log) and ``kernel.lock``.

Unix socket paths are limited to 108 bytes, so sockets are bound and reached through
``/proc/self/fd/N/kernel.sock`` with N a descriptor of the home directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import tomllib
from collections.abc import Iterator
from pathlib import Path

from agentos.errors import Conflict, InvalidArgument

SOCKET_NAME = "kernel.sock"


def default_home() -> Path:
    return Path(os.environ.get("AGENTOS_HOME") or Path.home() / ".agentos")


class Home:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).expanduser().absolute() if path else default_home().absolute()
        self._lock_fd: int | None = None

    @property
    def socket(self) -> Path:
        return self.path / SOCKET_NAME

    @property
    def log_db(self) -> Path:
        return self.path / "log.db"

    @property
    def kernel_log(self) -> Path:
        return self.path / "kernel.log"

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def pid_file(self) -> Path:
        return self.path / "kernel.pid"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.config_file.exists():
            seed = secrets.randbelow(2**32 - 1) + 1
            self._write_private(self.config_file, f'hash_seed = {seed}\ndurability = "normal"\n'.encode())
        key = self.path / "hmac.key"
        if not key.exists():
            self._write_private(key, secrets.token_bytes(32))

    @staticmethod
    def _write_private(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def config(self) -> dict:
        try:
            return tomllib.loads(self.config_file.read_text())
        except FileNotFoundError:
            return {}
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(f"{self.config_file} is not valid TOML: {exc}") from None

    def hash_seed(self) -> int:
        return int(self.config().get("hash_seed", 0))

    def hmac_key(self) -> bytes:
        return (self.path / "hmac.key").read_bytes()

    def acquire_lock(self) -> None:
        """Refuse a second kernel on this home (flock, released by the OS even on kill -9)."""
        fd = os.open(self.path / "kernel.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = self.pid_file.read_text().strip() if self.pid_file.exists() else "?"
            raise Conflict(
                f"another kernel (pid {other}) is already running on {self.path}", code="EBUSY"
            ) from None
        self._lock_fd = fd
        self.pid_file.write_text(f"{os.getpid()}\n")

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_file.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None


@contextlib.contextmanager
def short_socket_path(home: Path) -> Iterator[str]:
    """A path under 108 bytes that names ``home/kernel.sock``, valid while the context lasts."""
    full = str(home / SOCKET_NAME)
    if len(full.encode()) < 100:
        yield full
        return
    fd = os.open(home, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)
