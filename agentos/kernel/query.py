"""``agentos query "SQL" [--at POINT]``: read-only SQL over the log's views, off the loop thread.

The views and the guard are the store's (``store/sqlviews.py``, ``store/sqlquery.py``). Here: which
seq a query reads (``--at POINT`` as ``agentos at`` reads it; else the head, once durable), the rows of
the state-backed tables (``files``, ``quota_usage``: from the live state, or the one rebuilt at the
point by ``k.past``, on the loop thread, only when the SQL names them), and where it runs.

Discussion — why a thread. A query is bounded (5 s by default, a row cap), but five seconds of a
stalled loop would stall every agent and every client of the kernel. So each runs on a small pool of
worker threads, on a connection of its own (apsw releases the GIL while SQLite steps): the handler
returns a ``Block`` whose poll answers once the worker is done, and the worker's end wakes the
parked caller. What must touch kernel objects — the state, the committer — runs on the loop thread,
before the worker starts or through ``on_loop``. At most ``QUERY_MAX_PENDING`` queries are queued
or running (EAGAIN past that); a client that goes away leaves its query to finish within its bound.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.abi import history_args as ha
from agentos.errors import AgentOSError, InternalError, WouldBlock
from agentos.kernel import timeline
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.past import point_seq
from agentos.state.groups import within
from agentos.state.world import State
from agentos.store import sqlquery
from agentos.store.lineage import Lineage
from agentos.store.sqlviews import STATE_NEEDS

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

_NAMES = re.compile(r"\b(" + "|".join(sorted(STATE_NEEDS)) + r")\b", re.IGNORECASE)
StateRows = dict[str, list[tuple[Any, ...]]]


def state_needs(sql: str) -> set[str]:
    """The state-backed tables ``sql`` may read (by name: a false match only costs the rows)."""
    return {STATE_NEEDS[m.lower()] for m in _NAMES.findall(sql)}


def state_rows(state: State, needs: set[str]) -> StateRows:
    """The rows of the state-backed tables ``needs`` names, from ``state``."""
    rows: StateRows = {}
    if "files" in needs:
        rows["files"] = _files(state)
    if "quota_usage" in needs:
        rows["quota_usage"] = _quota_usage(state)
    return rows


def _files(state: State) -> list[tuple[Any, ...]]:
    """Every inode of the versioned tree, with its path (None once its last name is gone)."""
    fs = state.world.vfs
    paths: dict[int, str | None] = {fs.root: "/"} if fs.root else {}

    def path_of(ino: int) -> str | None:
        chain, cur = [], ino
        while cur not in paths and len(chain) <= 4096:  # a broken tree never loops us
            node = fs.inodes.get(cur)
            if node is None or node.nlink <= 0 or node.parent == cur:
                paths[cur] = None
                break
            chain.append(cur)
            cur = node.parent
        base = paths.get(cur)
        for n in reversed(chain):
            base = None if base is None else base.rstrip("/") + "/" + fs.inodes[n].name
            paths[n] = base
        return paths.get(ino)

    return [
        (ino, path_of(ino), n.kind, n.mode, n.pending_size, n.nlink, n.version_seq, n.created_seq)
        + (n.created_by, n.group, n.mtime_ns, n.target)
        for ino, n in sorted(fs.inodes.items())
    ]


def _quota_usage(state: State) -> list[tuple[Any, ...]]:
    """(group, what, used, quota) as ``agentos groups`` counts them (the ledger's usage, and the
    live processes and files that exist then), for every group the world or the ledger knows."""
    used = state.ledger.usage.used
    groups = state.world.groups.groups
    alive = [p for p in state.world.procs.procs.values() if p.alive]
    out = []
    for name in sorted(set(used) | set(groups)):
        limits = groups[name].limits if name in groups else {}
        row = dict(used.get(name, {}))
        row["live_processes"] = float(sum(1 for p in alive if within(p.group, name)))
        row["files"] = float(sum(n for g, n in state.world.vfs.files_of.items() if within(g, name)))
        out.extend(
            (name, what, row.get(what, 0.0), limits.get(what)) for what in sorted(set(row) | set(limits))
        )
    return out


class QueryPool:
    """The worker threads of one kernel's queries (made at its first query). It holds the kernel
    weakly: the pools are keyed by kernel, and a value naming its key would keep both for ever."""

    def __init__(self, k: Kernel) -> None:
        self.kernel = weakref.ref(k)
        self.loop = asyncio.get_running_loop()
        self.executor = ThreadPoolExecutor(param.QUERY_WORKERS, thread_name_prefix="agentos-query")
        self.pending = 0

    def submit(self, call: str, work: Callable[[], Any]) -> Block:
        """Run ``work`` on a worker; a Block whose poll answers with its result (or its typed error)."""
        if self.pending >= param.QUERY_MAX_PENDING:
            raise WouldBlock(f"{self.pending} queries are running or queued; try again", code="EAGAIN")
        self.pending += 1
        fut: Future[Any] = self.executor.submit(_typed, work)
        fut.add_done_callback(lambda _f: self.loop.call_soon_threadsafe(self._finished))

        def poll() -> Done | None:
            return Done(fut.result()) if fut.done() else None  # raises the worker's typed error

        return Block(call, poll=poll)

    def _finished(self) -> None:
        self.pending -= 1
        k = self.kernel()
        if k is not None:
            k._schedule_wait_recheck()  # the parked caller polls its future now

    def on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """From a worker: ``fn(*args)`` run on the loop thread (it touches kernel state), its result."""

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(param.QUERY_MAX_SECONDS)

    def wait_durable(self, k: Kernel, seq: int) -> None:
        """From a worker: return once the log is durable up to ``seq``."""
        if seq > k.committer.durable_seq:
            durable = asyncio.run_coroutine_threadsafe(k.committer.durable(seq), self.loop)
            durable.result(param.QUERY_MAX_SECONDS)


_pools: weakref.WeakKeyDictionary[Any, QueryPool] = weakref.WeakKeyDictionary()


def pool_of(k: Kernel) -> QueryPool:
    pool = _pools.get(k)
    if pool is None:
        pool = _pools[k] = QueryPool(k)
    return pool


def _typed(work: Callable[[], Any]) -> Any:
    try:
        return work()
    except AgentOSError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug must reach the caller typed, not hang its poll
        raise InternalError(f"query failed inside the kernel: {type(exc).__name__}: {exc}") from exc


def rows_at(k: Kernel, seq: int, needs: set[str]) -> StateRows:
    """On the loop thread: the state-backed rows as of ``seq`` (the live state when it is there)."""
    if not needs:
        return {}
    state = k.state if k.state.seq == seq else k.past.state_at(seq)
    return state_rows(state, needs)


def run_at(
    k: Kernel, seq: int, rows: StateRows, sql: str, limit: int, timeout: float, lineage: Lineage
) -> sqlquery.Answer:
    """On a worker: ``sql`` over the views as of ``seq`` (durable by now), along ``lineage`` (the
    live branch's history, taken on the loop thread)."""
    conn = sqlquery.open_query(k.log.path, seq, rows, lineage)
    return sqlquery.run(conn, sql, limit=limit, timeout_s=timeout, max_bytes=param.QUERY_REPLY_BYTES)


def sys_query(k: Kernel, c: Caller, a: ha.QueryArgs) -> Block:
    """``{seq, columns, rows, truncated, ms}``: ``a.sql`` over the views as of ``a.at`` (nil: now)."""
    seq = point_seq(k, a.at) if a.at is not None else k.head_seq
    rows = rows_at(k, seq, state_needs(a.sql))
    pool, here = pool_of(k), timeline.lineage(k)

    def work() -> dict[str, Any]:
        pool.wait_durable(k, seq)  # now: what the state rows saw must be in the log first
        return {"seq": seq, **asdict(run_at(k, seq, rows, a.sql, a.limit, a.timeout, here))}

    return pool.submit("query", work)
