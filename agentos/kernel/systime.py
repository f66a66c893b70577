"""sys_* handlers for moving in time: ``rewind``, ``switch``, ``branches``, ``checkpoint``,
``checkpoints``, ``checkpoint_rm``, ``restore`` (admin calls; ``kernel/timeline.py`` does the move).

A move waits until the log is durable up to the head at the call (a Block woken by the commit),
so the target's events, and a branch's whole past, can be read from the log. Checkpoints are
named (branch, seq) in the ledger: rewinding never loses one, and ``restore NAME`` is a rewind
to it on a new branch, so the checkpoint's own branch stays as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.abi import history_args as ha
from agentos.abi import syscalls as sc
from agentos.errors import InvalidArgument, NotFound
from agentos.kernel import past, timeline
from agentos.kernel.calls import Block, Caller, Done
from agentos.state import events as ev

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

_waking: set[asyncio.Task[None]] = set()


def _once_durable(k: Kernel, call: str, decide: Callable[[], Done]) -> Done | Block:
    target = k.head_seq
    if k.committer.durable_seq >= target:
        return decide()

    async def wake() -> None:
        await k.committer.durable(target)
        k._schedule_wait_recheck()

    task = asyncio.get_running_loop().create_task(wake())
    _waking.add(task)
    task.add_done_callback(_waking.discard)
    return Block(call=call, poll=lambda: decide() if k.committer.durable_seq >= target else None)


def _rewind(k: Kernel, c: Caller, branch: int, seq: int, name: str, why: str) -> Done:
    new = k.state.ledger.next_branch
    parent = timeline.fork_parent(k, branch, seq)
    here, head = k.state.world.branch, k.head_seq
    first = ev.BranchCreated(
        branch=new,
        parent=parent,
        fork_seq=seq,
        name=name or f"{why}-{new}",
        from_branch=here,
        from_seq=head,
        why=why,
    )
    events = timeline.move(k, c, branch, seq, first)
    agents = sorted(p.pid for p in k.state.world.procs.alive() if p.kind == "agent")
    result = {"branch": new, "parent": parent, "fork_seq": seq, "from_branch": here, "from_seq": head}
    return Done({**result, "name": first.name, "agents": agents}, events)


def sys_rewind(k: Kernel, c: Caller, a: ha.RewindArgs) -> Done | Block:
    timeline.check_caller(c, "rewind")
    branch, seq = past.point_of(k, a.point)
    return _once_durable(k, "rewind", lambda: _rewind(k, c, branch, seq, a.name, "rewind"))


def sys_restore(k: Kernel, c: Caller, a: ha.CheckpointNameArgs) -> Done | Block:
    timeline.check_caller(c, "restore")
    cp = _checkpoint(k, a.name)
    return _once_durable(
        k, "restore", lambda: _rewind(k, c, cp.branch, cp.seq, f"restore-{a.name}", "restore")
    )


def sys_switch(k: Kernel, c: Caller, a: ha.SwitchArgs) -> Done | Block:
    timeline.check_caller(c, "switch")
    here = k.state.world.branch
    if a.branch == here:
        raise InvalidArgument(f"the kernel is on branch {here} already", code="EALREADY")
    if a.branch != param.MAIN_BRANCH and a.branch not in k.state.ledger.branches:
        raise NotFound(f"there is no branch {a.branch} (agentos branches lists them)", code="ENOENT")

    def decide() -> Done:
        head, at = timeline.branch_head(k, a.branch), k.head_seq
        first = ev.BranchSwitched(branch=a.branch, from_branch=here, from_seq=at)
        events = timeline.move(k, c, a.branch, head, first)
        agents = sorted(p.pid for p in k.state.world.procs.alive() if p.kind == "agent")
        return Done(
            {"branch": a.branch, "head": head, "from_branch": here, "from_seq": at, "agents": agents}, events
        )

    return _once_durable(k, "switch", decide)


def sys_branches(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    """Every branch: its fork, its own events (count, last seq), and which one the kernel is on."""
    counts = {
        b: (n, last)
        for b, n, last in k.reader.execute("SELECT branch, count(*), max(seq) FROM events GROUP BY branch")
    }
    here = k.state.world.branch
    rows: list[dict[str, Any]] = []
    n, last = counts.get(param.MAIN_BRANCH, (0, 0))
    rows.append(
        {
            "branch": param.MAIN_BRANCH,
            "name": "main",
            "parent": None,
            "fork_seq": None,
            "why": "",
            "created_seq": 0,
            "created_ts": None,
            "events": n,
            "head": last,
        }
    )
    for b in sorted(k.state.ledger.branches.values(), key=lambda b: b.id):
        n, last = counts.get(b.id, (0, b.fork_seq))
        rows.append(
            {
                "branch": b.id,
                "name": b.name,
                "parent": b.parent,
                "fork_seq": b.fork_seq,
                "why": b.why,
                "created_seq": b.created_seq,
                "created_ts": b.created_ts,
                "events": n,
                "head": last,
            }
        )
    for row in rows:
        row["current"] = row["branch"] == here
    return Done(rows)


def _checkpoint(k: Kernel, name: str) -> Any:
    cp = k.state.ledger.checkpoints.get(name)
    if cp is None:
        raise NotFound(f"there is no checkpoint {name!r} (agentos checkpoints lists them)", code="ENOENT")
    return cp


def sys_checkpoint(k: Kernel, c: Caller, a: ha.CheckpointArgs) -> Done:
    if a.name in k.state.ledger.checkpoints:
        raise InvalidArgument(
            f"checkpoint {a.name!r} exists (agentos checkpoint --rm {a.name} first)", code="EEXIST"
        )
    branch, seq = past.point_of(k, a.point)
    made = ev.CheckpointMade(name=a.name, branch=branch, seq=seq, by=c.pid)
    return Done({"name": a.name, "branch": branch, "seq": seq}, [made])


def sys_checkpoints(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    cps = sorted(k.state.ledger.checkpoints.values(), key=lambda cp: cp.made_seq)
    return Done(
        [
            {"name": cp.name, "branch": cp.branch, "seq": cp.seq, "made_ts": cp.made_ts, "by": cp.by}
            for cp in cps
        ]
    )


def sys_checkpoint_rm(k: Kernel, c: Caller, a: ha.CheckpointNameArgs) -> Done:
    _checkpoint(k, a.name)
    return Done({"name": a.name}, [ev.CheckpointDropped(name=a.name, by=c.pid)])
