"""A process agent's working tree: the AgentOS VFS served over FUSE, every operation a syscall.

``serve(kernel, pid, fd_or_mountpoint, root=...)`` answers the FUSE connection on ``fd`` (a
``/dev/fuse`` fd the caller mounted, or will have a sandbox's stage mount; ``docs/sandbox.md``)
or, given a directory, opens one and mounts it there (tests, and hosts without the stage). The
names under the mount are ``root`` and below, in the VFS.

Threads and the loop. A reader thread polls the fd and hands each request to the kernel's loop
(``call_soon_threadsafe``); there the request becomes syscalls made as the agent's pid
(``Kernel.call(Caller(pid, kind), ...)``), so its capabilities, quotas, mode bits, versioning
and provenance are the kernel's own, and a parked call waits as any parked caller does. The reply
is written once the log is durable up to the head (§4.3: a FUSE reply is an output). Page-cache
invalidations go through a third thread: writing one can wait on a page a pending READ holds,
and that READ's answer comes from the loop.

Consistency. No writeback cache (every write is a syscall when it happens); FLUSH (each close(2))
cuts a version through ``fsync``, RELEASE closes the fd; ``fsync`` cuts one too. A file changed by
another route (a syscall over the agent's socket, another agent, the CLI) has its page cache
dropped at once (the kernel's vfs.* events, as ``syswatch`` sees them) and, without that, at the
next open (no ``keep_cache``) or stat (``auto_inval_data``); names and attributes are looked up
afresh every time (timeouts 0). Files are owned by whoever asks (git compares the owner with its
euid); mode bits are the VFS's. No ``default_permissions``: the kernel decides.

If the kernel process dies, its end of the fd closes and the connection aborts: every process
using the mount gets ENOTCONN, none hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import select
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentos.errors import AgentOSError
from agentos.kernel.calls import Block, Caller, Stream
from agentos.runtime import fuseproto as fp
from agentos.state import events as ev

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

log = logging.getLogger("agentos.fuse")

# the categories of typed errors whose code is not an errno name
_BY_CATEGORY = {
    "denied": errno.EACCES,
    "quota": errno.EDQUOT,
    "not-found": errno.ENOENT,
    "conflict": errno.EEXIST,
    "would-block": errno.EAGAIN,
    "timeout": errno.ETIMEDOUT,
    "security": errno.EACCES,
}
CONTENT = frozenset({ev.VfsWrote, ev.VfsTruncated, ev.VfsVersion, ev.VfsChmod})


class FuseError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.errno = code


def errno_of(err: AgentOSError) -> int:
    """The errno a typed error becomes on the wire (its POSIX code where it has one)."""
    code = getattr(errno, err.code, None) if err.code.startswith("E") else None
    if isinstance(code, int):
        return code
    return _BY_CATEGORY.get(getattr(err, "category", ""), errno.EIO)


@dataclass(slots=True)
class Node:
    parent: int  # nodeid of its directory (0 for the root)
    name: str
    ino: int  # the VFS inode
    lookups: int = 0


@dataclass(slots=True)
class Handle:
    """An open file: the agent's VFS fd, where the fd's offset is, whether it holds unflushed writes."""

    fd: int
    nodeid: int
    offset: int = 0
    writable: bool = False
    dirty: bool = False


@dataclass(slots=True)
class Tables:
    nodes: dict[int, Node] = field(default_factory=dict)
    by_ino: dict[int, int] = field(default_factory=dict)
    files: dict[int, Handle] = field(default_factory=dict)
    dirs: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)
    next_id: int = fp.ROOT_ID + 1
    next_dir: int = 1


class FuseView:
    """One FUSE connection served as one pid (``stop()`` to end it)."""

    def __init__(
        self,
        k: Kernel,
        caller: Caller,
        fd: int,
        root: str,
        *,
        timeout: float = 0.0,
        mountpoint: str | None = None,
    ) -> None:
        self.k, self.caller, self.fd, self.timeout = k, caller, fd, timeout
        self.root = "/" + root.strip("/") if root.strip("/") else "/"
        self.mountpoint = mountpoint  # only when serve() mounted it (tests): unmounted by stop()
        self.loop = asyncio.get_running_loop()
        self.t = Tables()
        self.own = False  # inside this view's own syscall (its events need no invalidation)
        self.minor = 0
        self.stopped = threading.Event()
        self.requests = 0
        self.unique = 0  # the request whose syscalls are being made (set just before its operation runs)
        root_ino = self._root_ino()  # first: a missing root is its ENOENT
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._notes: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._tasks: set[asyncio.Task[None]] = set()
        from agentos.runtime import fuseops  # the operations, next door

        self.ops = fuseops.OPS
        os.set_blocking(fd, False)
        self.t.nodes[fp.ROOT_ID] = Node(0, "", root_ino, 1)
        if root_ino:
            self.t.by_ino[root_ino] = fp.ROOT_ID
        self._reader = threading.Thread(target=self._read_loop, name=f"fuse-read-{caller.pid}", daemon=True)
        self._notifier = threading.Thread(
            target=self._notify_loop, name=f"fuse-note-{caller.pid}", daemon=True
        )
        self._reader.start()
        self._notifier.start()
        _hub_of(k).views.add(self)

    def _root_ino(self) -> int:
        """The root's inode; 0 where the agent may not even list the root (then it reaches only the
        names below it that its capabilities cover, and the root's attributes are made up)."""
        try:
            return int(self.call_now("stat", path=self.root)["ino"])
        except AgentOSError as e:
            if e.code != "EACCES":
                raise
            return 0

    # -- paths ---------------------------------------------------------------------------------

    def path(self, nodeid: int, name: str | None = None) -> str:
        """The VFS path of ``nodeid`` (and ``name`` in it), from the names this view looked up."""
        parts: list[str] = [] if name is None else [name]
        while nodeid != fp.ROOT_ID:
            node = self.t.nodes.get(nodeid)
            if node is None:
                raise FuseError(errno.ESTALE)
            parts.append(node.name)
            nodeid = node.parent
        tail = "/".join(reversed(parts))
        if not tail:
            return self.root
        return f"{self.root.rstrip('/')}/{tail}"

    def remember(self, parent: int, name: str, ino: int) -> int:
        """The nodeid for the inode found at ``parent``/``name``, counting one more kernel lookup."""
        nodeid = self.t.by_ino.get(ino)
        if nodeid is None:
            nodeid = self.t.next_id
            self.t.next_id += 1
            self.t.nodes[nodeid] = Node(parent, name, ino)
            self.t.by_ino[ino] = nodeid
        node = self.t.nodes[nodeid]
        if nodeid != fp.ROOT_ID:
            node.parent, node.name = parent, name  # renamed, by us or another route
        node.lookups += 1
        return nodeid

    def forget(self, nodeid: int, n: int) -> None:
        node = self.t.nodes.get(nodeid)
        if node is None or nodeid == fp.ROOT_ID:
            return
        node.lookups -= n
        if node.lookups <= 0 and not any(
            h.nodeid == nodeid for h in self.t.files.values()
        ):  # children keep their parent's nodeid: only drop what nothing names
            if not any(m.parent == nodeid for m in self.t.nodes.values()):
                del self.t.nodes[nodeid]
                if self.t.by_ino.get(node.ino) == nodeid:
                    del self.t.by_ino[node.ino]

    # -- syscalls as the agent -----------------------------------------------------------------

    def _as(self) -> Caller:
        """The agent, for one call: its correlation names the FUSE request (``s<pid>:fuse:<unique>``)."""
        c = self.caller
        return Caller(pid=c.pid, kind=c.kind, request=f"fuse:{self.unique}")

    def call_now(self, name: str, **args: Any) -> Any:
        """A syscall that must not park (a Block here is EAGAIN)."""
        self.own = True
        try:
            out = self.k.call(self._as(), name, args)
        finally:
            self.own = False
        if isinstance(out, Block | Stream):
            raise FuseError(errno.EAGAIN)
        return out.result

    async def call(self, name: str, **args: Any) -> Any:
        """A syscall as the runtime makes it: a parked call waits for its answer."""
        self.own = True
        caller = self._as()
        try:
            out = self.k.call(caller, name, args)
        finally:
            self.own = False
        if isinstance(out, Stream):
            raise FuseError(errno.EIO)
        if not isinstance(out, Block):
            return out.result
        fut: asyncio.Future[Any] = self.loop.create_future()

        def reply(result: Any, exc: BaseException | None) -> None:
            if not fut.done():
                fut.set_exception(exc) if exc is not None else fut.set_result(result)

        token = object()
        self.k.park(token, caller, out, reply)
        try:
            return await fut
        finally:
            self.k.unpark(token)

    # -- the request loop ----------------------------------------------------------------------

    def _read_loop(self) -> None:
        fd, poller = self.fd, select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self.stopped.is_set():
            ready = dict(poller.poll())
            if self._wake_r in ready or self.stopped.is_set():
                break
            if ready.get(fd, 0) & select.POLLERR and not self.requests and not self.stopped.wait(0.01):
                continue  # not mounted yet (the stage mounts it after we start): wait for its INIT
            if ready.get(fd, 0) & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                break  # unmounted, aborted or closed
            try:
                buf = os.read(fd, fp.BUFSIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                if e.errno == errno.ENOENT:  # the request was interrupted before we read it
                    continue
                break  # ENODEV: unmounted
            try:
                self.loop.call_soon_threadsafe(self._dispatch, buf)
            except RuntimeError:  # the loop is closed: the kernel is going away
                break
        self.stopped.set()
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._gone)

    def _gone(self) -> None:
        _hub_of(self.k).views.discard(self)

    def _notify_loop(self) -> None:
        while (frame := self._notes.get()) is not None:
            with contextlib.suppress(OSError):  # ENOENT: the kernel no longer caches that inode
                os.write(self.fd, frame)

    def invalidate(self, nodeid: int) -> None:
        if not self.stopped.is_set():
            self._notes.put(fp.notify_inval_inode(nodeid))

    def _dispatch(self, buf: bytes) -> None:
        try:
            req = fp.parse(buf)
        except Exception:  # a short read: not a request
            return
        self.requests += 1
        if req.opcode in fp.NO_REPLY:
            with contextlib.suppress(Exception):  # a malformed FORGET: nothing to answer, nothing to forget
                self.ops[req.opcode](self, req)
            return
        task = self.loop.create_task(self._serve(req))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, req: fp.Request) -> None:
        payload, err = b"", 0
        op = self.ops.get(req.opcode)
        try:
            if op is None:
                raise FuseError(errno.ENOSYS)
            self.unique = req.unique
            out = op(self, req)
            payload = (await out) if asyncio.iscoroutine(out) else out
        except FuseError as e:
            err = e.errno
        except AgentOSError as e:
            err = errno_of(e)
        except (ValueError, UnicodeDecodeError, KeyError, IndexError):
            err = errno.EINVAL
        except Exception:
            log.exception("fuse op %d failed", req.opcode)
            err = errno.EIO
        if self.k.fatal is not None:
            return  # the log failed: nothing may leave (the connection dies with the kernel)
        with contextlib.suppress(Exception):
            await self.k.committer.durable(self.k.head_seq)  # §4.3: a reply is an output
        self.send(fp.reply(req.unique, payload or b"", err))

    def send(self, frame: bytes) -> None:
        with contextlib.suppress(OSError):  # ENOENT: interrupted; ENODEV/EBADF: the connection is gone
            os.write(self.fd, frame)

    # -- the end ---------------------------------------------------------------------------------

    def close_files(self) -> None:
        """Close the agent's fds this view opened (cutting their versions); on the loop thread."""
        for h in list(self.t.files.values()):
            with contextlib.suppress(AgentOSError, FuseError):
                self.call_now("close", fd=h.fd)
        self.t.files.clear()

    def abort(self) -> None:
        """Abort the connection now, from any thread: every request in flight and every later one
        fails with ENOTCONN (as when the kernel dies). ``stop()`` still cleans up after it."""
        self.stopped.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)  # the last reference to the connection: the kernel aborts it

    def stop(self) -> None:
        """End the connection: the mount (if ours) is detached, the fd closed (aborting what is in
        flight), the agent's fds closed. Callable from any thread."""
        if self._reader is None:
            return
        self.stopped.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if threading.current_thread() is not self._reader:
            self._reader.join(5)
        self._notes.put(None)
        self._notifier.join(5)
        if self.mountpoint is not None:
            with contextlib.suppress(OSError):
                fp.unmount(self.mountpoint)
        for fd in (self.fd, self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = -1
        self._reader = None  # type: ignore[assignment]
        if _on_loop(self.loop):
            self.close_files()
            self._gone()
        elif not self.loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_close_files(self), self.loop).result(5)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _close_files(view: FuseView) -> None:
    view.close_files()
    view._gone()


# -- invalidation from the kernel's file events ------------------------------------------------------


class Hub:
    """One watcher per kernel for every view: a content change not made by the view itself drops
    that file's page cache in the views that know it."""

    def __init__(self, k: Kernel) -> None:
        self.views: weakref.WeakSet[FuseView] = weakref.WeakSet()
        k.watch(CONTENT, self.on_event)

    def on_event(self, seq: int, payload: Any) -> None:
        for view in list(self.views):
            if view.own:
                continue
            nodeid = view.t.by_ino.get(payload.ino)
            if nodeid is not None:
                view.invalidate(nodeid)


_HUBS: weakref.WeakKeyDictionary[Kernel, Hub] = weakref.WeakKeyDictionary()


def _hub_of(k: Kernel) -> Hub:
    hub = _HUBS.get(k)
    if hub is None:
        hub = _HUBS[k] = Hub(k)
    return hub


def serve(
    k: Kernel, pid: int, target: int | str, *, root: str = "/", kind: str | None = None, timeout: float = 0.0
) -> FuseView:
    """Serve the VFS under ``root`` as ``pid`` on a FUSE connection; call on the kernel's loop.

    ``target``: an fd on ``/dev/fuse`` (mounted, or to be mounted, by whoever holds the agent's
    mount namespace: the view never touches a path), or a directory to mount it at here (needs
    root; ``stop()`` unmounts it). ``kind``: the Caller kind its syscalls are made as (default: the
    process's own, "process" for a real program, "agent" for an SDK agent)."""
    proc = k.state.world.procs.get(pid)
    caller = Caller(pid=pid, kind=kind or (proc.kind if proc is not None else "agent"))
    if isinstance(target, int):
        return FuseView(k, caller, target, root, timeout=timeout)
    fd = fp.open_dev()
    mounted = False
    try:
        fp.mount(fd, target)
        mounted = True
        return FuseView(k, caller, fd, root, timeout=timeout, mountpoint=target)
    except BaseException:
        os.close(fd)
        if mounted:
            fp.unmount(target)
        raise
