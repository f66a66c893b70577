"""sys_* handlers for administration: status, shutdown, events, logs, state_hash (verify: verify.py).

These rows need the ``admin`` right (held by sessions, the user's own clients). Reads of the
log go through the kernel's read-only connection and stop at the durable sequence number, so
nothing not yet durable is ever shown (ARCHITECTURE.md §4.3).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import msgspec

from agentos import __version__
from agentos.abi import syscalls as sc
from agentos.errors import NotFound
from agentos.kernel.calls import Caller, Done, Stream
from agentos.kernel.quota import validate_limits
from agentos.state import events as ev
from agentos.state.proc import DEAD, ZOMBIE
from agentos.state.world import forks, state_hash
from agentos.store import branches
from agentos.store.events import EventRecord
from agentos.store.lineage import Lineage
from agentos.store.log import sqlite_version

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def event_row(r: EventRecord) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "branch": r.branch,
        "kind": r.kind,
        "version": r.version,
        "pid": r.pid,
        "syscall": r.syscall,
        "correlation": r.correlation,
        "ts": r.ts,
        "payload": msgspec.json.decode(r.payload),
        "digest": r.digest.hex(),
    }


def sys_status(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    procs = k.state.world.procs.procs.values()
    counts: dict[str, int] = {}
    for p in procs:
        counts[p.state] = counts.get(p.state, 0) + 1
    return Done(
        {
            "version": __version__,
            "os_pid": os.getpid(),
            "home": str(k.home.path),
            "boot": k.boot_number,
            "uptime_s": round(time.monotonic() - k.started_monotonic, 3),
            "seq": k.head_seq,
            "durable_seq": k.committer.durable_seq,
            "commit_batches": k.committer.batches,
            "branch": k.state.world.branch,
            "processes": counts,
            "durability": k.log.durability,
            "sqlite_version": ".".join(map(str, sqlite_version())),
            "sqlite_libraries": sorted(m for m in ("apsw", "_sqlite3") if m in sys.modules),
            "hash_seed": os.environ.get("PYTHONHASHSEED"),
            "resumed": k.resumed_at_boot,
            "boot_ms": k.boot_ms,
            "policy": k.policy.source,
            "cap_cache": {"hits": k.authority.hits, "misses": k.authority.misses},
        }
        | _runtime_status(k)
    )


def _runtime_status(k: Kernel) -> dict[str, Any]:
    """What the runtimes report (``status_info()`` of an instrument: the sandbox and cgroup probes)."""
    out: dict[str, Any] = {}
    for inst in k.instruments:
        info = getattr(inst, "status_info", None)
        if info is not None:
            out |= info()
    return out


def sys_shutdown(k: Kernel, c: Caller, a: sc.ShutdownArgs) -> Done:
    k.request_shutdown(kill=a.kill)
    return Done({"shutting_down": True, "kill": a.kill})


def sys_state_hash(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done({"seq": k.state.seq, "hash": state_hash(k.state)})


def sys_events(k: Kernel, c: Caller, a: sc.EventsArgs) -> Done | Stream:
    durable = k.committer.durable_seq
    kinds = [a.kind] if a.kind else None
    limit = None if a.follow else a.limit  # a follower gets every event, the limit bounds a listing
    if a.branch is None:
        records = k.log.read(a.since, until=durable, pid=a.pid, kinds=kinds, limit=limit, conn=k.reader)
        lineage = None
    else:  # the history as that branch sees it: its own events and its ancestors' up to each fork
        lineage = Lineage.of(a.branch, forks(k.state.ledger))
        records = branches.read_lineage(k.reader, lineage, a.since, durable, a.pid, a.kind, limit)
    backlog = [event_row(r) for r in records]
    head = k.head_seq

    def follow(r: EventRecord) -> dict[str, Any] | None:
        if r.seq <= durable or (a.pid is not None and r.pid != a.pid) or (a.kind and r.kind != a.kind):
            return None
        if lineage is not None and not lineage.contains(r.branch, r.seq):
            return None
        return event_row(r)

    if a.follow:
        return Stream(backlog, follow)
    if len(backlog) >= a.limit:
        return Done(backlog)
    return _until_durable(k, backlog, follow, head)


def _until_durable(k: Kernel, backlog: list[Any], follow: Any, head: int) -> Done | Stream:
    """Answer with everything up to ``head``: what is durable now, the rest as it commits."""
    if head <= k.committer.durable_seq:
        return Done(backlog)
    return Stream(backlog, follow, lambda r: r.seq >= head)


def _console_item(k: Kernel, r: EventRecord, pid: int) -> dict[str, Any] | None:
    if r.kind != "console.write":
        return None
    w = ev.decode(r.kind, r.version, r.payload)
    if not isinstance(w, ev.ConsoleWrite) or pid not in (w.pid, w.console):
        return None
    data = k.blob(w.blob) or b""
    return {"seq": r.seq, "pid": w.pid, "stream": w.stream, "data": data.decode("utf-8", "replace")}


def sys_logs(k: Kernel, c: Caller, a: sc.LogsArgs) -> Done | Stream:
    p = k.state.world.procs.get(a.pid)
    if p is None:
        raise NotFound(f"no process {a.pid}", code="ESRCH")
    durable = k.committer.durable_seq
    backlog = [
        item for r in k.log.console_of(a.pid, durable, k.reader) if (item := _console_item(k, r, a.pid))
    ]

    def follow(r: EventRecord) -> dict[str, Any] | None:
        return _console_item(k, r, a.pid) if r.seq > durable else None

    if not a.follow or p.state in (ZOMBIE, DEAD):
        return _until_durable(k, backlog, follow, k.head_seq)

    def until(r: EventRecord) -> bool:
        return (
            r.kind == "proc.exited" and r.seq > durable and msgspec.json.decode(r.payload).get("pid") == a.pid
        )

    return Stream(backlog, follow, until)


def sys_groups(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done(k.quotas.rows())


def sys_group_limit(k: Kernel, c: Caller, a: sc.GroupLimitArgs) -> Done:
    """Set some limits of a group (others kept; a negative value removes that limit)."""
    group = k.state.world.groups.get(a.group)
    if group is None:
        raise NotFound(f"no resource group {a.group[:128]!r}", code="ENOENT")
    removed = {name for name, value in a.limits.items() if value < 0}
    limits = {n: v for n, v in group.limits.items() if n not in removed}
    limits |= validate_limits({n: v for n, v in a.limits.items() if n not in removed})
    return Done(
        {"group": a.group, "limits": limits}, [ev.GroupLimitsSet(name=a.group, limits=limits, by=c.pid)]
    )
