"""Moving the live kernel in time: rewind to a point on a new branch, or switch to a branch's head.

Both do the same thing (ARCHITECTURE.md §4.4): the world is replaced by the one rebuilt at the
target (``past.Past.rebuild``), the ledger carries on untouched (no revived revocation, no refund,
no reused identifier), and the first event on the branch the kernel continues on records the move
(``branch.created`` or ``branch.switched``), so a boot after kill -9 folds the same world. Around it:

* **quiesce** first: every instrument with ``before_rewind`` drops what runs (the agent runner
  closes its coroutines without recording anything: their processes' futures stay on the old branch);
* **sessions** are people, never rewound: a connected session missing from the target world is
  spawned again under its own pid; one alive there but no longer connected is ended;
* **after**: caches derived from the world are reset and instruments' ``after_rewind`` resume the
  SDK agents alive at the target by replay of their journals, read along the new lineage.

Host files (mounts) and /tmp, /proc, /dev keep no history: a rewind does not change a host file
(``agentos undo`` does, as new events); the docs say so.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

from agentos import param
from agentos.errors import InvalidArgument, PermissionDenied
from agentos.kernel import base as log_base
from agentos.kernel import sysproc, syswatch
from agentos.state import events as ev
from agentos.state.world import forks
from agentos.store.lineage import Lineage

if TYPE_CHECKING:
    from agentos.kernel.calls import Caller
    from agentos.kernel.kernel import Kernel

_cached: weakref.WeakKeyDictionary[Kernel, tuple[tuple[int, int], Lineage]] = weakref.WeakKeyDictionary()


def lineage(k: Kernel) -> Lineage:
    """The live branch's lineage (cached until the kernel moves or a branch is made)."""
    key = (k.state.world.branch, len(k.state.ledger.branches))
    hit = _cached.get(k)
    if hit is None or hit[0] != key:
        hit = _cached[k] = (key, Lineage.of(key[0], forks(k.state.ledger)))
    return hit[1]


def fork_parent(k: Kernel, branch: int, seq: int) -> int:
    """The branch that owns ``seq`` in ``branch``'s lineage (a fork before a branch's first event
    belongs to its parent)."""
    info = k.state.ledger.branches.get(branch)
    while info is not None and seq <= info.fork_seq:
        branch = info.parent
        info = k.state.ledger.branches.get(branch)
    return branch


def branch_head(k: Kernel, branch: int) -> int:
    """The seq of ``branch``'s last event (its fork point when it has none of its own)."""
    rows = k.reader.execute("SELECT max(seq) FROM events WHERE branch = ?", (branch,)).fetchall()
    head = rows[0][0] if rows and rows[0][0] is not None else None
    if head is None:
        info = k.state.ledger.branches.get(branch)
        if info is None and branch != param.MAIN_BRANCH:
            raise InvalidArgument(f"branch {branch} has no events")
        head = info.fork_seq if info is not None else 0
    base = log_base.find_base(k.reader)  # a head before a gc's base: the branch's world is the base's
    return max(head, base.seq) if base is not None else head


def check_caller(c: Caller, what: str) -> None:
    if c.kind != "session":  # an agent would be quiesced by its own call
        raise PermissionDenied(f"{what} is for a person at a session, not for an agent", code="EPERM")


def move(k: Kernel, c: Caller, target_branch: int, seq: int, first: ev.Payload) -> list[ev.Payload]:
    """Replace the live world by ``target_branch``'s at ``seq``; the events that record it (``first``
    opens the branch ``first.branch``) and settle the sessions, for the caller to emit."""
    world = k.past.rebuild(target_branch, seq).world
    if world.procs.get(param.INIT_PID) is None or not world.caps.held_by(param.INIT_PID):
        raise InvalidArgument(
            f"seq {seq} is before the first boot made init and its root capability: pick a later point",
            code="EINVAL",
        )
    for inst in k.instruments:
        hook = getattr(inst, "before_rewind", None)
        if hook is not None:
            hook()
    before = {p.pid: p for p in k.state.world.procs.alive() if p.kind == "session"}
    world.branch = first.branch  # type: ignore[attr-defined]
    k.state.world = world
    k.authority.reset()
    k.quotas.reset()
    k.mounts.rewound()
    feed = syswatch.feed_of(k)  # every watcher's view jumped: each is told to rescan (lost)
    feed.changes.clear()
    feed.floor = k.head_seq + 1
    out: list[ev.Payload] = [first]
    for pid, p in sorted(before.items()):
        if world.procs.get(pid) is None or not world.procs.get(pid).alive:  # type: ignore[union-attr]
            out += [
                ev.ProcSpawned(pid=pid, ppid=param.INIT_PID, name=p.name, kind="session"),
                ev.ProcStarted(pid=pid),
            ]
    for p in world.procs.alive():
        if p.kind == "session" and p.pid not in before:  # its person left after the target point
            events, _ = sysproc.exit_events(k, p, 1, reason="session lost: the kernel rewound")
            out += events
    asyncio.get_running_loop().call_soon(_after, k)
    return out


def _after(k: Kernel) -> None:
    for inst in k.instruments:
        hook = getattr(inst, "after_rewind", None)
        if hook is not None:
            hook()
    k.host.committed()  # host changes the target world holds unmade (made, or found made)
    k._schedule_wait_recheck()  # parked sessions' waits are asked again of the new world
    # no snapshot here: a boot starts from the newest one the lineage took (at most
    # SNAPSHOT_EVERY_EVENTS behind), and one now would cost the whole state's encoding
