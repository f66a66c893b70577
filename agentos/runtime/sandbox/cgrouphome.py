"""A home's cgroups: its root group, resource groups, agent groups, and what a dead kernel left behind.

Layout, the same relative path in every tree used (``CgroupSupport.mounts()``)::

    <tree>/agentos-<home id>/                      the home's root (one per home, created at boot)
        agent-<pid>/                               an agent in the root resource group "/"
        g-<name>/[g-<name>/…]agent-<pid>/          an agent in resource group "/<name>/…"

Resource groups nest like the kernel's (``state.groups``), so a limit set on ``g-x`` holds for every
agent under it (v1 memory and pids are hierarchical; v2 always is). Directories are created 0755 by
the kernel's user: agents (other uids, or a user namespace) cannot write their own limits.

Boot after a ``kill -9``: ``find_leftovers()`` lists the agent groups a previous kernel left and the
host processes still in them; ``adopt_or_kill(adopt)`` keeps the ones the kernel takes back and kills
and removes the rest, so no host process is left running untracked. The kernel records the report.

Typical use (the kernel and the launcher)::

    mgr = CgroupManager(home_cgroup_id(home))
    mgr.setup()                                   # once per boot; mgr.support.summary() for the log
    report = mgr.adopt_or_kill(adopt=())          # before any new agent starts
    cg = mgr.create(pid, Limits(memory_bytes=256 << 20, pids_max=64, cpu_max=1.0))
    # launcher: write "0" into each of cg.procs_files(), then exec the agent program
    cg.usage(); cg.freeze(); cg.thaw(); mgr.update(pid, limits)
    cg.kill(); cg.remove()                        # on exit, or mgr.destroy(pid)
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from agentos import param
from agentos.errors import AgentOSError, Conflict, InvalidArgument, NotFound
from agentos.runtime.sandbox.cgroupfs import CgroupSupport, probe, read_pids, read_text, write_text
from agentos.runtime.sandbox.cgroups import AgentCgroup, Limits, remove_tree

NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
AGENT_DIR = re.compile(r"agent-([0-9]{1,12})")


def home_cgroup_id(home: str | os.PathLike[str]) -> str:
    """A short, stable id for a home directory (its resolved path's sha256 prefix)."""
    return hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:16]


def group_rel(group: str) -> str:
    """A resource group's path (``/``, ``/a``, ``/a/b``) as nested directory names (``g-a/g-b``)."""
    if not isinstance(group, str) or not group.startswith("/"):
        raise InvalidArgument(f"resource group must be a path starting with '/': {group!r}")
    parts = [p for p in group.split("/") if p]
    for p in parts:
        if not NAME.fullmatch(p) or p in (".", ".."):
            raise InvalidArgument(f"resource group name part {p!r} is not [A-Za-z0-9_.@-]{{1,64}}")
    return "/".join(f"g-{p}" for p in parts)


@dataclass(frozen=True)
class Leftover:
    """An agent group a previous kernel left: its agent pid, resource group and live host pids."""

    pid: int
    group: str
    rel: str
    host_pids: tuple[int, ...]


@dataclass
class LeftoverReport:
    """What ``adopt_or_kill`` found and did (the kernel records it as an event)."""

    found: list[Leftover] = field(default_factory=list)
    adopted: dict[int, AgentCgroup] = field(default_factory=dict)
    killed: list[int] = field(default_factory=list)  # agent pids whose groups were killed and removed
    host_pids_killed: int = 0
    stray_host_pids: list[int] = field(default_factory=list)  # outside any agent group, killed too
    groups_removed: int = 0
    errors: list[str] = field(default_factory=list)


class CgroupManager:
    """The cgroups of one home. ``support`` defaults to ``probe()``; ``parent`` is where under each
    tree's root the home's root goes ("" = the tree's root, so a rebooted kernel finds it again
    wherever the new kernel process itself was started)."""

    def __init__(self, home_id: str, support: CgroupSupport | None = None, parent: str = "") -> None:
        if not isinstance(home_id, str) or not NAME.fullmatch(home_id):
            raise InvalidArgument(f"home id must be [A-Za-z0-9_.@-]{{1,64}}: {home_id!r}")
        if parent and any(not NAME.fullmatch(p) for p in parent.split("/")):
            raise InvalidArgument(f"bad cgroup parent {parent!r}")
        self.support = support if support is not None else probe()
        self.root_rel = os.path.join(parent, f"agentos-{home_id}")
        self._groups: dict[int, AgentCgroup] = {}
        self._lock = threading.Lock()

    def _dirs(self, rel: str) -> list[str]:
        return [os.path.join(m, rel) for m in self.support.mounts()]

    # -- creating ----------------------------------------------------------------------------------

    def setup(self) -> list[str]:
        """Create the home's root group in every tree used (idempotent) and, on v2, enable its
        controllers down to it. Returns problems worth logging (empty when all is well)."""
        problems: list[str] = []
        if not self.support.usable:
            return ["no cgroup tree is usable"]
        self._mkdirs(self.root_rel, problems)
        return problems

    def _mkdirs(self, rel: str, problems: list[str]) -> None:
        """Create ``rel`` (and its parents) in every tree; on v2 each parent hands its controllers on."""
        parts = rel.split("/")
        for mount in self.support.mounts():
            for depth in range(1, len(parts) + 1):
                path = os.path.join(mount, *parts[:depth])
                if mount == self.support.v2 and self.support.v2_controllers:
                    self._enable_v2(os.path.dirname(path), problems)
                try:
                    os.mkdir(path, 0o755)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise NotFound(f"cannot create cgroup {path}: {e.strerror}", code="ENOENT") from None

    def _enable_v2(self, path: str, problems: list[str]) -> None:
        """Let ``path``'s children use memory, pids and cpu (v2 ``cgroup.subtree_control``)."""
        control = os.path.join(path, "cgroup.subtree_control")
        try:
            have = set(read_text(control).split())
        except AgentOSError as e:
            problems.append(str(e))
            return
        for ctl in sorted(self.support.v2_controllers - have):
            try:
                write_text(control, f"+{ctl}")
            except AgentOSError as e:  # e.g. processes in a non-root group: v2's no-internal-process rule
                problems.append(f"cannot enable {ctl} in {path}: {e}")

    def ensure_group(self, group: str, limits: Limits | None = None) -> str:
        """Create a resource group's cgroup (and its parents) and set its limits; returns its path."""
        rel = os.path.join(self.root_rel, group_rel(group)) if group != "/" else self.root_rel
        problems: list[str] = []
        self._mkdirs(rel, problems)
        if limits is not None:  # on "/", the home's root: a cap on all the home's agents together
            AgentCgroup(self.support, rel, 0, group).set_limits(limits)
        return rel

    def create(self, pid: int, limits: Limits | None = None, group: str = "/") -> AgentCgroup:
        """Create agent ``pid``'s group under resource group ``group`` with ``limits`` (refused with
        ``PermissionDenied`` ENOSYS where this host cannot enforce one). ``Conflict`` if it exists."""
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 10**12:
            raise InvalidArgument(f"not an agent pid: {pid!r}")
        parent = self.ensure_group(group)
        cg = AgentCgroup(self.support, os.path.join(parent, f"agent-{pid}"), pid, group)
        if cg.exists:
            raise Conflict(f"cgroup of agent {pid} already exists ({cg.rel})", code="EEXIST")
        self._mkdirs(cg.rel, [])
        try:
            cg.set_limits(limits or Limits())
        except AgentOSError:
            cg.remove()
            raise
        with self._lock:
            self._groups[pid] = cg
        return cg

    def get(self, pid: int) -> AgentCgroup:
        """Agent ``pid``'s group (one this manager created or adopted); ``NotFound`` otherwise."""
        with self._lock:
            cg = self._groups.get(pid)
        if cg is None or not cg.exists:
            raise NotFound(f"agent {pid} has no cgroup", code="ESRCH")
        return cg

    def update(self, pid: int, limits: Limits) -> None:
        """Change a live agent's limits (None fields become unlimited)."""
        self.get(pid).set_limits(limits)

    def destroy(self, pid: int, timeout: float = param.CGROUP_SETTLE_SECONDS) -> int:
        """Kill agent ``pid``'s whole group and remove it; returns how many host processes it held."""
        with self._lock:
            cg = self._groups.pop(pid, None)
        if cg is None:
            return 0
        n = cg.kill(timeout)
        cg.remove(timeout)
        return n

    # -- after a crash -----------------------------------------------------------------------------

    def find_leftovers(self) -> list[Leftover]:
        """Agent groups under this home's root in any tree, with the host pids in each (by pid)."""
        found: dict[str, set[int]] = {}
        for mount in self.support.mounts():
            for path, subdirs, _ in os.walk(os.path.join(mount, self.root_rel)):
                if AGENT_DIR.fullmatch(os.path.basename(path)):
                    subdirs.clear()
                    found.setdefault(os.path.relpath(path, mount), set()).update(_procs_below(path))
        out = []
        for rel, pids in found.items():
            parts = rel[len(self.root_rel) + 1 :].split("/")
            group = "/" + "/".join(p[2:] for p in parts[:-1])
            m = AGENT_DIR.fullmatch(parts[-1])
            assert m is not None
            out.append(Leftover(pid=int(m.group(1)), group=group, rel=rel, host_pids=tuple(sorted(pids))))
        return sorted(out, key=lambda lo: lo.pid)

    def stray_host_pids(self) -> list[int]:
        """Host processes in the home's root or a resource group itself, outside any agent group
        (v1 allows that; nothing here puts them there, so they are killed at boot)."""
        pids: set[int] = set()
        for top in self._dirs(self.root_rel):
            for path, subdirs, _ in os.walk(top):
                subdirs[:] = [s for s in subdirs if not AGENT_DIR.fullmatch(s)]
                pids.update(read_pids(os.path.join(path, "cgroup.procs")))
        return sorted(pids)

    def adopt_or_kill(
        self,
        adopt: Collection[int] | Callable[[Leftover], bool] = (),
        timeout: float = param.CGROUP_SETTLE_SECONDS,
    ) -> LeftoverReport:
        """Keep the leftover groups of the agents in ``adopt`` (pids, or a predicate on each
        ``Leftover``: an agent the kernel still tracks as running); kill and remove every other
        one, and any stray process. Never raises for one bad group: its error is in the report."""
        keep = adopt if callable(adopt) else (lambda lo, pids=frozenset(adopt): lo.pid in pids)
        report = LeftoverReport(found=self.find_leftovers())
        for lo in report.found:
            cg = AgentCgroup(self.support, lo.rel, lo.pid, lo.group)
            if keep(lo):
                with self._lock:
                    self._groups[lo.pid] = cg
                report.adopted[lo.pid] = cg
                continue
            try:
                report.host_pids_killed += cg.kill(timeout)
                report.groups_removed += cg.remove(timeout)
                report.killed.append(lo.pid)
            except AgentOSError as e:
                report.errors.append(f"agent {lo.pid}: {e}")
        report.stray_host_pids = self.stray_host_pids()
        for p in report.stray_host_pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return report

    def teardown(self, timeout: float = param.CGROUP_SETTLE_SECONDS) -> int:
        """Kill every agent of the home and remove all its cgroups, root included (``shutdown --kill``,
        tests). Returns the host processes killed."""
        report = self.adopt_or_kill((), timeout)
        if report.errors:
            raise Conflict("; ".join(report.errors), code="EBUSY")
        with self._lock:
            self._groups.clear()
        remove_tree(self._dirs(self.root_rel), timeout)
        return report.host_pids_killed + len(report.stray_host_pids)


def _procs_below(path: str) -> set[int]:
    """Host pids in a group and any group under it."""
    return {p for sub, _, _ in os.walk(path) for p in read_pids(os.path.join(sub, "cgroup.procs"))}
