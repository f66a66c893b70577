"""``/proc``: the kernel's state as read-only text files, generated when they are opened.

Why: a process (or a person with ``agentos fs cat``) can look at itself and the system with the
file calls it already has, as on Linux. The content an fd reads is made once, at its open (as
Linux's seq_file gives a consistent read), so a read in pieces never mixes two moments; after a
kernel restart an fd's content is made again at its first use.

Files (``key: value`` lines, or a tab-separated table under a header line; ``\\``, tab and newline
in a value are written ``\\\\``, ``\\t``, ``\\n``)::

    /proc/meminfo  /proc/uptime  /proc/mounts
    /proc/self -> /proc/<the caller's pid>
    /proc/<pid>/status   name, state, ppid, group, root, syscalls, cpu_ms, fds, tmp_bytes ...
    /proc/<pid>/cmdline  target and argv, each ended by a NUL (as Linux's)
    /proc/<pid>/caps     its capabilities, as ``cap_list`` shows them
    /proc/<pid>/fds      its fd table: fd, flags, offset, path
    /proc/<pid>/limits   its resource groups' limits and usage, nearest group first

``readdir /proc`` lists the processes not yet reaped. Who may read what (``fs:/proc/...`` with
``read`` first, as any path): one's own directory, all of it — except ``caps`` for an opaque
process, refused as ``cap_list`` is; another process's ``status`` and ``cmdline`` need what ``ps``
needs (``sys:proc`` ``list``); its ``caps`` and ``fds`` what the administrators' ``caps`` view
needs (``admin`` ``caps``), its ``limits`` what ``groups`` needs (``admin`` ``groups``). So
``/proc`` never shows more than the calls it stands for.
"""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import NotFound, PermissionDenied
from agentos.kernel.calls import Done
from agentos.kernel.syscap import cap_row
from agentos.kernel.vfs.mountfs import (
    Handle,
    Lost,
    MountFS,
    Open,
    Routed,
    is_dir,
    missing,
    not_dir,
    opened,
    readonly,
    stat_row,
)
from agentos.state.proc import DEAD, Process
from agentos.state.vfs import APPEND, READ, WRITE, OpenFile

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel
    from agentos.kernel.vfs.mounts import Mounts

TOP = ("meminfo", "mounts", "uptime")
PER_PROCESS = ("caps", "cmdline", "fds", "limits", "status")
# another process's file -> the (resource, right) of the call it stands for
OTHERS: dict[str, tuple[str, str]] = {
    "status": ("sys:proc", "list"),
    "cmdline": ("sys:proc", "list"),
    "caps": ("admin", "caps"),
    "fds": ("admin", "caps"),
    "limits": ("admin", "groups"),
}


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # a limit or usage stored as a float
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _pairs(rows: list[tuple[str, Any]]) -> str:
    return "".join(f"{key}: {_value(v)}\n" for key, v in rows)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    return "".join("\t".join(_value(v) for v in row) + "\n" for row in [header, *rows])


class Text(Handle):
    """A /proc file's content, fixed when it was made."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]


class ProcFS(MountFS):
    kind = "proc"

    def __init__(self, mounts: Mounts) -> None:
        self.mounts = mounts

    # -- names ----------------------------------------------------------------------------------------

    def _parse(self, r: Routed) -> tuple[Process | None, str | None]:
        """(process, file name) that ``r`` names: (None, None) is /proc, (None, "uptime") a top
        file, (p, None) a process's directory; ENOENT or ENOTDIR for anything else."""
        parts = [part for part in r.path.split("/") if part]
        if not parts:
            return None, None
        head, rest = parts[0], parts[1:]
        if head in TOP:
            if rest or r.wants_dir:
                raise not_dir(r)
            return None, head
        pid = r.c.pid if head == "self" else (int(head) if head.isdigit() and head == str(int(head)) else 0)
        p = r.k.state.world.procs.get(pid)
        if p is None or p.state == DEAD:
            raise missing(r)
        if not rest:
            return p, None
        if rest[0] not in PER_PROCESS:
            raise missing(r)
        if len(rest) > 1 or r.wants_dir:
            raise not_dir(r)
        return p, rest[0]

    def _may_read(self, r: Routed, p: Process, name: str) -> None:
        if r.c.kind == "kernel":
            return
        if p.pid == r.c.pid:
            if name == "caps" and p.caps_opaque:
                raise PermissionDenied(
                    f"process {p.pid} was started with opaque capabilities: it may use them, not list them",
                    code="EACCES",
                )
            return
        res, right = OTHERS[name]
        r.k.authority.authorise(r.c, "open", res, right)

    # -- the path calls -------------------------------------------------------------------------------

    def stat(self, r: Routed) -> dict[str, Any]:
        p, name = self._parse(r)
        if name is None:
            return stat_row(r, "dir", 0o555, mtime_ns=p.created_ts if p is not None else 0)
        return stat_row(r, "file", 0o444)

    def readdir(self, r: Routed) -> list[str]:
        p, name = self._parse(r)
        if name is not None:
            raise not_dir(r)
        if p is not None:
            return list(PER_PROCESS)
        pids = sorted(q.pid for q in r.k.state.world.procs.procs.values() if q.state != DEAD)
        return [*sorted((*TOP, "self")), *map(str, pids)]

    def open(self, r: Routed, want: Open) -> Done:
        if want.rw & (WRITE | APPEND):
            raise readonly(r)
        try:
            p, name = self._parse(r)
        except NotFound:
            if "create" in want.flags:
                raise readonly(r) from None  # nothing new in /proc
            raise
        if name is None:
            raise is_dir(r, " (use readdir)")
        if p is not None:
            self._may_read(r, p, name)
            return opened(r, want, path=f"/{p.pid}/{name}")  # /proc/self: the caller's, fixed now
        return opened(r, want)

    def handle(self, k: Kernel, f: OpenFile, *, fresh: bool) -> Handle:
        head, _, name = f.path.strip("/").partition("/")
        if not name:
            return Text(self.top(k, head).encode())
        p = k.state.world.procs.get(int(head)) if head.isdigit() else None
        if p is None or p.state == DEAD or name not in PER_PROCESS:
            return Lost(f"process {head} is gone: /proc{f.path} cannot be read again")
        return Text(getattr(self, name)(k, p).encode("utf-8", "surrogateescape"))

    # -- the content ------------------------------------------------------------------------------------

    def top(self, k: Kernel, name: str) -> str:
        if name == "uptime":
            return _pairs(
                [
                    ("uptime_seconds", f"{time.monotonic() - k.started_monotonic:.3f}"),
                    ("boot", k.state.ledger.boots),
                    ("seq", k.head_seq),
                ]
            )
        if name == "mounts":
            rows = [
                (point, kind, "-", "ro" if kind == "proc" else "rw") for point, kind in self.mounts.builtin()
            ]
            rows += [
                (point, m.kind, m.source or "-", "ro" if m.readonly else "rw")
                for point, m in sorted(k.state.world.vfs.mounts.items())
            ]
            return _table(("point", "kind", "source", "options"), sorted(rows))
        fs = k.state.world.vfs
        page = os.sysconf("SC_PAGE_SIZE")
        return _pairs(
            [
                ("processes", len(k.state.world.procs.alive())),
                ("inodes", len(fs.inodes)),
                ("open_files", len(fs.files)),
                ("tmp_bytes", sum(t.used for t in self.mounts.tmps.values())),
                ("tmp_files", sum(t.files for t in self.mounts.tmps.values())),
                ("tmp_max_bytes", param.TMP_MAX_BYTES),
                ("kernel_max_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
                ("host_total_bytes", page * os.sysconf("SC_PHYS_PAGES")),
                ("host_available_bytes", page * os.sysconf("SC_AVPHYS_PAGES")),
            ]
        )

    def status(self, k: Kernel, p: Process) -> str:
        tmp = self.mounts.tmps.get(p.pid)
        return _pairs(
            [
                ("name", p.name),
                ("pid", p.pid),
                ("ppid", p.ppid),
                ("kind", p.kind),
                ("state", p.state),
                ("wait", p.wait_call),
                ("stop_reason", p.stop_reason),
                ("group", p.group),
                ("root", p.root or "/"),
                ("console", p.console),
                ("epoch", p.epoch),
                ("syscalls", p.syscalls),
                ("cpu_ms", round(k.state.ledger.cpu_ns.get(p.pid, 0) / 1e6, 3)),
                ("started_ns", p.created_ts),
                ("exited_ns", p.exited_ts),
                ("exit_status", p.exit_status),
                ("target", p.target),
                ("opaque", p.caps_opaque),
                ("fds", len(k.state.world.vfs.fds.get(p.pid, {}))),
                ("tmp_bytes", tmp.used if tmp is not None else 0),
            ]
        )

    def cmdline(self, k: Kernel, p: Process) -> str:
        return "".join(f"{arg}\0" for arg in ([p.target, *p.argv] if p.target else p.argv))

    def caps(self, k: Kernel, p: Process) -> str:
        holder = param.INIT_PID if p.kind == "session" else p.pid  # a session acts with init's
        header = (
            "cap",
            "resource",
            "rights",
            "status",
            "origin",
            "parent",
            "depth",
            "expires_ns",
            "uses_left",
        )
        rows = []
        for cap in k.state.world.caps.held_by(holder):
            row = cap_row(k, cap)
            rows.append(tuple(",".join(row["rights"]) if f == "rights" else row[f] for f in header))
        return _table(header, rows)

    def fds(self, k: Kernel, p: Process) -> str:
        fs = k.state.world.vfs
        rows = []
        for fd in sorted(fs.fds.get(p.pid, {})):
            f = fs.open_file(p.pid, fd)
            if f is None:
                continue
            bits = [
                name for bit, name in ((READ, "read"), (WRITE, "write"), (APPEND, "append")) if f.flags & bit
            ]
            path = (f.mount + f.path.rstrip("/")) if f.mount else (fs.path_of(f.ino) or "(deleted)")
            rows.append((fd, ",".join(bits), f.offset, path))
        return _table(("fd", "flags", "offset", "path"), rows)

    def limits(self, k: Kernel, p: Process) -> str:
        chain = [g.name for g in k.state.world.groups.chain(p.group)]
        by_name = {row["name"]: row for row in k.quotas.rows() if row["name"] in chain}
        rows = []
        for group in chain:
            row = by_name[group]
            usage, limits = row["usage"], row["limits"]
            for name in sorted(set(limits) | {n for n, v in usage.items() if v}):
                rows.append((name, usage.get(name, 0), limits.get(name), group))
        return _table(("limit", "used", "max", "group"), rows)
