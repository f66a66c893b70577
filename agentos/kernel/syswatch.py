"""``watch``: change notifications on a path (``docs/vfs.md``), without polling.

Why this shape. The kernel keeps a bounded feed of recent file changes, filled as each ``vfs.*``
event is applied (``Kernel.watch``); a parked ``watch`` is re-polled when a change lands (the
kernel's wait recheck), never on a timer. A change is ``{seq, op, path, kind, pid}`` (a rename adds
``from``) with the path as it was when it happened, so later renames do not rewrite it. The caller
passes the ``next`` it got back as ``since``: no change is missed or seen twice between calls.

Replay. An agent's ``watch`` result is journaled, so replay answers it from the record. The feed
itself is memory only: it starts at boot and holds at most ``param.WATCH_FEED_CHANGES``. A ``since`` older than what it holds — from before a reboot, or a
watcher that fell too far behind — is answered at once with ``lost: true`` (inotify's
``IN_Q_OVERFLOW``): rescan, then watch from the ``next`` it returned. A call resumed after a crash
with no ``since`` is such a case too (what happened meanwhile is not in the feed).

Scope and sight. ``path`` itself and, if it is a directory, its entries; with ``recursive``
everything below it; and a name change (created, unlinked, linked, renamed) of an ancestor, which
makes the path appear, vanish or move. A change is reported only where the caller holds ``list``
or ``read`` on its path (a recursive watch never shows what the caller cannot see); a rename's
side it cannot see is null: moved in from, or out to, somewhere hidden.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from agentos import param
from agentos.abi import syscalls as sc
from agentos.caps import pattern
from agentos.errors import InvalidArgument, PermissionDenied
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.sysfile import fs_path
from agentos.state import events as ev
from agentos.state.vfs import FileSystem

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

OPS: dict[type, str] = {
    ev.VfsCreated: "created",
    ev.VfsWrote: "written",
    ev.VfsTruncated: "truncated",
    ev.VfsVersion: "version",
    ev.VfsUnlinked: "unlinked",
    ev.VfsRmdir: "unlinked",  # kind "dir"
    ev.VfsLinked: "linked",
    ev.VfsRenamed: "renamed",
    ev.VfsChmod: "chmod",
}
NAMING = frozenset({"created", "unlinked", "linked", "renamed"})  # also reported below the name
REPLY_PATH_BYTES = param.MAX_FRAME_BYTES // 4  # paths per reply, so a full one fits a frame


class Change(NamedTuple):
    seq: int
    op: str
    path: str
    kind: str
    pid: int
    src: str | None = None  # a rename's old path


def _join(fs: FileSystem, parent: int, name: str) -> str | None:
    head = fs.path_of(parent)
    return None if head is None else f"{head.rstrip('/')}/{name}"


class Feed:
    """The recent changes, oldest first; ``floor``: changes at or before it may be missing."""

    def __init__(self, k: Kernel) -> None:
        self._k = weakref.ref(k)  # the kernel holds the feed (through its watchers), not the reverse
        self.changes: deque[Change] = deque()
        self.floor = k.head_seq
        self.capacity = param.WATCH_FEED_CHANGES
        k.watch(frozenset(OPS), self.on_event)

    def on_event(self, seq: int, payload: Any) -> None:
        k = self._k()
        if k is None:
            return
        change = self._change(k.state.world.vfs, seq, payload)
        if change is None:
            return
        if len(self.changes) >= self.capacity:
            self.floor = self.changes.popleft().seq
        self.changes.append(change)
        if k.parked:
            k._schedule_wait_recheck()  # parked watchers look at it once this step is over

    @staticmethod
    def _change(fs: FileSystem, seq: int, e: Any) -> Change | None:
        """The change ``e`` made, read from the tree just after it was applied."""
        op = OPS[type(e)]
        node = fs.get(e.ino)
        kind = "dir" if type(e) is ev.VfsRmdir else node.kind if node is not None else "file"
        if type(e) is ev.VfsRenamed:
            path, src = _join(fs, e.new_parent, e.new_name), _join(fs, e.parent, e.name)
            return None if path is None or src is None else Change(seq, op, path, kind, e.pid, src)
        if op in NAMING:
            path = _join(fs, e.parent, e.name)
        else:  # content or mode: the file's name now (none once unlinked: nobody can watch it)
            path = fs.path_of(e.ino)
        return None if path is None else Change(seq, op, path, kind, e.pid)


_FEEDS: weakref.WeakKeyDictionary[Kernel, Feed] = weakref.WeakKeyDictionary()


def feed_of(k: Kernel) -> Feed:
    """The kernel's feed (``Kernel.boot`` starts it; nothing before that is in it)."""
    feed = _FEEDS.get(k)
    if feed is None:
        feed = _FEEDS[k] = Feed(k)
    return feed


# -- who sees what --------------------------------------------------------------------------------------


def in_scope(watched: str, recursive: bool, path: str | None, naming: bool) -> bool:
    if path is None:
        return False
    if path == watched:
        return True
    prefix = watched.rstrip("/") + "/"
    if path.startswith(prefix):
        return recursive or "/" not in path[len(prefix) :]
    return naming and watched.startswith(path.rstrip("/") + "/")  # an ancestor's name changed


class Sight:
    """Whether a caller may see a path: a live capability with ``list`` or ``read`` covering it
    (no audit event: this is a filter, not a refusal). Memoised for one poll."""

    def __init__(self, k: Kernel, c: Caller) -> None:
        self.holder = k.authority.holder(c)
        self.caps = [
            cap
            for cap in k.state.world.caps.held_by(self.holder)
            if (pattern.has_right(cap.rights, "list") or pattern.has_right(cap.rights, "read"))
            and not k.authority.problem(cap)
        ]
        self.seen: dict[str, bool] = {}

    def __call__(self, path: str | None) -> bool:
        if path is None:
            return False
        hit = self.seen.get(path)
        if hit is None:
            resource = f"fs:{path}"
            hit = self.seen[path] = any(
                pattern.covers(cap.resource, resource, self.holder) for cap in self.caps
            )
        return hit


def _shown(ch: Change, watched: str, recursive: bool, sees: Sight) -> dict[str, Any] | None:
    """What the caller is told of ``ch``: None if it is out of scope or out of sight."""
    row: dict[str, Any] = {"seq": ch.seq, "op": ch.op, "path": ch.path, "kind": ch.kind, "pid": ch.pid}
    if ch.op != "renamed":
        naming = ch.op in NAMING
        return row if in_scope(watched, recursive, ch.path, naming) and sees(ch.path) else None
    to_in, from_in = in_scope(watched, recursive, ch.path, True), in_scope(watched, recursive, ch.src, True)
    to_seen, from_seen = sees(ch.path), sees(ch.src)
    if not (to_in and to_seen) and not (from_in and from_seen):
        return None
    row["path"], row["from"] = (ch.path if to_seen else None), (ch.src if from_seen else None)
    return row


# -- the call -------------------------------------------------------------------------------------------


def sys_watch(k: Kernel, c: Caller, a: sc.WatchArgs) -> Done | Block:
    feed = feed_of(k)
    if a.since is not None and a.since > k.head_seq:
        raise InvalidArgument(f"since {a.since} is ahead of the log (at {k.head_seq})")
    watched = fs_path(a.path)
    cursor = [a.since if a.since is not None else k.head_seq]  # changes up to here are looked at

    def answer(changes: list[dict[str, Any]], nxt: int, *, lost: bool = False, more: bool = False) -> Done:
        return Done({"changes": changes, "next": nxt, "lost": lost, "more": more})

    def poll() -> Done | None:
        if cursor[0] < feed.floor:
            return answer([], k.head_seq, lost=True)
        newer: list[Change] = []
        for ch in reversed(feed.changes):
            if ch.seq <= cursor[0]:
                break
            newer.append(ch)
        sees, out, size = Sight(k, c), [], 0
        if not sees(watched):  # revoked (or expired) while the caller waited
            raise PermissionDenied(
                f"watch on {watched}: the capability that allowed it is gone", code="EACCES"
            )
        for ch in reversed(newer):
            row = _shown(ch, watched, a.recursive, sees)
            if row is None:
                continue
            if len(out) == a.limit or size > REPLY_PATH_BYTES:
                return answer(out, out[-1]["seq"], more=True)
            out.append(row)
            size += len(row["path"] or "") + len(row.get("from") or "")
        cursor[0] = max(cursor[0], k.head_seq)
        return answer(out, cursor[0]) if out else None

    if c.intent is not None and a.since is None:  # resumed: what happened since the call is unknown
        return answer([], k.head_seq, lost=True)
    done = poll()
    if done is not None:
        return done
    deadline = None
    if a.timeout is not None:
        resumed = c.intent.deadline_ns if c.intent is not None else None
        deadline = resumed or time.time_ns() + int(a.timeout * 1e9)
        if deadline <= time.time_ns():
            return answer([], cursor[0])
    return Block(
        "watch", poll=poll, deadline_ns=deadline, on_deadline=lambda: poll() or answer([], cursor[0])
    )
