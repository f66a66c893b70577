"""What this host's cgroups offer, and the few file operations the cgroup manager needs.

Linux has two cgroup interfaces and real hosts mix them. A pure v2 host (most current distributions)
has one tree at ``/sys/fs/cgroup`` with every controller. A hybrid host (ours: ``../shared/notes/host.md``)
binds memory, pids, cpu, cpuacct and freezer to v1 trees and mounts a v2 tree with no such controller,
whose core files ``cgroup.freeze`` and ``cgroup.kill`` still work on any group. ``probe()`` reads
``/proc/self/mountinfo`` and says, per *feature*, which interface serves it:

    feature     v2 (preferred where its controller is there)      v1
    memory      memory.max, memory.swap.max                        memory.limit_in_bytes (+ memsw)
    pids        pids.max                                           pids.max
    cpu         cpu.max, cpu.weight                                cpu.cfs_quota_us/period_us, cpu.shares
    cpu usage   cpu.stat usage_usec (any v2 group)                 cpuacct.usage
    freeze      cgroup.freeze + cgroup.events (Linux >= 5.2)       freezer.state
    kill        cgroup.kill (Linux >= 5.14)                        freeze, SIGKILL each pid, thaw

An agent's group is then one directory per tree used (the same relative path in each), and a process
joins it by having its pid written into every one of their ``cgroup.procs``.

Writes go through one ``os.write`` each (cgroup files act on a whole write); errors become typed
AgentOS errors naming the file, so a caller never sees a bare ``OSError``.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agentos.errors import AgentOSError, Conflict, InvalidArgument, IOFailure, NotFound, PermissionDenied

# controllers the manager uses on v1 (cpuset, blkio, devices are not used)
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
# what a v2 tree must list in cgroup.controllers to serve each limit
V2_CONTROLLERS = ("memory", "pids", "cpu")
FEATURES = ("memory", "pids", "cpu", "cpu usage", "freeze", "kill")


@dataclass(frozen=True)
class CgroupSupport:
    """Which interface serves each feature here. ``v1`` maps a controller to its tree's mount point
    (co-mounted controllers share one); ``v2`` is the unified tree's mount point, if any."""

    v1: dict[str, str] = field(default_factory=dict)
    v2: str | None = None
    v2_controllers: frozenset[str] = frozenset()
    v2_freeze: bool = False
    v2_kill: bool = False
    problems: tuple[str, ...] = ()

    def backend(self, feature: str) -> str | None:
        """``"v2"``, ``"v1"`` or None (not available here) for one of ``FEATURES``."""
        if feature in V2_CONTROLLERS:
            if self.v2 and feature in self.v2_controllers:
                return "v2"
            return "v1" if feature in self.v1 else None
        if feature == "cpu usage":
            return "v2" if self.v2 else ("v1" if "cpuacct" in self.v1 else None)
        if feature == "freeze":
            return "v2" if self.v2 and self.v2_freeze else ("v1" if "freezer" in self.v1 else None)
        if feature == "kill":  # without a freezer, a kill loop races the group's forks: still a kill
            if self.v2 and self.v2_kill:
                return "v2"
            return "v1" if self.v1 or self.v2 else None
        raise InvalidArgument(f"unknown cgroup feature {feature!r}")

    @property
    def missing(self) -> list[str]:
        return [f for f in FEATURES if self.backend(f) is None]

    @property
    def usable(self) -> bool:
        return bool(self.v1) or self.v2 is not None

    def mounts(self) -> list[str]:
        """The trees an agent group spans: v1 trees of the controllers in use, then v2."""
        used = {feature: self.backend(feature) for feature in FEATURES}
        out: list[str] = []
        for ctl in V1_CONTROLLERS:
            feature = {"cpuacct": "cpu usage", "freezer": "freeze"}.get(ctl, ctl)
            wanted = used[feature] == "v1" or (ctl == "freezer" and used["kill"] == "v1")
            if wanted and ctl in self.v1 and self.v1[ctl] not in out:
                out.append(self.v1[ctl])
        if self.v2:
            out.append(self.v2)
        return out

    def without_v2(self) -> CgroupSupport:
        """The same host seen through v1 only (tests drive the v1 freeze and kill paths with it)."""
        return CgroupSupport(v1=dict(self.v1), problems=self.problems)

    def summary(self) -> str:
        """One line per feature for ``agentos status`` and the boot log; what is missing is loud."""
        how = {
            ("memory", "v2"): "memory.max",
            ("memory", "v1"): "memory.limit_in_bytes",
            ("pids", "v2"): "pids.max",
            ("pids", "v1"): "pids.max",
            ("cpu", "v2"): "cpu.max, cpu.weight",
            ("cpu", "v1"): "cpu.cfs_quota_us, cpu.shares",
            ("cpu usage", "v2"): "cpu.stat",
            ("cpu usage", "v1"): "cpuacct.usage",
            ("freeze", "v2"): "cgroup.freeze",
            ("freeze", "v1"): "freezer.state",
            ("kill", "v2"): "cgroup.kill",
            ("kill", "v1"): "freeze + SIGKILL each" if "freezer" in self.v1 else "SIGKILL loop, RACES FORKS",
        }
        lines = []
        for feature in FEATURES:
            b = self.backend(feature)
            lines.append(f"  {feature:<10} " + (f"{b} ({how[feature, b]})" if b else "MISSING"))
        head = f"cgroups: v1 [{', '.join(sorted(self.v1)) or 'none'}]"
        head += (
            f", v2 at {self.v2} [{', '.join(sorted(self.v2_controllers)) or 'no controllers'}]"
            if self.v2
            else ""
        )
        if self.missing:
            head += f"\n  WARNING: no {', '.join(self.missing)} enforcement: agents needing it are refused"
        if not self.usable:
            head += "\n  WARNING: no cgroup tree is usable: process agents cannot be confined or killed as a group"
        return "\n".join([head, *lines, *(f"  problem: {p}" for p in self.problems)])


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (major, minor)
    except (ValueError, IndexError):
        return False


def probe(mountinfo: str = "/proc/self/mountinfo") -> CgroupSupport:
    """Read the mount table (never creates anything): which trees are mounted, writable and usable."""
    v1: dict[str, str] = {}
    v2: str | None = None
    problems: list[str] = []
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError as e:
        return CgroupSupport(problems=(f"cannot read {mountinfo}: {e.strerror}",))
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 3:
            continue
        mount_point = fields[4].replace("\\040", " ")
        fstype, super_opts = tail[0], tail[2].split(",")
        read_only = "ro" in fields[5].split(",")
        if fstype == "cgroup2":
            if read_only or not os.access(mount_point, os.W_OK):
                problems.append(f"cgroup v2 at {mount_point} is not writable")
            elif v2 is None:
                v2 = mount_point
        elif fstype == "cgroup":
            for ctl in V1_CONTROLLERS:
                if ctl in super_opts and ctl not in v1:
                    if read_only or not os.access(mount_point, os.W_OK):
                        problems.append(f"cgroup v1 {ctl} at {mount_point} is not writable")
                    else:
                        v1[ctl] = mount_point
    v2_controllers: frozenset[str] = frozenset()
    if v2:
        try:
            v2_controllers = frozenset(read_text(os.path.join(v2, "cgroup.controllers")).split())
        except AgentOSError as e:
            problems.append(str(e))
    return CgroupSupport(
        v1=v1,
        v2=v2,
        v2_controllers=v2_controllers & frozenset(V2_CONTROLLERS),
        v2_freeze=v2 is not None and _kernel_at_least(5, 2),
        v2_kill=v2 is not None and _kernel_at_least(5, 14),
        problems=tuple(problems),
    )


# -- file operations ---------------------------------------------------------------------------------


def typed(e: OSError, what: str) -> AgentOSError:
    """An OSError from a cgroup file as the matching AgentOS error."""
    msg = f"{what}: {e.strerror or e}"
    if e.errno in (errno.ENOENT, errno.ESRCH):
        return NotFound(msg, code="ESRCH" if e.errno == errno.ESRCH else "ENOENT")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(msg, code="EACCES" if e.errno == errno.EACCES else "EPERM")
    if e.errno in (errno.EBUSY, errno.EEXIST):
        return Conflict(msg, code="EBUSY" if e.errno == errno.EBUSY else "EEXIST", retryable=True)
    if e.errno in (errno.EINVAL, errno.ERANGE):
        return InvalidArgument(msg)
    return IOFailure(msg)


def write_text(path: str, value: str) -> None:
    """One write of ``value``: a cgroup file acts on each write whole."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise typed(e, f"open {path}") from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise typed(e, f"write {value!r} to {path}") from None
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except OSError as e:
        raise typed(e, f"read {path}") from None


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file (``key value`` per line: memory.events, cpu.stat, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in read_text(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def read_int(path: str) -> int | None:
    """A single-value file; ``max`` (v2 unlimited) and v1's huge 'unlimited' values read as None."""
    words = read_text(path).split()
    text = words[0] if words else ""
    if text in ("", "max", "-1"):
        return None
    value = int(text)
    return None if value >= 2**62 else value


def read_pids(path: str) -> list[int]:
    """The pids in a ``cgroup.procs`` (a group being removed reads as empty)."""
    try:
        return [int(x) for x in read_text(path).split()]
    except NotFound:
        return []


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check()`` with a short backoff (0.5 ms up to 10 ms) until true or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
