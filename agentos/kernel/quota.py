"""Quotas: the limits of a process's resource group and every ancestor group, checked where the
resource is consumed — each syscall (rate, CPU), spawn (spawns, live processes), console write
(console and stored bytes), file create (files). A limit reached is a ``QuotaExceeded`` naming the limit, the usage and
the group; the call does not happen.

Consumption is counted in the ledger (``state.groups.Usage``), so what was spent stays spent.
The per-second syscall rate is not state — a window counter per group, here — since one event per
call would cost more than the call.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from agentos.errors import InvalidArgument, QuotaExceeded
from agentos.state import events as ev
from agentos.state.groups import LIMITS, ROOT, within

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

RESHAPING = frozenset({ev.GroupCreated, ev.GroupLimitsSet, ev.ProcSpawned})


def _show(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Quotas:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.generation = 0
        self._per_call: dict[int, tuple[int, list[tuple[str, float | None, float | None]]]] = {}
        self._windows: dict[str, list[int]] = {}  # group -> [second, calls in it]
        self._held: dict[int, dict[str, float]] = {}  # pid -> limit -> held now (runtime, not ledger)
        self.clock = time.monotonic_ns

    # -- watching the events that reshape groups (Kernel.watch) ---------------------------------

    def on_event(self, seq: int, payload: ev.Payload) -> None:
        if type(payload) in RESHAPING:
            self.generation += 1

    def reset(self) -> None:
        self.generation += 1
        self._per_call.clear()

    # -- checks -----------------------------------------------------------------------------------

    def _exceeded(
        self, group: str, limit: str, used: float, allowed: float, code: str = "EDQUOT"
    ) -> QuotaExceeded:
        return QuotaExceeded(
            f"{limit} limit of group {group} reached: {_show(used)} used of {_show(allowed)} ({LIMITS[limit]})",
            code=code,
            retryable=code == "EAGAIN",
        )

    def group_of(self, pid: int) -> str:
        p = self.k.state.world.procs.get(pid)
        return p.group if p is not None else ROOT

    # -- what a process holds now, at runtime (its private /tmp's memory: kernel/vfs/tmpfs.py) -----------

    def hold(self, pid: int, limit: str, amount: float) -> None:
        """``pid`` holds ``amount`` of ``limit`` now: counted by ``check`` and ``rows`` on top of what the
        ledger charged, never charged to it (memory is given back), until ``release``."""
        if amount:
            self._held.setdefault(pid, {})[limit] = amount
        elif pid in self._held:
            self._held[pid].pop(limit, None)

    def release(self, pid: int) -> None:
        """``pid`` exited: what it held is free."""
        self._held.pop(pid, None)

    def held(self, group: str, limit: str) -> float:
        """What the live processes of ``group`` and its descendants hold of ``limit`` now."""
        return sum(v.get(limit, 0) for pid, v in self._held.items() if within(self.group_of(pid), group))

    def files(self, group: str) -> int:
        """The ``files`` quota's usage: inodes charged to ``group`` and its descendants that exist
        now (world state, counted by ``state/vfs_apply.py``: a rewind gives them back too)."""
        return sum(n for g, n in self.k.state.world.vfs.files_of.items() if within(g, group))

    def check_call(self, pid: int) -> None:
        """Before every syscall of an agent: its groups' syscall rate and CPU time."""
        cached = self._per_call.get(pid)
        if cached is None or cached[0] != self.generation:
            limited = [
                (g.name, g.limits.get("syscalls_per_second"), g.limits.get("cpu_seconds"))
                for g in self.k.state.world.groups.chain(self.group_of(pid))
                if "syscalls_per_second" in g.limits or "cpu_seconds" in g.limits
            ]
            cached = self._per_call[pid] = (self.generation, limited)
        if not cached[1]:
            return
        used = self.k.state.ledger.usage.used
        second = self.clock() // 1_000_000_000
        for name, rate, cpu in cached[1]:
            if cpu is not None:
                spent = used.get(name, {}).get("cpu_seconds", 0.0)
                if spent >= cpu:
                    raise self._exceeded(name, "cpu_seconds", round(spent, 3), cpu)
            if rate is not None:
                window = self._windows.setdefault(name, [second, 0])
                if window[0] != second:
                    window[0], window[1] = second, 0
                if window[1] >= rate:
                    raise self._exceeded(name, "syscalls_per_second", window[1], rate, code="EAGAIN")
                window[1] += 1

    def check_spawn(self, group: str) -> None:
        """Before a spawn into ``group``: spawns ever, and live processes, of it and its ancestors."""
        chain = self.k.state.world.groups.chain(group)
        used = self.k.state.ledger.usage.used
        for g in chain:
            if "spawns" in g.limits:
                n = used.get(g.name, {}).get("spawns", 0)
                if n + 1 > g.limits["spawns"]:
                    raise self._exceeded(g.name, "spawns", n, g.limits["spawns"])
            if "live_processes" in g.limits:
                live = sum(1 for p in self.k.state.world.procs.alive() if within(p.group, g.name))
                if live + 1 > g.limits["live_processes"]:
                    raise self._exceeded(g.name, "live_processes", live, g.limits["live_processes"])

    def check_bytes(self, pid: int, size: int) -> None:
        """Before a console write of ``size`` bytes: console and stored bytes."""
        self.check(pid, {"console_bytes": size, "stored_bytes": size})

    def check(self, pid: int, amounts: dict[str, float]) -> None:
        """Before ``pid`` consumes ``amounts`` (limit name -> how much): would any group on its chain
        go past a limit? The one check every subsystem uses (the file system for ``file_bytes``, the
        memory manager for ``memory_bytes``, the LLM core for tokens and spend); what is consumed is
        then charged by the ledger, from the event that records it (``state.groups.USAGE_APPLY``)."""
        used = self.k.state.ledger.usage.used
        for g in self.k.state.world.groups.chain(self.group_of(pid)):
            for limit, amount in amounts.items():
                if limit in g.limits:
                    n = used.get(g.name, {}).get(limit, 0) + (self.held(g.name, limit) if self._held else 0)
                    n += self.files(g.name) if limit == "files" else 0
                    if n + amount > g.limits[limit]:
                        raise self._exceeded(g.name, limit, n, g.limits[limit])

    def rows(self) -> list[dict[str, Any]]:
        """Every group with its limits and usage (its own and its descendants')."""
        used = self.k.state.ledger.usage.used
        alive = self.k.state.world.procs.alive()
        out = []
        for name, g in sorted(self.k.state.world.groups.groups.items()):
            usage = dict(used.get(name, {}))
            for limit in sorted({limit for held in self._held.values() for limit in held}):
                usage[limit] = usage.get(limit, 0) + self.held(name, limit)
            usage["live_processes"] = sum(1 for p in alive if within(p.group, name))
            usage["files"] = self.files(name)
            members = sorted(p.pid for p in alive if p.group == name)
            out.append(
                {"name": name, "parent": g.parent, "limits": g.limits, "usage": usage, "members": members}
            )
        return out


def validate_limits(limits: dict[str, Any]) -> dict[str, float]:
    """Untrusted limits (spawn's ``limits``, ``agentos limit``): known names, non-negative numbers."""
    out: dict[str, float] = {}
    for name, value in limits.items():
        if name not in LIMITS:
            raise InvalidArgument(f"unknown limit {str(name)[:64]!r}; known: {', '.join(sorted(LIMITS))}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2**62:
            raise InvalidArgument(f"limit {name} must be a number >= 0, not {str(value)[:32]!r}")
        out[name] = value
    return out
