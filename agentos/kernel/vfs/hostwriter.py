"""Making recorded host-mount changes, once their record is durable (the output-commit rule).

A ``vfs.host_change`` names a change and the bytes it destroys (``hostmount.py``). After every
commit the writer makes, in sequence order, each change whose event is now durable, and records
``vfs.host_done`` (with the POSIX error if it failed); a caller parked on it then gets its answer.
The changes still unmade are world state (``FileSystem.host_unmade``), so after kill -9 the next
boot finds them and makes them — checking first, since the kernel may have died just after making
one: a change is made only where the host still holds what the record says it destroys (``before``)
or, when it already holds the result (``after``), it is recorded as made. Anything else — a host
process changed the file meanwhile — is refused (ESTALE), never clobbered.
"""

from __future__ import annotations

import asyncio
import logging
import stat as st
from typing import TYPE_CHECKING

from agentos.errors import AgentOSError, Conflict, IOFailure, NotFound
from agentos.kernel.calls import Done
from agentos.kernel.vfs.hostmount import HostFS, digest, missing_mount, version_bytes
from agentos.state import events as ev
from agentos.state.vfs import HostIntent

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

log = logging.getLogger("agentos.hostwriter")
MAX_FAILED = 4096  # answers kept for parked callers; a caller takes its own at once


def stale(i: HostIntent, what: str) -> Conflict:
    return Conflict(
        f"{i.mount}{i.path}: {what} since the change was recorded; not overwritten", code="ESTALE"
    )


class HostWriter:
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.failed: dict[int, AgentOSError] = {}
        self._scheduled = False

    def committed(self) -> None:
        """After a commit: make what became durable (soon, outside the committer's callback)."""
        if self.k.state.world.vfs.host_unmade and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.run)

    def run(self) -> None:
        self._scheduled = False
        if self.k.fatal is not None:
            return
        durable = self.k.committer.durable_seq
        unmade = self.k.state.world.vfs.host_unmade
        made = False
        for seq in sorted(unmade):
            if seq > durable:
                break
            self._make(seq, unmade[seq])
            made = True
        if made:
            self.k._schedule_wait_recheck()

    def outcome(self, seq: int) -> Done | None:
        """A parked caller's answer: None while the change at ``seq`` is unmade."""
        if seq == 0 or seq in self.k.state.world.vfs.host_unmade:
            return None
        err = self.failed.pop(seq, None)
        if err is not None:
            raise err
        return Done(None)

    def _make(self, seq: int, i: HostIntent) -> None:
        try:
            note = self._do(i)
        except AgentOSError as err:
            if len(self.failed) >= MAX_FAILED:
                self.failed.pop(next(iter(self.failed)))
            self.failed[seq] = err
            log.warning("host change %d (%s %s%s) not made: %s", seq, i.op, i.mount, i.path, err.message)
            self.k.emit(ev.VfsHostDone(change=seq, error=f"{err.code}: {err.message}"), i.pid)
        else:
            self.k.emit(ev.VfsHostDone(change=seq, note=note), i.pid)

    def _fs(self, i: HostIntent) -> HostFS:
        if i.mount not in self.k.state.world.vfs.mounts:
            raise missing_mount(i.mount)
        fs = self.k.mounts.fs_at(i.mount, i.pid)
        if not isinstance(fs, HostFS):
            raise IOFailure(f"{i.mount} is not a host mount", code="EIO")
        return fs

    def _do(self, i: HostIntent) -> str:
        """Make one change; returns a note ("" made now, "already made" found done)."""
        fs = self._fs(i)
        host = fs.host
        if i.op == "write":
            now = digest(fs.content(i.path))
            if now == i.after:
                return "already made"
            if now != i.before:
                raise stale(i, "the file changed on the host")
            data = version_bytes(self.k, i.after) if i.after is not None else b""
            host.write_file(i.path, data)
            return ""
        if i.op == "mkdir":
            if _is_dir(fs, i.path):
                return "already made"
            host.mkdir(i.path)
            return ""
        if i.op == "rmdir":
            if not _exists(fs, i.path):
                return "already made"
            host.rmdir(i.path)
            return ""
        if i.op == "unlink":
            if not _exists(fs, i.path):
                return "already made"
            if i.to and host.readlink(i.path) != i.to:
                raise stale(i, "the symlink changed on the host")
            if not i.to and digest(fs.content(i.path)) != i.before:
                raise stale(i, "the file changed on the host")
            host.unlink(i.path)
            return ""
        if i.op == "rename":
            if not _exists(fs, i.path):
                if _exists(fs, i.to):
                    return "already made"
                raise NotFound(f"{i.mount}{i.path}: gone before it could be renamed", code="ENOENT")
            if i.before is not None and digest(_content(fs, i.to)) != i.before:
                raise stale(i, f"{i.to} changed on the host")
            host.rename(i.path, i.to)
            return ""
        if i.op == "symlink":
            if _exists(fs, i.path):
                if host.readlink(i.path) == i.to:
                    return "already made"
                raise stale(i, "the name was taken on the host")
            host.symlink(i.to, i.path)
            return ""
        raise IOFailure(f"unknown host change {i.op!r}", code="EIO")


def _exists(fs: HostFS, path: str) -> bool:
    return fs.host.exists(path, follow_symlinks=False)


def _is_dir(fs: HostFS, path: str) -> bool:
    try:
        return st.S_ISDIR(fs.host.stat(path, follow_symlinks=False).st_mode)
    except NotFound:
        return False


def _content(fs: HostFS, path: str) -> bytes | None:
    try:
        return fs.content(path)
    except AgentOSError:
        return None
