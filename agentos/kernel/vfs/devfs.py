"""``/dev``: the kernel's devices — ``null``, ``zero``, ``random``, ``urandom``, ``console``, ``tty``.

Why files at all: a program written against files (``open("/dev/null")``, reading
``/dev/urandom``, printing to ``/dev/tty``) works unchanged, and each device is guarded by the
capability of its path (``fs:/dev/null`` ...) like any file.

- ``null`` reads EOF and swallows writes; ``zero`` reads zeros.
- ``random`` and ``urandom`` read bytes from ``os.urandom`` (at most ``param.MAX_RANDOM_BYTES``
  a read, a short read past it). Nothing is stored: the read's result is journaled like every
  result, so a replayed agent is answered the same bytes. Writes are accepted and dropped.
- ``console`` and ``tty`` are the caller's console: a write is a ``write_console`` to stdout (the
  same ``console.write`` event, quota and ``agentos logs`` line; at most
  ``param.MAX_CONSOLE_WRITE`` bytes a write, a short write past it). The console has no input: a
  read is EOF.

Devices do not seek (the offset stays 0, as Linux's character devices) and the set is fixed:
creating, removing or renaming anything in ``/dev`` is EROFS.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.kernel import sysproc
from agentos.kernel.calls import Caller, Done
from agentos.kernel.vfs.mountfs import (
    Handle,
    Lost,
    MountFS,
    Open,
    Routed,
    exists,
    is_dir,
    missing,
    not_dir,
    opened,
    readonly,
    stat_row,
)
from agentos.state import events as ev
from agentos.state.vfs import OpenFile

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


class Null(Handle):
    seekable = False

    def write(self, c: Caller, offset: int, data: bytes) -> tuple[int, list[ev.Payload], dict[str, bytes]]:
        return len(data), [], {}


class Zero(Null):
    def read(self, offset: int, n: int) -> bytes:
        return bytes(n)


class Random(Null):
    def read(self, offset: int, n: int) -> bytes:
        return os.urandom(min(n, param.MAX_RANDOM_BYTES))


class Console(Handle):
    seekable = False

    def __init__(self, k: Kernel) -> None:
        self.k = k

    def write(self, c: Caller, offset: int, data: bytes) -> tuple[int, list[ev.Payload], dict[str, bytes]]:
        data = data[: param.MAX_CONSOLE_WRITE]
        if not data:
            return 0, [], {}
        events, blobs = sysproc.console_events(
            self.k, c.pid, data.decode("utf-8", "surrogateescape"), "stdout"
        )
        if c.confined:
            self.k.quotas.check_bytes(c.pid, len(data))
        return len(data), events, blobs


DEVICES: dict[str, Any] = {
    "console": Console,
    "null": Null,
    "random": Random,
    "tty": Console,
    "urandom": Random,
    "zero": Zero,
}


class DevFS(MountFS):
    kind = "dev"

    def _device(self, r: Routed) -> str | None:
        """The device ``r`` names, None for /dev itself; ENOENT or ENOTDIR for anything else."""
        if r.is_root:
            return None
        name = r.path[1:]
        if "/" in name:
            head = name.partition("/")[0]
            raise not_dir(r) if head in DEVICES else missing(r)
        if name not in DEVICES:
            raise missing(r)
        if r.wants_dir:
            raise not_dir(r)
        return name

    def stat(self, r: Routed) -> dict[str, Any]:
        name = self._device(r)
        return stat_row(r, "dir", 0o755) if name is None else stat_row(r, "chardev", 0o666)

    def readdir(self, r: Routed) -> list[str]:
        if self._device(r) is not None:
            raise not_dir(r)
        return sorted(DEVICES)

    def open(self, r: Routed, want: Open) -> Done:
        name = r.path[1:]
        if "create" in want.flags and name and "/" not in name and name not in DEVICES:
            raise readonly(r)  # no new files in /dev
        if self._device(r) is None:
            raise is_dir(r, " (use readdir)")
        if "exclusive" in want.flags:
            raise exists(r)
        return opened(r, want)  # truncate means nothing to a device

    def mkdir(self, r: Routed, mode: int) -> Done:
        raise exists(r) if r.is_root or r.path[1:] in DEVICES else readonly(r)

    def handle(self, k: Kernel, f: OpenFile, *, fresh: bool) -> Handle:
        device = DEVICES.get(f.path[1:])
        if device is None:
            return Lost(f"{f.mount}{f.path} is no device of this kernel")
        return device(k) if device is Console else device()
