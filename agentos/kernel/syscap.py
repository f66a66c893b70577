"""sys_* handlers for capabilities: list, delegate, transfer, revoke, request (human approval), and
the administrators' views: caps of a process with derivation chains, the audit trail, approvals.

Every grant goes through ``Authority.derive`` (attenuation is enforced in that one place).
Revocations, expiries, uses and approvals are ledger events: no rewind undoes them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from agentos import param
from agentos.abi import syscalls as sc
from agentos.caps import pattern
from agentos.errors import Conflict, NotFound, PermissionDenied, TimedOut
from agentos.kernel.calls import Block, Caller, Done
from agentos.state import events as ev
from agentos.state.caps import Capability
from agentos.state.world import Approval

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

AUDIT_KINDS = (
    "cap.granted",
    "cap.transferred",
    "cap.revoked",
    "cap.expired",
    "approval.requested",
    "approval.decided",
    "audit.denied",
)


def cap_row(k: Kernel, cap: Capability) -> dict[str, Any]:
    return {
        "cap": cap.id,
        "holder": cap.holder,
        "resource": cap.resource,
        "rights": cap.rights,
        "origin": cap.origin,
        "by": cap.by,
        "parent": cap.parent,
        "depth": cap.depth,
        "expires_ns": cap.expires_ns,
        "uses_left": k.authority.remaining_uses(cap),
        "status": k.authority.problem(cap) or "live",
        "granted_ts": cap.granted_ts,
        "note": cap.note,
    }


def _live_target(k: Kernel, pid: int) -> None:
    p = k.state.world.procs.get(pid)
    if p is None or not p.alive:
        raise NotFound(f"no live process {pid}", code="ESRCH")
    if p.pid == param.INIT_PID:
        raise PermissionDenied("init already holds the root capability")


def sys_cap_list(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    p = k.state.world.procs.get(c.pid)
    if p is not None and p.caps_opaque:
        raise PermissionDenied(
            f"process {c.pid} was started with opaque capabilities: it may use them, not list them",
            code="EACCES",
        )
    return Done([cap_row(k, cap) for cap in k.state.world.caps.held_by(k.authority.holder(c))])


def sys_cap_delegate(k: Kernel, c: Caller, a: sc.CapDelegateArgs) -> Done:
    _live_target(k, a.to)
    source = k.authority.source_for(k.authority.holder(c), a.spec)
    grant = k.authority.derive(
        source,
        a.spec,
        holder=a.to,
        origin="delegate",
        by=c.pid,
        delegation=True,
        cap_id=k.state.ledger.next_cap,
    )
    return Done({"cap": grant.cap, "expires_ns": grant.expires_ns}, [grant])


def sys_cap_transfer(k: Kernel, c: Caller, a: sc.CapTransferArgs) -> Done:
    _live_target(k, a.to)
    cap = k.authority.source_for(k.authority.holder(c), sc.CapSpec(cap=a.cap))
    if cap.parent is None:
        raise Conflict("the root capability stays with init", code="EPERM")
    if not pattern.has_right(cap.rights, "grant"):
        raise PermissionDenied(f"capability {cap.id} lacks the 'grant' right needed to give it away")
    if not k.authority.may_hold_relative(cap.resource, cap.holder, a.to):
        raise PermissionDenied(f"{cap.resource} means process {cap.holder}'s descendants: {a.to} is not one")
    return Done({"cap": cap.id}, [ev.CapTransferred(cap=cap.id, sender=c.pid, to=a.to)])


def _may_revoke(k: Kernel, pid: int, target: Capability) -> bool:
    """The holder itself, the holder of any ancestor (who delegated it), or a root holder (a person)."""
    for held in k.state.world.caps.held_by(pid):
        if k.authority.problem(held):
            continue
        if held.id == target.id or held.id in target.chain:
            return True
        if held.resource == pattern.ANY and pattern.ANY in held.rights:
            return True
    return False


def _departed(k: Kernel, cap_id: int) -> Capability | None:
    """An ancestor whose holder was reaped (so it left the table) while derived ones live on: it can
    still be revoked, cutting them off."""
    for held in k.state.world.caps.caps.values():
        if cap_id in held.chain:
            chain = held.chain[: held.chain.index(cap_id)]
            parent = chain[-1] if chain else None
            return Capability(
                id=cap_id, holder=-1, resource="", rights=[], parent=parent, chain=chain, origin="", by=0
            )
    return None


def sys_cap_revoke(k: Kernel, c: Caller, a: sc.CapRevokeArgs) -> Done:
    target = k.state.world.caps.get(a.cap) or _departed(k, a.cap)
    if target is None:
        raise NotFound(f"no capability {a.cap} is held by anyone", code="ENOENT")
    if target.parent is None:
        raise Conflict("the root capability cannot be revoked", code="EPERM")
    if not _may_revoke(k, k.authority.holder(c), target):
        raise PermissionDenied(
            f"process {c.pid} neither holds capability {a.cap} nor one it was derived from", code="EACCES"
        )
    if a.cap in k.state.ledger.revoked:
        return Done({"cap": a.cap, "already": True})
    return Done({"cap": a.cap, "already": False}, [ev.CapRevoked(cap=a.cap, by=c.pid, reason=a.reason)])


# -- human approval --------------------------------------------------------------------------


def sys_cap_request(k: Kernel, c: Caller, a: sc.CapRequestArgs) -> Done | Block:
    resource = pattern.normalise(a.resource)
    rights = list(pattern.normalise_rights(a.rights))
    for held in k.state.world.caps.held_by(k.authority.holder(c)):
        if (
            pattern.subsumes(held.resource, resource)
            and pattern.rights_within(rights, held.rights)
            and not k.authority.problem(held)
        ):
            return Done({"cap": held.id, "outcome": "held", "expires_ns": held.expires_ns})
    # The same call again after a crash (it has a journaled intent) is answered by the request it
    # filed, whatever became of it meanwhile; a new call waits on a pending one for the same thing.
    resumed = c.intent is not None
    matching = [
        ap
        for ap in k.state.ledger.approvals.values()
        if ap.pid == c.pid
        and ap.resource == resource
        and ap.rights == rights
        and (resumed or ap.outcome == "pending")
    ]
    pending = max(matching, key=lambda ap: ap.id) if matching else None
    events: list[ev.Payload] = []
    if pending is None:
        deadline = time.time_ns() + int((a.timeout or param.APPROVAL_WAIT_SECONDS) * 1e9)
        if c.intent is not None and c.intent.deadline_ns:
            deadline = c.intent.deadline_ns
        approval_id = k.state.ledger.next_approval
        events.append(
            ev.ApprovalRequested(
                id=approval_id,
                pid=c.pid,
                resource=resource,
                rights=rights,
                reason=a.reason,
                deadline_ns=deadline,
            )
        )
    else:
        approval_id, deadline = pending.id, pending.deadline_ns

    def answered() -> Done | None:
        ap = k.state.ledger.approvals.get(approval_id)
        if ap is None or ap.outcome == "pending":
            return None
        if ap.outcome == "approved":
            cap = k.state.world.caps.get(ap.cap) if ap.cap is not None else None
            return Done({"cap": ap.cap, "outcome": "approved", "expires_ns": cap.expires_ns if cap else None})
        if ap.outcome == "expired":
            raise TimedOut(f"nobody answered request {approval_id} for {resource} in time")
        raise PermissionDenied(
            f"request {approval_id} for {resource} was {ap.outcome}"
            + (f" by process {ap.by}" if ap.by else "")
            + (f": {ap.answer}" if ap.answer else ""),
            code="EACCES",
        )

    def expired() -> Done:
        k.emit(ev.ApprovalDecided(id=approval_id, outcome="expired", by=param.KERNEL_PID))
        raise TimedOut(f"nobody answered request {approval_id} for {resource} in time")

    return Block("cap_request", poll=answered, deadline_ns=deadline, on_deadline=expired, events=events)


def _pending(k: Kernel, approval_id: int) -> Approval:
    ap = k.state.ledger.approvals.get(approval_id)
    if ap is None:
        raise NotFound(f"no approval request {approval_id}", code="ENOENT")
    if ap.outcome != "pending":
        raise Conflict(f"request {approval_id} was already {ap.outcome}", code="EALREADY")
    return ap


def sys_approve(k: Kernel, c: Caller, a: sc.ApproveArgs) -> Done:
    ap = _pending(k, a.id)
    p = k.state.world.procs.get(ap.pid)
    if p is None or not p.alive:
        raise Conflict(f"process {ap.pid}, which asked, is no longer alive", code="ESRCH")
    duration = a.duration or param.APPROVAL_DEFAULT_SECONDS
    grant = k.authority.derive(
        k.root_cap(),
        sc.CapSpec(resource=ap.resource, rights=ap.rights, expires_in=duration, depth=0),
        holder=ap.pid,
        origin="approval",
        by=c.pid,
        delegation=False,
        cap_id=k.state.ledger.next_cap,
        note=f"request {ap.id}: {ap.reason}"[:512],
    )
    decided = ev.ApprovalDecided(id=ap.id, outcome="approved", by=c.pid, cap=grant.cap, duration_s=duration)
    return Done(
        {"id": ap.id, "cap": grant.cap, "pid": ap.pid, "expires_ns": grant.expires_ns}, [grant, decided]
    )


def sys_deny(k: Kernel, c: Caller, a: sc.DenyArgs) -> Done:
    ap = _pending(k, a.id)
    return Done({"id": ap.id}, [ev.ApprovalDecided(id=ap.id, outcome="denied", by=c.pid, reason=a.reason)])


def sys_approvals(k: Kernel, c: Caller, a: sc.ApprovalsArgs) -> Done:
    rows = [
        msgspec.to_builtins(ap)
        for ap in k.state.ledger.approvals.values()
        if a.all or ap.outcome == "pending"
    ]
    return Done(sorted(rows, key=lambda r: r["id"]))


# -- administrators' views ---------------------------------------------------------------------


def _granted_event(k: Kernel, cap_id: int) -> dict[str, Any] | None:
    """An ancestor no longer held by anyone: its grant, from the log."""
    rows = k.reader.execute(
        "SELECT pid, payload FROM events WHERE kind='cap.granted' AND json_extract(payload, '$.cap') = ? "
        "AND seq <= ? LIMIT 1",
        (cap_id, k.committer.durable_seq),
    ).fetchall()
    if not rows:
        return None
    payload = msgspec.json.decode(rows[0][1])
    return {k_: payload.get(k_) for k_ in ("cap", "holder", "resource", "rights", "origin", "by")}


def sys_caps(k: Kernel, c: Caller, a: sc.CapsArgs) -> Done:
    if k.state.world.procs.get(a.pid) is None:
        raise NotFound(f"no process {a.pid}", code="ESRCH")
    out = []
    for cap in k.state.world.caps.held_by(a.pid):
        row = cap_row(k, cap)
        chain = []
        for ancestor in cap.chain:
            held = k.state.world.caps.get(ancestor)
            if held is not None:
                chain.append({f: getattr(held, f) for f in ("holder", "resource", "rights", "origin", "by")})
                chain[-1]["cap"] = held.id
            else:
                chain.append(_granted_event(k, ancestor) or {"cap": ancestor, "origin": "unknown"})
            chain[-1]["revoked"] = ancestor in k.state.ledger.revoked
        row["chain"] = chain
        out.append(row)
    return Done(out)


def _concerns(k: Kernel, row: dict[str, Any], pid: int) -> bool:
    if row["pid"] == pid:
        return True
    payload = row["payload"]
    if row["kind"] == "approval.decided":
        asked = k.state.ledger.approvals.get(payload["id"])
        return asked is not None and asked.pid == pid
    if row["kind"] in ("cap.revoked", "cap.expired"):  # its own capability, or one derived from it
        cap_id = payload["cap"]
        cap = k.state.world.caps.get(cap_id)
        holder = cap.holder if cap is not None else (_granted_event(k, cap_id) or {}).get("holder")
        return holder == pid or any(cap_id in c.chain for c in k.state.world.caps.held_by(pid))
    return any(payload.get(f) == pid for f in ("pid", "holder", "to", "sender"))


def sys_audit(k: Kernel, c: Caller, a: sc.AuditArgs) -> Done:
    from agentos.kernel.sysadmin import event_row

    kinds = ["audit.denied"] if a.denied else list(AUDIT_KINDS)
    out = []
    for record in k.log.read(a.since, until=k.committer.durable_seq, kinds=kinds, conn=k.reader):
        row = event_row(record)
        if a.pid is not None and not _concerns(k, row, a.pid):
            continue
        out.append(row)
        if len(out) >= a.limit:
            break
    return Done(out)
