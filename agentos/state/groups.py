"""Resource groups (as cgroups): a tree of named groups, each with limits; every process is in one.

The tree and the limits are world state (a rewind undoes a group created after the target);
what was *consumed* — spawns, bytes written and stored, CPU, LLM tokens and spend — is counted in
the ledger (``Usage``), charged to the group and every ancestor, so a limit holds for a group and
all its descendants and no rewind refunds anything. Live processes, and the files that exist
(``FileSystem.files_of``, the ``files`` quota), are counted from the world.

Group names are paths (``/``, ``/agent-7``, ``/agent-7/12``) built from pids, which are never
reused, so no name is ever reused either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from agentos.state import events as ev

ROOT = "/"

# Limits a group may set (the policy's [agent.quotas] keys), and what each counts.
LIMITS = {
    "syscalls_per_second": "syscalls in any one second",
    "spawns": "processes spawned, ever",
    "live_processes": "processes alive at once",
    "console_bytes": "console bytes written, ever",
    "file_bytes": "file bytes written, ever (counted by the file system)",
    "stored_bytes": "bytes the kernel stored for it, ever (its console output, new file chunks)",
    "files": "files, directories and symlinks it created that exist now",
    "memory_bytes": "memory the kernel holds for it now (its private /tmp)",
    "cpu_seconds": "CPU seconds of its in-kernel steps, ever",
    "llm_tokens_in": "LLM prompt tokens, ever (counted by the LLM core)",
    "llm_tokens_out": "LLM completion tokens, ever (counted by the LLM core)",
    "llm_spend_usd": "LLM spend in USD, ever (counted by the LLM core)",
    # enforced on process agents by their cgroup (runtime/procagents.py), each agent on its own
    "pids_max": "host processes and threads a process agent may have at once (cgroup pids.max)",
    "cpu_max": "CPUs a process agent may use at once, e.g. 0.5 (cgroup cpu quota)",
    "cpu_weight": "a process agent's CPU share, 1..10000, 100 = default (cgroup cpu weight)",
}


class Group(msgspec.Struct, kw_only=True):
    name: str
    parent: str | None
    limits: dict[str, float] = {}
    created_by: int = 0
    created_seq: int = 0


class GroupTable(msgspec.Struct):
    groups: dict[str, Group] = {}

    def get(self, name: str) -> Group | None:
        return self.groups.get(name)

    def chain(self, name: str) -> list[Group]:
        """The group and its ancestors, nearest first."""
        out = []
        g = self.groups.get(name)
        while g is not None:
            out.append(g)
            g = self.groups.get(g.parent) if g.parent is not None else None
        return out


def within(group: str, ancestor: str) -> bool:
    return ancestor == ROOT or group == ancestor or group.startswith(ancestor.rstrip("/") + "/")


def _created(t: GroupTable, seq: int, ts: int, e: ev.GroupCreated) -> None:
    # floats always: a rebuilt state decodes them as floats, and must hash as the live one does
    limits = {k: float(v) for k, v in e.limits.items()}
    t.groups[e.name] = Group(name=e.name, parent=e.parent, limits=limits, created_by=e.by, created_seq=seq)


def _limits(t: GroupTable, seq: int, ts: int, e: ev.GroupLimitsSet) -> None:
    g = t.groups.get(e.name)
    if g is not None:
        g.limits = {k: float(v) for k, v in e.limits.items()}


GROUP_APPLY: dict[type, Callable[[GroupTable, int, int, Any], None]] = {
    ev.GroupCreated: _created,
    ev.GroupLimitsSet: _limits,
}


class Usage(msgspec.Struct):
    """The ledger's side: consumption per group (its own and its descendants'), never refunded."""

    parent: dict[str, str] = {}  # the tree as the ledger saw it (groups are never renamed)
    group_of: dict[int, str] = {}  # pid -> group
    used: dict[str, dict[str, float]] = {}

    def charge(self, group: str, what: str, amount: float) -> None:
        name: str | None = group
        hops = 0
        while name is not None and hops < 1000:
            row = self.used.setdefault(name, {})
            row[what] = row.get(what, 0.0) + float(amount)  # floats: as a rebuilt state decodes them
            name = self.parent.get(name)
            hops += 1


def _usage_group(u: Usage, e: ev.GroupCreated) -> None:
    if e.parent is not None:
        u.parent[e.name] = e.parent


def _usage_spawned(u: Usage, e: ev.ProcSpawned) -> None:
    group = e.group or u.group_of.get(e.ppid, ROOT)
    u.group_of[e.pid] = group
    if e.kind == "agent":
        u.charge(group, "spawns", 1)


def _usage_console(u: Usage, e: ev.ConsoleWrite) -> None:
    group = u.group_of.get(e.pid, ROOT)
    u.charge(group, "console_bytes", e.size)
    u.charge(group, "stored_bytes", e.size)


def _usage_cpu(u: Usage, e: ev.CpuCharged) -> None:
    u.charge(u.group_of.get(e.pid, ROOT), "cpu_seconds", e.ns / 1e9)


def _usage_wrote(u: Usage, e: ev.VfsWrote | ev.VfsHostWrote) -> None:
    group = u.group_of.get(e.pid, ROOT)
    u.charge(group, "file_bytes", e.length)
    if e.stored:
        u.charge(group, "stored_bytes", e.stored)


def _usage_version(u: Usage, e: ev.VfsVersion | ev.VfsHostChange) -> None:
    if e.stored:
        u.charge(u.group_of.get(e.pid, ROOT), "stored_bytes", e.stored)


def _usage_reaped(u: Usage, e: ev.ProcReaped) -> None:
    u.group_of.pop(e.pid, None)  # nothing more is charged to a reaped process: keep the map bounded


USAGE_APPLY: dict[type, Callable[[Usage, Any], None]] = {
    ev.GroupCreated: _usage_group,
    ev.ProcSpawned: _usage_spawned,
    ev.ConsoleWrite: _usage_console,
    ev.CpuCharged: _usage_cpu,
    ev.VfsWrote: _usage_wrote,
    ev.VfsVersion: _usage_version,
    ev.VfsHostWrote: _usage_wrote,  # a host file's write and publish are charged as the tree's
    ev.VfsHostChange: _usage_version,
    ev.ProcReaped: _usage_reaped,
}
