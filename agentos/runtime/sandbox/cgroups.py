"""One agent's cgroup over v1 and v2 alike: limits, membership, usage, freeze, kill, removal.

An ``AgentCgroup`` is the same relative path (``agentos-<home id>/[g-<group>/…]agent-<pid>``) in each
cgroup tree that ``CgroupSupport.mounts()`` names; ``cgrouphome.CgroupManager`` creates and finds them.
The name comes from the agent's AgentOS pid, which is home-wide and never reused (ARCHITECTURE §4.4),
so a group name never collides across branches or reboots.

How a process joins (for the launcher): a process moves itself into the group by writing ``0`` into
each path of ``procs_files()``, all of them, before it execs the agent program (so nothing the agent
runs is ever outside the group) and before it unshares its cgroup namespace (so the agent then sees
its own group as ``/``). Open those files before entering a mount namespace that hides
``/sys/fs/cgroup``. ``attach(host_pid)`` does the same from outside, for an already running process.

Limits apply where the feature is served (``CgroupSupport.backend``); a limit asked for where the host
has no way to enforce it is refused with ``PermissionDenied`` (code ENOSYS), never silently dropped.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from agentos import param
from agentos.errors import InvalidArgument, NotFound, PermissionDenied, TimedOut
from agentos.runtime.sandbox.cgroupfs import (
    CgroupSupport,
    read_int,
    read_keyed,
    read_pids,
    read_text,
    typed,
    wait_until,
    write_text,
)

CPU_PERIOD_US = 100_000  # the CFS period a cpu limit is expressed over (v1 and v2 default)
MIN_MEMORY_BYTES = 1 << 20  # less than this cannot even start a shell; refuse it as a typo
MAX_PIDS = 4_194_304  # the kernel's own pid_max ceiling


@dataclass(frozen=True)
class Limits:
    """What an agent's group enforces; None is unlimited. ``cpu_max`` is in CPUs (0.5 = half of one
    CPU's time, 2.0 = two CPUs); ``cpu_weight`` is a share on v2's scale (1..10000, 100 = default),
    mapped to v1's ``cpu.shares`` as weight * 1024 / 100."""

    memory_bytes: int | None = None
    pids_max: int | None = None
    cpu_max: float | None = None
    cpu_weight: int | None = None

    def __post_init__(self) -> None:
        def bounded(name: str, value: object, low: float, high: float) -> None:
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidArgument(
                    f"cgroup limit {name} must be a number in [{low:g}, {high:g}]: {value!r}"
                )

        bounded("memory_bytes", self.memory_bytes, MIN_MEMORY_BYTES, 2**62)
        bounded("pids_max", self.pids_max, 1, MAX_PIDS)
        bounded("cpu_max", self.cpu_max, 0.01, 4096)
        bounded("cpu_weight", self.cpu_weight, 1, 10_000)
        for name in ("memory_bytes", "pids_max", "cpu_weight"):
            value = getattr(self, name)
            if value is not None and value != int(value):
                raise InvalidArgument(f"cgroup limit {name} must be a whole number: {value!r}")
            if value is not None:
                object.__setattr__(self, name, int(value))

    @classmethod
    def from_quotas(cls, quotas: dict[str, float]) -> Limits:
        """The cgroup part of a resource group's limits (``state.groups.Group.limits``): the keys
        ``memory_bytes``, ``pids_max``, ``cpu_max`` and ``cpu_weight``; other quotas are the kernel's."""
        return cls(
            **{k: quotas[k] for k in ("memory_bytes", "pids_max", "cpu_max", "cpu_weight") if k in quotas}
        )

    def asked(self) -> list[str]:
        """The features these limits need (``memory``, ``pids``, ``cpu``)."""
        out = ["memory"] if self.memory_bytes is not None else []
        out += ["pids"] if self.pids_max is not None else []
        return out + (["cpu"] if self.cpu_max is not None or self.cpu_weight is not None else [])


@dataclass(frozen=True)
class Usage:
    """What the group used, read from the kernel's counters; None where this host does not count it."""

    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    pids: int | None = None
    pids_refused: int = 0  # forks refused (pids.events "max"; some kernels count it only where the limit is)
    cpu_ns: int | None = None
    oom_kills: int = 0  # processes of the group the OOM killer killed

    @property
    def fault(self) -> str | None:
        """How a death in this group should be typed: ``oom`` if the OOM killer acted, ``pids`` if
        forks were refused at the limit, else None (decide from the exit status)."""
        return "oom" if self.oom_kills else ("pids" if self.pids_refused else None)


class AgentCgroup:
    """One agent's group: the same relative path in every tree used. Methods are safe to call from
    any thread; each is a few file reads/writes."""

    def __init__(self, support: CgroupSupport, rel: str, pid: int, group: str = "/") -> None:
        self.support, self.rel, self.pid, self.group = support, rel, pid, group
        self.dirs = [os.path.join(m, rel) for m in support.mounts()]

    def __repr__(self) -> str:
        return f"AgentCgroup(pid={self.pid}, rel={self.rel!r})"

    def _dir(self, feature: str) -> str | None:
        """The directory serving ``feature`` (memory, pids, cpu, cpu usage, freeze) or None."""
        backend = self.support.backend(feature)
        if backend == "v2":
            return os.path.join(self.support.v2 or "", self.rel)
        ctl = {"cpu usage": "cpuacct", "freeze": "freezer"}.get(feature, feature)
        return os.path.join(self.support.v1[ctl], self.rel) if backend == "v1" else None

    @property
    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs)

    # -- membership -----------------------------------------------------------------------------------

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes ``0`` into (each one) to join this group."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def attach(self, host_pid: int) -> None:
        """Move a running host process into the group (into every tree; a failure part way is raised,
        and the caller should kill the process: it is only partly confined)."""
        if isinstance(host_pid, bool) or not isinstance(host_pid, int) or host_pid <= 0:
            raise InvalidArgument(f"not a host pid: {host_pid!r}")
        for path in self.procs_files():
            write_text(path, str(host_pid))

    def host_pids(self) -> list[int]:
        """Host pids now in the group, in any tree (sorted, no duplicates)."""
        return sorted({p for path in self.procs_files() for p in read_pids(path)})

    def populated(self) -> bool:
        if self.support.v2:
            events = os.path.join(self.support.v2, self.rel, "cgroup.events")
            try:
                if read_keyed(events).get("populated", 0):
                    return True
            except NotFound:
                pass
        return bool(self.host_pids())

    # -- limits ---------------------------------------------------------------------------------------

    def set_limits(self, limits: Limits) -> None:
        """Apply ``limits`` exactly (None fields become unlimited); live, on a running group too."""
        for feature in limits.asked():
            if self._dir(feature) is None:
                raise PermissionDenied(
                    f"this host cannot enforce a {feature} limit (no cgroup controller)", code="ENOSYS"
                )
        if (d := self._dir("memory")) is not None:
            self._set_memory(d, limits.memory_bytes)
        if (d := self._dir("pids")) is not None:
            write_text(
                os.path.join(d, "pids.max"), "max" if limits.pids_max is None else str(limits.pids_max)
            )
        if (d := self._dir("cpu")) is not None:
            quota = None if limits.cpu_max is None else max(1000, round(limits.cpu_max * CPU_PERIOD_US))
            weight = 100 if limits.cpu_weight is None else limits.cpu_weight
            if self.support.backend("cpu") == "v2":
                write_text(os.path.join(d, "cpu.max"), f"{quota or 'max'} {CPU_PERIOD_US}")
                write_text(os.path.join(d, "cpu.weight"), str(weight))
            else:
                write_text(os.path.join(d, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
                write_text(os.path.join(d, "cpu.cfs_quota_us"), str(quota or -1))
                write_text(os.path.join(d, "cpu.shares"), str(min(262_144, max(2, weight * 1024 // 100))))

    def _set_memory(self, d: str, limit: int | None) -> None:
        if self.support.backend("memory") == "v2":
            write_text(os.path.join(d, "memory.max"), "max" if limit is None else str(limit))
            swap = os.path.join(d, "memory.swap.max")  # no swap past the limit: memory means memory
            if os.path.exists(swap):
                write_text(swap, "max" if limit is None else "0")
            return
        value = "-1" if limit is None else str(limit)
        files = [os.path.join(d, "memory.limit_in_bytes")]
        memsw = os.path.join(d, "memory.memsw.limit_in_bytes")  # memory + swap: only with swap accounting
        files += [memsw] if os.path.exists(memsw) else []
        try:  # memsw must stay >= the memory limit: lowering goes memory first, raising memsw first
            for path in files:
                write_text(path, value)
        except InvalidArgument:
            for path in reversed(files):
                write_text(path, value)

    def read_limits(self) -> Limits:
        """The limits in force, read back from the cgroup files."""
        memory = pids = weight = None
        cpu: float | None = None
        if (d := self._dir("memory")) is not None:
            v2 = self.support.backend("memory") == "v2"
            memory = read_int(os.path.join(d, "memory.max" if v2 else "memory.limit_in_bytes"))
        if (d := self._dir("pids")) is not None:
            pids = read_int(os.path.join(d, "pids.max"))
        if (d := self._dir("cpu")) is not None:
            if self.support.backend("cpu") == "v2":
                quota_text, period_text = read_text(os.path.join(d, "cpu.max")).split()
                cpu = None if quota_text == "max" else int(quota_text) / int(period_text)
                weight = int(read_text(os.path.join(d, "cpu.weight")))
            else:
                quota = read_int(os.path.join(d, "cpu.cfs_quota_us"))
                period = read_int(os.path.join(d, "cpu.cfs_period_us")) or CPU_PERIOD_US
                cpu = None if quota is None else quota / period
                weight = max(1, round(int(read_text(os.path.join(d, "cpu.shares"))) * 100 / 1024))
        return Limits(
            memory_bytes=memory, pids_max=pids, cpu_max=cpu, cpu_weight=None if weight == 100 else weight
        )

    # -- usage ----------------------------------------------------------------------------------------

    def usage(self) -> Usage:
        """Memory now and at peak, pids now and forks refused, CPU time, OOM kills."""
        mem = peak = pids = cpu = None
        refused = ooms = 0
        if (d := self._dir("memory")) is not None:
            if self.support.backend("memory") == "v2":
                mem = read_int(os.path.join(d, "memory.current"))
                peak_file = os.path.join(d, "memory.peak")  # Linux >= 5.19
                peak = read_int(peak_file) if os.path.exists(peak_file) else None
                ooms = read_keyed(os.path.join(d, "memory.events")).get("oom_kill", 0)
            else:
                mem = read_int(os.path.join(d, "memory.usage_in_bytes"))
                peak = read_int(os.path.join(d, "memory.max_usage_in_bytes"))
                ooms = read_keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)
        if (d := self._dir("pids")) is not None:
            pids = read_int(os.path.join(d, "pids.current"))
            events = os.path.join(d, "pids.events")
            refused = read_keyed(events).get("max", 0) if os.path.exists(events) else 0
        if (d := self._dir("cpu usage")) is not None:
            if self.support.backend("cpu usage") == "v2":
                cpu = read_keyed(os.path.join(d, "cpu.stat")).get("usage_usec", 0) * 1000
            else:
                cpu = read_int(os.path.join(d, "cpuacct.usage"))
        return Usage(
            memory_bytes=mem,
            memory_peak_bytes=peak,
            pids=pids,
            pids_refused=refused,
            cpu_ns=cpu,
            oom_kills=ooms,
        )

    # -- freeze, thaw, kill, remove -------------------------------------------------------------------

    def frozen(self) -> bool:
        d = self._dir("freeze")
        if d is None:
            return False
        if self.support.backend("freeze") == "v2":
            return bool(read_keyed(os.path.join(d, "cgroup.events")).get("frozen", 0))
        return read_text(os.path.join(d, "freezer.state")).strip() == "FROZEN"

    def freeze(self, timeout: float = param.CGROUP_SETTLE_SECONDS) -> None:
        """Stop every process of the group; returns once the kernel says all are frozen."""
        d = self._dir("freeze")
        if d is None:
            raise PermissionDenied("this host has no cgroup freezer", code="ENOSYS")
        if self.support.backend("freeze") == "v2":
            write_text(os.path.join(d, "cgroup.freeze"), "1")
        else:
            write_text(os.path.join(d, "freezer.state"), "FROZEN")
        if not wait_until(self.frozen, timeout):  # v1 may sit in FREEZING (a task in D state)
            raise TimedOut(f"cgroup {self.rel} did not freeze within {timeout:g}s")

    def thaw(self, timeout: float = param.CGROUP_SETTLE_SECONDS) -> None:
        d = self._dir("freeze")
        if d is None:
            raise PermissionDenied("this host has no cgroup freezer", code="ENOSYS")
        if self.support.backend("freeze") == "v2":
            write_text(os.path.join(d, "cgroup.freeze"), "0")
        else:
            write_text(os.path.join(d, "freezer.state"), "THAWED")
        if not wait_until(lambda: not self.frozen(), timeout):
            raise TimedOut(f"cgroup {self.rel} did not thaw within {timeout:g}s")

    def kill(self, timeout: float = param.CGROUP_SETTLE_SECONDS) -> int:
        """SIGKILL every process of the group at once and wait until it is empty; returns how many
        host pids were in it. v2: ``cgroup.kill``. v1: freeze (so nothing forks or exits meanwhile),
        SIGKILL each pid, thaw (the killed die as they thaw). Then, on both, SIGKILL whatever any tree
        still lists (a process only partly attached) until every tree is empty."""
        if not self.exists:
            return 0
        signalled = set(self.host_pids())
        v2_kill = self.support.backend("kill") == "v2"
        if v2_kill:
            write_text(os.path.join(self.support.v2 or "", self.rel, "cgroup.kill"), "1")
        froze = False
        if not v2_kill and self._dir("freeze") is not None:
            try:
                self.freeze(timeout / 2)
                froze = True
            except TimedOut:  # kill anyway: a SIGKILL ends a task stuck freezing once it wakes
                pass

        def killed_all() -> bool:
            pids = self.host_pids()
            signalled.update(pids)
            self._signal_members(pids)
            return not pids

        killed_all()
        if froze or (not v2_kill and self._dir("freeze") is not None and self.frozen()):
            self.thaw(timeout / 2)
        if not wait_until(killed_all, timeout):
            raise TimedOut(f"cgroup {self.rel} still has processes {self.host_pids()} after SIGKILL")
        return len(signalled)

    def _signal_members(self, pids: list[int]) -> None:
        """SIGKILL each pid that is still a member, through a pidfd opened before the membership is
        read again: a pid that died and was reused meanwhile is not in the group, so never signalled."""
        fds: dict[int, int] = {}
        try:
            for p in pids:
                try:
                    fds[p] = os.pidfd_open(p)
                except ProcessLookupError:
                    pass
            members = set(self.host_pids())
            for p, fd in fds.items():
                if p in members:
                    try:
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        finally:
            for fd in fds.values():
                os.close(fd)

    def joined(self, host_pid: int | None = None) -> bool:
        """Whether ``host_pid`` (or, with None, some process) is in the group in every tree: a launcher
        has finished joining once this holds for its pid."""
        trees = [set(read_pids(path)) for path in self.procs_files()]
        return all((host_pid in t) if host_pid is not None else bool(t) for t in trees)

    def remove(self, timeout: float = param.CGROUP_SETTLE_SECONDS) -> int:
        """rmdir the group in every tree, children first, retrying while the kernel reports it busy
        (processes still exiting). Returns the directories removed; raises ``Conflict`` (EBUSY) if
        processes remain (kill first). A frozen, empty group is thawed first."""
        if self._dir("freeze") is not None and self.exists and self.frozen() and not self.populated():
            self.thaw(timeout)
        return remove_tree(self.dirs, timeout)


def remove_tree(dirs: list[str], timeout: float) -> int:
    """rmdir each directory and its subdirectories (deepest first), retrying on EBUSY."""
    todo: list[str] = []
    for top in dirs:
        todo.extend(path for path, _, _ in os.walk(top, topdown=False))  # children before parents
    removed = 0
    last: list[BaseException] = []

    def pass_once() -> bool:
        nonlocal removed
        last.clear()
        for path in list(todo):
            try:
                os.rmdir(path)
                removed += 1
                todo.remove(path)
            except FileNotFoundError:
                todo.remove(path)
            except OSError as e:
                last.append(typed(e, f"rmdir {path}"))
        return not todo

    if not wait_until(pass_once, timeout):
        raise last[0] if last else TimedOut(f"could not remove {todo}")
    return removed
