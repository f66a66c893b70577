"""What agents import: every syscall as an async function of the same name.

    from agentos import sdk

    async def main(*argv):
        await sdk.write_console("hello\\n")
        await sdk.sleep(0.5)
        return 0

Each call yields one trap to the kernel, which schedules, journals and answers it. **The one
rule for agent code:** everything nondeterministic — time, randomness, the environment, files,
other processes, the network, models — must come through an ``sdk`` call, so that replaying
the journal reproduces the same run. ``print()`` goes to the agent's console through the
kernel. A TERM arrives as ``AgentCancelled`` (a BaseException) at the agent's current call.
"""

from __future__ import annotations

from typing import Any

from agentos.abi.traps import trap
from agentos.errors import AgentCancelled

__all__ = [
    "AgentCancelled",
    "cap",
    "cap_delegate",
    "cap_list",
    "cap_request",
    "cap_revoke",
    "cap_transfer",
    "chmod",
    "close",
    "continue_as_new",
    "dup",
    "dup2",
    "exit",
    "fs_transaction",
    "fsync",
    "ftruncate",
    "getpid",
    "getppid",
    "kill",
    "link",
    "mkdir",
    "monotonic",
    "open",
    "ps",
    "random",
    "read",
    "readdir",
    "readlink",
    "rename",
    "rmdir",
    "sched_yield",
    "secret",
    "seek",
    "sleep",
    "spawn",
    "stat",
    "symlink",
    "syscall",
    "time",
    "truncate",
    "unlink",
    "wait",
    "watch",
    "write",
    "write_console",
]


async def getpid() -> int:
    return await trap("getpid", {})


async def getppid() -> int:
    return await trap("getppid", {})


async def spawn(
    target: str,
    *argv: str,
    name: str | None = None,
    caps: list[dict[str, Any]] | None = None,
    opaque: bool = False,
    limits: dict[str, float] | None = None,
    root: str | None = None,
) -> int:
    """Start a child agent (``file.py``, ``file.py:func`` or ``module:func``); return its pid.

    The child inherits every capability this agent holds unless ``caps`` lists the ones it gets,
    each narrowed from one held (see ``cap``); ``opaque`` children cannot list what they hold.
    ``limits`` (e.g. ``{"spawns": 10, "console_bytes": 1e6}``) puts it in a new resource group under
    this agent's, whose own limits still apply. ``root`` (a directory this agent may list) becomes
    the child's ``/``, with its own ``/tmp``, ``/proc`` and ``/dev``; its file capabilities are
    narrowed to that subtree."""
    args: dict[str, Any] = {"target": target, "argv": list(argv)}
    if root is not None:
        args["root"] = root
    if name is not None:
        args["name"] = name
    if caps is not None:
        args["caps"] = caps
    if opaque:
        args["opaque"] = True
    if limits is not None:
        args["limits"] = limits
    return await trap("spawn", args)


def cap(
    resource: str | None = None,
    rights: list[str] | None = None,
    *,
    handle: int | None = None,
    expires_in: float | None = None,
    depth: int | None = None,
    max_uses: int | None = None,
) -> dict[str, Any]:
    """A capability request for ``spawn(caps=[...])`` and ``cap_delegate``: narrow the held
    capability ``handle`` (or any held one covering ``resource``); omitted fields keep its value."""
    spec = {"resource": resource, "rights": rights, "cap": handle, "expires_in": expires_in}
    spec |= {"depth": depth, "max_uses": max_uses}
    return {k: v for k, v in spec.items() if v is not None}


async def cap_list() -> list[dict[str, Any]]:
    """The capabilities this agent holds (refused to an agent started with opaque capabilities)."""
    return await trap("cap_list", {})


async def cap_delegate(to: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Give process ``to`` a capability narrowed from one held with the ``grant`` right: {cap, expires_ns}."""
    return await trap("cap_delegate", {"to": to, "spec": spec})


async def cap_transfer(handle: int, to: int) -> None:
    """Give a held capability away whole: ``to`` holds it, this agent keeps nothing."""
    await trap("cap_transfer", {"cap": handle, "to": to})


async def cap_revoke(handle: int, reason: str = "") -> None:
    """Revoke a capability this agent holds or derived (delegated, gave a child), and all derived from it."""
    await trap("cap_revoke", {"cap": handle, "reason": reason})


async def cap_request(
    resource: str, rights: list[str], reason: str = "", *, timeout: float | None = None
) -> dict[str, Any]:
    """Ask a person for a capability (``agentos approve ID``); blocks until answered: {cap, outcome,
    expires_ns}. Denied: PermissionDenied; unanswered within ``timeout``: TimedOut."""
    args: dict[str, Any] = {"resource": resource, "rights": rights, "reason": reason}
    if timeout is not None:
        args["timeout"] = timeout
    return await trap("cap_request", args)


async def secret(name: str, *, cap: int | None = None) -> bytes:
    """A secret's value (needs a capability for ``secret:NAME``); never journaled: replay re-reads it.
    ``cap`` names the capability to use (see ``syscall``)."""
    return await trap("secret_get", {"name": name}, cap)


async def syscall(name: str, args: dict[str, Any] | None = None, *, cap: int | None = None) -> Any:
    """Any syscall by name. ``cap`` names the one capability that may authorise it: an agent acting
    for another (a service) passes the handle the requester delegated to it, so the call can never
    succeed on the agent's own wider capabilities (the confused deputy)."""
    return await trap(name, args or {}, cap)


async def exit(status: int = 0) -> None:  # noqa: A001 - the syscall's name
    await trap("exit", {"status": status})


async def wait(pid: int = -1, *, nohang: bool = False, timeout: float | None = None) -> dict[str, Any] | None:
    """Reap a child that has exited (any child if pid is -1): ``{pid, status, signal, ...}``."""
    args: dict[str, Any] = {"pid": pid, "nohang": nohang}
    if timeout is not None:
        args["timeout"] = timeout
    return await trap("wait", args)


async def kill(pid: int, sig: str | int = "TERM") -> None:
    await trap("kill", {"pid": pid, "sig": sig})


async def sleep(seconds: float) -> None:
    await trap("sleep", {"seconds": float(seconds)})


async def sched_yield() -> None:
    await trap("sched_yield", {})


async def time() -> int:
    """Wall-clock nanoseconds since the epoch (UTC), recorded for replay."""
    return await trap("time", {})


async def monotonic() -> int:
    return await trap("monotonic", {})


async def random(n: int) -> bytes:
    """``n`` random bytes, recorded for replay."""
    return await trap("random", {"n": n})


async def write_console(data: str, *, stream: str = "stdout") -> None:
    await trap("write_console", {"data": data, "stream": stream})


async def ps(*, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
    return await trap("ps", {"all": all})


async def continue_as_new(*argv: str) -> None:
    """Restart this agent from a fresh journal with new arguments (keeps boot time bounded)."""
    await trap("continue_as_new", {"argv": list(argv)})


# -- files (docs/vfs.md): absolute VFS paths; POSIX errors (ENOENT, EEXIST, EBADF ...) as typed errors


async def mkdir(path: str, mode: int = 0o755) -> None:
    await trap("mkdir", {"path": path, "mode": mode})


async def open(path: str, flags: list[str] | tuple[str, ...] = ("read",), mode: int = 0o644) -> int:  # noqa: A001
    """Open a file; return its fd. ``flags``: any of "read", "write", "append", "create",
    "exclusive", "truncate" (e.g. ``["write", "create", "truncate"]``)."""
    return await trap("open", {"path": path, "flags": list(flags), "mode": mode})


async def write(fd: int, data: bytes) -> int:
    """Write ``data`` at the fd's offset (the end, if opened to append); durable once it returns."""
    return await trap("write", {"fd": fd, "data": bytes(data)})


async def read(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes from the fd's offset (b"" at the end of the file)."""
    return await trap("read", {"fd": fd, "n": n})


async def seek(fd: int, offset: int, whence: str = "set") -> int:
    """Move the fd's offset (``whence``: "set", "cur" or "end"); return the new offset."""
    return await trap("seek", {"fd": fd, "offset": offset, "whence": whence})


async def fsync(fd: int) -> None:
    """Cut a version of the file now (its pending writes become a version); the fd stays open."""
    await trap("fsync", {"fd": fd})


async def close(fd: int) -> None:
    """Close the fd; a file written through it gets a new version."""
    await trap("close", {"fd": fd})


async def stat(path: str, follow: bool = True) -> dict[str, Any]:
    """``{ino, kind, size, mode, nlink, mtime_ns, version_seq}``, and ``target`` for a symlink;
    ``follow=False`` describes a final symlink itself (lstat)."""
    return await trap("stat", {"path": path, "follow": follow})


async def readdir(path: str) -> list[str]:
    """A directory's names, sorted."""
    return await trap("readdir", {"path": path})


async def unlink(path: str) -> None:
    await trap("unlink", {"path": path})


async def rmdir(path: str) -> None:
    await trap("rmdir", {"path": path})


async def rename(src: str, dst: str) -> None:
    await trap("rename", {"src": src, "dst": dst})


async def dup(fd: int) -> int:
    """A new fd (the lowest free) on the same open file: the two share the offset."""
    return await trap("dup", {"fd": fd})


async def dup2(fd: int, new_fd: int) -> int:
    """Make ``new_fd`` share ``fd``'s open file, closing ``new_fd`` first if it is open."""
    return await trap("dup2", {"fd": fd, "new_fd": new_fd})


async def ftruncate(fd: int, size: int) -> None:
    """Set the size of the file open for writing at ``fd`` (pending until close/fsync, as a write)."""
    await trap("ftruncate", {"fd": fd, "size": size})


async def truncate(path: str, size: int) -> None:
    """Set the size of the file at ``path`` (growing reads as zeros); a new version at once."""
    await trap("truncate", {"path": path, "size": size})


async def link(src: str, dst: str) -> None:
    """A second name ``dst`` for the file ``src`` (a hard link; not for directories)."""
    await trap("link", {"src": src, "dst": dst})


async def symlink(target: str, path: str) -> None:
    """A symlink at ``path`` whose content is ``target`` (resolved when used, relative to ``path``'s directory)."""
    await trap("symlink", {"target": target, "path": path})


async def readlink(path: str) -> str:
    """The target of the symlink at ``path``."""
    return await trap("readlink", {"path": path})


async def chmod(path: str, mode: int) -> None:
    """Set the mode bits (for agents, the owner's read and write bits are enforced)."""
    await trap("chmod", {"path": path, "mode": mode})


async def watch(
    path: str,
    *,
    since: int | None = None,
    recursive: bool = False,
    timeout: float | None = None,
    limit: int = 1000,
) -> dict[str, Any]:
    """Wait for changes at ``path`` (a directory: and its entries; ``recursive``: everything below)
    after seq ``since`` (None: from now); ``timeout`` None waits for ever, 0 does not wait.
    Returns ``{changes, next, lost, more}``: each change ``{seq, op, path, kind, pid}`` (``op``:
    created, written, truncated, version, unlinked, linked, renamed (with ``from``), chmod); pass
    ``next`` as ``since`` next time. ``lost``: changes were missed (a reboot, or too far behind):
    rescan, then go on from ``next``."""
    args: dict[str, Any] = {"path": path, "recursive": recursive, "limit": limit}
    if since is not None:
        args["since"] = since
    if timeout is not None:
        args["timeout"] = timeout
    return await trap("watch", args)


async def fs_transaction(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Several changes that land as one, or not at all. ``ops``, in order, each seeing the ones
    before: ``{"op": "write", "path", "data"[, "append"]}`` (replaces the content and cuts a
    version), ``{"op": "mkdir", "path"}``, ``{"op": "unlink", "path"}``, ``{"op": "rmdir", "path"}``,
    ``{"op": "rename", "src", "dst"}``. The first failing op's error is raised (its message names
    the op's index) and nothing changed. Returns ``{correlation, ops, first_seq, last_seq}``: the
    id its events share (to undo it whole) and their seq range."""
    return await trap("fs_transaction", {"ops": list(ops)})
