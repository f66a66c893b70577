"""A process agent's ``/work``: its directory of the AgentOS VFS, served over FUSE as the agent.

Every run of a process agent gets a fresh FUSE connection (``fusefs.serve``) on its VFS directory
``/shared/agents/<pid>`` (``sysprocagent.vfs_workdir``; made by the agent itself on its first run, so
it is the agent's, within its capabilities, and ``agentos undo --pid P`` covers it). The kernel opens
``/dev/fuse`` and serves it *before* the launch; the launcher's outer stage mounts the fd at an empty
host directory (``HOME/agents/view``, one for all agents) inside a private mount namespace and closes
its copy; bubblewrap binds that directory at ``/work``. So every write a real program makes is a
syscall of its pid (versioned, attributed, undoable), the host's mount table never shows the mount,
and a dead kernel aborts the connection (``ENOTCONN`` inside, nothing hangs).

The view is aborted when its run is killed (``KILL``, rewind, shutdown: a request already read is
answered from the loop, which is busy killing, so the program would wait in the kernel otherwise) and
stopped when the run ends. Nothing here touches a path under the mount.

Where FUSE is unusable (no ``/dev/fuse``, or ``AGENTOS_PROC_VIEW=host``), ``/work`` is the old host
directory ``HOME/agents/<pid>/work``, whose writes are NOT recorded; ``agentos status`` and the boot
log say so (``MISSING``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from typing import TYPE_CHECKING

from agentos import param
from agentos.errors import AgentOSError
from agentos.kernel import sysprocagent
from agentos.kernel.calls import Block, Caller, Stream
from agentos.runtime import fuseproto
from agentos.runtime.fusefs import FuseView, serve

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel
    from agentos.state.proc import Process

log = logging.getLogger("agentos.procagents")
ENV_SWITCH = "AGENTOS_PROC_VIEW"  # "host": the unrecorded host directory even where FUSE works


def probe_fuse() -> str | None:
    """Why a FUSE view cannot be used here, or None when it can."""
    if os.environ.get(ENV_SWITCH, "").lower() == "host":
        return f"{ENV_SWITCH}=host"
    try:
        os.close(fuseproto.open_dev())
    except OSError as err:
        return f"/dev/fuse: {err.strerror}"
    return None


class Views:
    """Opens and ends the FUSE views of process agents' runs (held by the runner)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.problem = probe_fuse()
        if self.problem is None:
            self.summary = (
                f"process /work: the agent's VFS directory through FUSE ({param.PROC_VFS_WORKDIRS}/PID)"
            )
        else:
            self.summary = (
                f"process /work: MISSING FUSE view ({self.problem}): a host directory whose writes are "
                "NOT recorded in the VFS"
            )
        (log.info if self.problem is None else log.warning)("%s", self.summary)

    def open(self, p: Process) -> tuple[FuseView | None, str]:
        """The run's view (None: the host-directory fallback) and the host directory to give
        ``launch`` as ``workdir`` (the empty mount point, or the fallback work directory)."""
        if self.problem is not None:
            wd = sysprocagent.workdir(self.k, p.pid)
            wd.mkdir(parents=True, exist_ok=True)
            return None, str(wd)
        root = sysprocagent.vfs_workdir(p.pid)
        self._mkdir(Caller(param.KERNEL_PID, "kernel", request="proc-view"), param.PROC_VFS_WORKDIRS, 0o777)
        self._mkdir(Caller(p.pid, "process", request="proc-view"), root, 0o755)
        mountpoint = self.k.home.path / "agents" / "view"
        mountpoint.mkdir(parents=True, exist_ok=True)
        fd = fuseproto.open_dev()
        try:
            return serve(self.k, p.pid, fd, root=root), str(mountpoint)
        except BaseException:
            os.close(fd)
            raise

    def _mkdir(self, c: Caller, path: str, mode: int) -> None:
        """``mkdir`` as ``c`` unless ``path`` is a directory already (then nothing is recorded)."""
        try:
            if self.k.call(c, "stat", {"path": path}).result.get("kind") == "dir":  # type: ignore[union-attr]
                return
        except AgentOSError as err:
            if err.code != "ENOENT":
                raise
        out = self.k.call(c, "mkdir", {"path": path, "mode": mode})
        if isinstance(out, Block | Stream):  # mkdir never parks; a surprise is a failed launch
            raise AgentOSError(f"mkdir {path} did not complete", code=errno.errorcode[errno.EAGAIN])


def abort(view: FuseView | None) -> None:
    """Fail every request in flight and to come (ENOTCONN): the run is being killed."""
    if view is not None:
        view.abort()


def end(view: FuseView | None) -> int:
    """Stop a run's view (its fd closed, the agent's files the view held open closed); 1 if any."""
    if view is None:
        return 0
    with contextlib.suppress(Exception):  # a kernel going away: nothing left to serve
        view.stop()
    return 1
