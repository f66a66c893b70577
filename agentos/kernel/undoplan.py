"""Operations inverted as new events: what ``undo`` does to each operation, and ``redo`` to an undo.

Each effect has its inverse. File changes go through ``fsundo.Plan`` (all the operations' changes
as one selection, so a file two of them touched goes back to before the older; anyone else's later
change is a conflict, left alone), host-mount changes through ``HostUndo`` (by their calls). A grant
is revoked. A revocation is never undone — rewinding or undoing never revives a revoked capability
(ARCHITECTURE.md §4.4) — except that redoing an undo's own revocation grants a *new* capability
(a new id: ids are never reused) with the same holder, resource, rights and parent, if that parent
still works, the holder lives, and uses are left (a redo refunds none). A transfer is not undone
(the new holder may give it back). A mount is unmounted, an umount mounted again (the same source),
a group's limits set back; each needs the right the original call needed (``admin`` ``mount`` /
``groups``). What cannot be inverted is reported with its reason, never dropped.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import PermissionDenied
from agentos.kernel import fshistory
from agentos.kernel.calls import Caller
from agentos.kernel.fshistory import Change
from agentos.kernel.fsundo import Plan
from agentos.kernel.undo import History, Op, counts, decode
from agentos.kernel.vfs.hostundo import HostUndo
from agentos.state import events as ev
from agentos.state.vfs import DIR
from agentos.store import oplog

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

NEVER_REVIVED = (
    "a revocation is never undone: undoing never revives a revoked capability (ARCHITECTURE.md §4.4)"
)
PENDING = frozenset({"vfs.wrote", "vfs.truncated"})


def pending_of(k: Kernel, selected: list[Change]) -> list[Change]:
    """The pending writes and truncates the selected versions cut (they belong to the operation
    that published them), not selected themselves."""
    sel = {c.seq for c in selected}
    inos = {c.ino for c in selected if c.kind == "vfs.version"}
    extra: list[Change] = []
    waiting: dict[int, list[Change]] = defaultdict(list)
    for ch in fshistory.file_changes(k, inos) if inos else []:
        if ch.kind in PENDING:
            waiting[ch.ino].append(ch)
        elif ch.kind in ("vfs.version", "vfs.created"):
            if ch.seq in sel:
                extra += [p for p in waiting[ch.ino] if p.seq not in sel]
            waiting[ch.ino] = []
    return extra


class Inverter:
    """The inverse events of some operations (newest first), and per operation what it did."""

    def __init__(self, k: Kernel, c: Caller, h: History) -> None:
        self.k, self.c, self.h = k, c, h
        self.events: list[ev.Payload] = []  # caps, mounts, groups
        self.effects: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.reasons: dict[str, list[str]] = defaultdict(list)
        self.conflicts: list[dict[str, Any]] = []
        self.denied: list[dict[str, Any]] = []
        self.revoked: set[int] = set()
        self.next_cap = k.state.ledger.next_cap
        self.limits: dict[str, dict[str, float]] = {}  # group -> limits once our events apply
        self.mounts: dict[str, ev.VfsMounted | None] = {}  # mount point -> what it will be
        self.plan: Plan | None = None
        self.host: HostUndo | None = None

    # -- the whole run ------------------------------------------------------------------------------

    def run(self, ops: list[Op]) -> None:
        for op in ops:
            for r in reversed(op.records):
                if counts(r) and r.kind not in fshistory.CHANGES and r.kind != "vfs.host_change":
                    try:
                        self._one(op, r.seq, r.kind, decode(r))
                    except PermissionDenied as err:
                        self.denied.append({"ops": [op.key], "path": "", "reason": err.message})
        self._files(ops)
        self._host(ops)

    def _files(self, ops: list[Op]) -> None:
        selected: list[Change] = []
        owners: dict[int, list[str]] = defaultdict(list)
        for op in ops:
            for r in op.records:
                if r.kind in fshistory.CHANGES:
                    ch = Change(r.seq, r.ts, r.kind, r.syscall, r.correlation, decode(r))
                    selected.append(ch)
                    for ino in (ch.ino, getattr(ch.e, "replaced", 0)):
                        if ino and op.key not in owners[ino]:
                            owners[ino].append(op.key)
        if not selected:
            return
        selected += pending_of(self.k, selected)
        self.plan = plan = Plan(self.k, self.c, sorted(selected, key=lambda ch: ch.seq))  # oldest first
        plan.run()
        for row in plan.report["reverted"]:
            for key in owners.get(row["ino"], []):
                self.effects[key].append(row)
        for name, out in (("conflicts", self.conflicts), ("denied", self.denied)):
            for row in plan.report[name]:
                keys = owners.get(row["ino"], [])
                out.append(row | {"ops": keys})
                for key in keys:
                    self.reasons[key].append(
                        f"{name[:-1] if name == 'conflicts' else 'denied'}: {row['path']}: {row['reason']}"
                    )

    def _host(self, ops: list[Op]) -> None:
        owner = {r.seq: op.key for op in ops for r in op.records if r.kind == "vfs.host_change"}
        if not owner:
            return
        self.host = host = HostUndo(self.k, self.c)
        host.run(calls={op.correlation for op in ops if op.correlation is not None})
        for row in host.reverted:
            self.effects[owner.get(row["seq"], "?")].append(row)
        for name, out in (("conflicts", self.conflicts), ("denied", self.denied)):
            for row in getattr(host, name):
                key = owner.get(row["seq"], "?")
                out.append(row | {"ops": [key]})
                self.reasons[key].append(
                    f"{'conflict' if name == 'conflicts' else 'denied'}: {row['path']}: {row['reason']}"
                )

    # -- one effect ---------------------------------------------------------------------------------

    def _one(self, op: Op, seq: int, kind: str, e: Any) -> None:
        key = op.key
        if kind == "cap.granted":
            if e.cap in self.k.state.ledger.revoked or e.cap in self.revoked:
                self.reasons[key].append(f"capability {e.cap} was already revoked")
                return
            self.revoked.add(e.cap)
            self.events.append(ev.CapRevoked(cap=e.cap, by=self.c.pid, reason=f"undo of {key}"[:256]))
            row = {
                "action": "revoked",
                "cap": e.cap,
                "holder": e.holder,
                "resource": e.resource,
                "rights": e.rights,
            }
            self.effects[key].append(row)
        elif kind == "cap.revoked" and op.undo is not None:  # redo of an undone grant
            self._grant_again(key, e.cap)
        elif kind == "cap.revoked":
            self.reasons[key].append(f"revoke of capability {e.cap}: {NEVER_REVIVED}")
        elif kind == "cap.transferred":
            self.reasons[key].append(
                f"transfer of capability {e.cap}: not undone (its holder, pid {e.to}, may give it back)"
            )
        elif kind == "vfs.mounted":
            self._unmount(key, e)
        elif kind == "vfs.unmounted":
            self._mount_again(key, seq, e)
        elif kind == "group.limits":
            self._limits(key, seq, e)

    def _conflict(self, key: str, where: str, reason: str) -> None:
        self.conflicts.append(
            {"ops": [key], "path": where, "reason": reason, "pid": None, "process": None, "seq": None}
        )
        self.reasons[key].append(f"conflict: {where}: {reason}")

    def _grant_again(self, key: str, cap: int) -> None:
        found = oplog.last_with(
            self.k.reader, ["cap.granted"], "cap", cap, self.h.until + 1, self.h.lineage.literal()
        )
        mem = [r for r in self.h.memory() if r.kind == "cap.granted" and decode(r).cap == cap]
        e = decode(mem[-1]) if mem else decode(found) if found is not None else None
        if e is None:
            return self.reasons[key].append(f"capability {cap}: its grant is not in the log")
        parent = self.k.state.world.caps.get(e.parent) if e.parent is not None else None
        holder = self.k.state.world.procs.get(e.holder)
        problem = "is gone" if parent is None else self.k.authority.problem(parent)
        used = self.k.state.ledger.cap_uses.get(cap, 0)
        left = e.max_uses - used if e.max_uses is not None else None
        why = ""
        if problem:
            why = f"its parent capability {e.parent} {problem}: a redo never revives authority"
        elif holder is None or not holder.alive:
            why = f"its holder, pid {e.holder}, is gone"
        elif e.expires_ns is not None and e.expires_ns <= self.k.authority.clock():
            why = "it has expired"
        elif left is not None and left <= 0:
            why = f"it had used up its {e.max_uses} uses"
        if why:
            return self.reasons[key].append(f"capability {cap} not granted again: {why}")
        new = self.next_cap
        self.next_cap += 1
        limits = [[new, left] if c == cap else [c, n] for c, n in e.limits]
        self.events.append(
            ev.CapGranted(
                cap=new,
                holder=e.holder,
                resource=e.resource,
                rights=list(e.rights),
                parent=e.parent,
                chain=list(e.chain),
                origin="redo",
                by=self.c.pid,
                depth=e.depth,
                expires_ns=e.expires_ns,
                max_uses=left,
                limits=limits,
                note=f"redo of capability {cap}"[:512],
            )
        )
        row = {
            "action": "granted",
            "cap": new,
            "was": cap,
            "holder": e.holder,
            "resource": e.resource,
            "rights": e.rights,
        }
        self.effects[key].append(row)
        return None

    def _mount_now(self, point: str) -> Any:
        return self.mounts[point] if point in self.mounts else self.k.state.world.vfs.mounts.get(point)

    def _unmount(self, key: str, e: ev.VfsMounted) -> None:
        self.k.authority.authorise(self.c, "undo", "admin", "mount")
        now = self._mount_now(e.path)
        fs = self.k.state.world.vfs
        if now is None:
            return self.reasons[key].append(f"{e.path} is already unmounted")
        if (now.kind, now.source) != (e.kind, e.source):
            return self._conflict(key, e.path, f"mounted again since, from {now.source}")
        users = sorted({f.pid for f in fs.files.values() if f.mount == e.path})
        if users or any(i.mount == e.path for i in fs.host_unmade.values()):
            return self._conflict(key, e.path, f"busy: files open (processes {users}) or changes being made")
        self.mounts[e.path] = None
        self.events.append(ev.VfsUnmounted(path=e.path, pid=self.c.pid))
        self.effects[key].append({"action": "unmounted", "path": e.path})
        return None

    def _mount_again(self, key: str, seq: int, e: ev.VfsUnmounted) -> None:
        self.k.authority.authorise(self.c, "undo", "admin", "mount")
        found = oplog.last_with(self.k.reader, ["vfs.mounted"], "path", e.path, seq, self.h.lineage.literal())
        mem = [
            r for r in self.h.memory() if r.kind == "vfs.mounted" and r.seq < seq and decode(r).path == e.path
        ]
        m = decode(mem[-1]) if mem else decode(found) if found is not None else None
        if m is None:
            return self.reasons[key].append(f"umount of {e.path}: no mount of it is in the log")
        if self._mount_now(e.path) is not None:
            return self._conflict(key, e.path, "mounted again since")
        if not os.path.isdir(m.source):
            return self._conflict(key, e.path, f"the host directory {m.source} is gone")
        fs = self.k.state.world.vfs
        ino = fs.lookup(e.path, follow=False)
        if ino is not None and (fs.inodes[ino].kind != DIR or fs.inodes[ino].entries):
            return self._conflict(key, e.path, "the mount point holds files now")
        again = ev.VfsMounted(path=e.path, kind=m.kind, source=m.source, readonly=m.readonly, pid=self.c.pid)
        self.mounts[e.path] = again
        self.events.append(again)
        self.effects[key].append({"action": "mounted", "path": e.path, "source": m.source})
        return None

    def _limits(self, key: str, seq: int, e: ev.GroupLimitsSet) -> None:
        self.k.authority.authorise(self.c, "undo", "admin", "groups")
        group = self.k.state.world.groups.get(e.name)
        if group is None:
            return self._conflict(key, f"group {e.name}", "the group is gone")
        if self.limits.get(e.name, group.limits) != e.limits:
            return self._conflict(key, f"group {e.name}", "its limits were changed since")
        kinds = ["group.limits", "group.created"]
        found = oplog.last_with(self.k.reader, kinds, "name", e.name, seq, self.h.lineage.literal())
        mem = [r for r in self.h.memory() if r.kind in kinds and r.seq < seq and decode(r).name == e.name]
        prev = decode(mem[-1]) if mem else decode(found) if found is not None else None
        limits = dict(prev.limits) if prev is not None else {}
        self.limits[e.name] = limits
        self.events.append(ev.GroupLimitsSet(name=e.name, limits=limits, by=self.c.pid))
        self.effects[key].append({"action": "limits", "group": e.name, "limits": limits})
        return None

    # -- the answer ---------------------------------------------------------------------------------

    def all_events(self) -> list[ev.Payload]:
        """Files first (their plan was made against the tree as it is), then the rest, host last."""
        out = list(self.plan.view.events if self.plan is not None else [])
        out += self.events
        return out + (self.host.events if self.host is not None else [])

    def split(self, ops: list[Op]) -> tuple[list[Op], list[Op]]:
        """(inverted, passed over): an operation with no effect inverted is passed over, with reasons."""
        done = [op for op in ops if self.effects.get(op.key)]
        skipped = [op for op in ops if not self.effects.get(op.key)]
        for op in skipped:
            if not self.reasons.get(op.key):
                self.reasons[op.key].append("nothing left to revert: it is already as it was before")
        return done, skipped

    def report(self) -> dict[str, Any]:
        cap = param.UNDO_MAX_REPORT
        return {
            "conflicts": self.conflicts[:cap],
            "conflicts_count": len(self.conflicts),
            "denied": self.denied[:cap],
            "denied_count": len(self.denied),
        }
