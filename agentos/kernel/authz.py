"""Authorisation: does the caller hold a live capability for (resource, right)? And deriving new ones.

The dispatcher asks ``authorise`` before every handler (deny by default). A decision is cached per
holder; the moment a capability is revoked, the cache of every holder of it or of anything derived
from it is dropped (as is a sender's on a transfer, a reaped process's, and all of them when the
state is replaced by a rebuild or rewind), so no revoked capability is ever served from the cache;
a hit still checks the capability's expiry against the real clock. Capabilities with a use limit
are never cached: each use is charged (a ``cap.used`` ledger event) and checked.

Derivation (spawn, delegation, approvals) goes through ``derive``, the one place that enforces
attenuation: narrower or equal resource, a subset of the rights, no later expiry, no more uses,
less delegation depth — asking for more is ``PermissionDenied``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentos import param
from agentos.abi import syscalls as sc
from agentos.caps import pattern
from agentos.errors import PermissionDenied
from agentos.state import events as ev
from agentos.state.caps import Capability

if TYPE_CHECKING:
    from agentos.kernel.calls import Caller
    from agentos.kernel.kernel import Kernel

# events after which a cached "allowed" may be wrong
ROOT_RESOURCE, ROOT_RIGHTS = pattern.ANY, [pattern.ANY]


INVALIDATING = frozenset({ev.CapRevoked, ev.CapTransferred, ev.ProcReaped})  # what on_event handles
Decisions = dict[tuple[str, str], tuple[Capability, int | None]]  # (resource, right) -> (cap, expiry)


class Authority:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self._caches: dict[int, Decisions] = {}  # per holder pid
        self.hits = 0
        self.misses = 0
        self.clock: Callable[[], int] = time.time_ns  # real wall time; tests substitute their own

    # -- watching the events that change decisions (Kernel.watch): invalidate at once -----------

    def on_event(self, seq: int, payload: ev.Payload) -> None:
        kind = type(payload)
        if kind is ev.CapRevoked:  # every holder of it or of anything derived from it, at once
            for cap in self.k.state.world.caps.caps.values():
                if cap.id == payload.cap or payload.cap in cap.chain:
                    self._caches.pop(cap.holder, None)
        elif kind is ev.CapTransferred:
            self._caches.pop(payload.sender, None)
        elif kind is ev.ProcReaped:
            self._caches.pop(payload.pid, None)
        # (an expiry needs nothing: every hit checks the clock; a grant only adds)

    def reset(self) -> None:
        """The state was replaced (a rewind or rebuild): forget every decision."""
        self._caches.clear()

    # -- checking --------------------------------------------------------------------------------

    @staticmethod
    def holder(caller: Caller) -> int:
        """Whose capabilities a caller uses: its own; a session (the person at the CLI, alone on the
        home's socket) acts with init's root capability, so connecting grants nothing new."""
        return param.INIT_PID if caller.kind == "session" else caller.pid

    def authorise(self, caller: Caller, call: str, resource: str, right: str) -> Capability:
        """The capability that allows ``right`` on ``resource`` for the caller, or raise (and audit)."""
        pid = self.holder(caller)
        if caller.use_cap is not None:
            return self._designated(caller, pid, call, resource, right)
        cache = self._caches.get(pid)
        if cache is None:
            cache = self._caches[pid] = {}
        key = (resource, right)
        hit = cache.get(key)
        if hit is not None and (hit[1] is None or self.clock() < hit[1]):
            self.hits += 1
            return hit[0]
        self.misses += 1
        now = self.clock()
        found, why_not, relative = self._find(pid, resource, right, now)
        if found is None:
            raise self._deny(
                caller,
                call,
                resource,
                right,
                f"{call} needs the {right!r} right on {resource}, which process {caller.pid} does not hold"
                + (f" ({why_not})" if why_not else ""),
            )
        if not self._charge(caller, found) and not relative:
            cache[key] = (found, found.expires_ns)
        return found

    def _deny(self, caller: Caller, call: str, resource: str, right: str, message: str) -> PermissionDenied:
        """Audit a refusal (a ledger event) and return the error to raise."""
        self.k.emit(
            ev.AccessDenied(pid=caller.pid, call=call, right=right, resource=resource),
            caller.pid,
            syscall=caller.syscall_id,
            correlation=caller.correlation,
        )
        return PermissionDenied(message, code="EACCES")

    def _charge(self, caller: Caller, cap: Capability) -> bool:
        """Charge one use to every use-limited capability on ``cap``'s chain; whether there were any."""
        limited = self._limited(cap)
        if limited:
            self.k.emit(
                ev.CapUsed(caps=[c for c, _ in limited]),
                caller.pid,
                syscall=caller.syscall_id,
                correlation=caller.correlation,
            )
        return bool(limited)

    def _designated(self, caller: Caller, pid: int, call: str, resource: str, right: str) -> Capability:
        """The call names its capability (a deputy using what a requester delegated to it): that one
        authorises it or nothing does — never the deputy's own, wider ones. Not cached."""
        cap = self.k.state.world.caps.get(caller.use_cap) if caller.use_cap is not None else None
        why = ""
        if cap is None or cap.holder != pid:
            why = f"it holds no capability {caller.use_cap}"
        elif not pattern.has_right(cap.rights, right):
            why = f"capability {cap.id} lacks the {right!r} right"
        elif not pattern.covers(cap.resource, resource, pid, self._relative):
            why = f"capability {cap.id} ({cap.resource}) does not cover {resource}"
        else:
            problem = self.problem(cap)
            why = f"capability {cap.id} {problem}" if problem else ""
        if why:
            raise self._deny(
                caller, call, resource, right, f"{call} on {resource} with capability {caller.use_cap}: {why}"
            )
        assert cap is not None
        self._charge(caller, cap)
        return cap

    def _find(self, pid: int, resource: str, right: str, now: int) -> tuple[Capability | None, str, bool]:
        why_not = ""
        for cap in self.k.state.world.caps.held_by(pid):
            if not pattern.has_right(cap.rights, right):
                continue
            kind, value = pattern.split(cap.resource)
            relative = value in pattern.RELATIVE.get(kind, ())
            if not pattern.covers(cap.resource, resource, pid, self._relative):
                continue
            problem = self.problem(cap, now)
            if problem:
                why_not = f"capability {cap.id} covering it {problem}"
                continue
            return cap, "", relative
        return None, why_not, False

    def problem(self, cap: Capability, now: int | None = None) -> str:
        """Why ``cap`` no longer works ('' if it does): revoked (itself or an ancestor), expired, used up."""
        ledger = self.k.state.ledger
        if cap.id in ledger.revoked:
            return "was revoked"
        for ancestor in cap.chain:
            if ancestor in ledger.revoked:
                return f"was revoked with its ancestor {ancestor}"
        if cap.expires_ns is not None and (now or self.clock()) >= cap.expires_ns:
            if cap.id not in ledger.expired:
                self.k.emit(ev.CapExpired(cap=cap.id))
            return "has expired"
        for limited, max_uses in self._limited(cap):
            if ledger.cap_uses.get(limited, 0) >= max_uses:
                return (
                    f"has used up its {max_uses} uses"
                    if limited == cap.id
                    else f"was derived from capability {limited}, which has used up its {max_uses} uses"
                )
        return ""

    @staticmethod
    def _limited(cap: Capability) -> list[tuple[int, int]]:
        return [(c, n) for c, n in cap.limits]

    def _relative(self, holder: int, kind: str, keyword: str, value: str) -> bool:
        """``proc:children``: a live descendant of the holder."""
        if kind != "proc" or keyword != "children" or not value.isdigit():
            return False
        procs = self.k.state.world.procs
        p = procs.get(int(value))
        hops = 0
        while p is not None and p.pid != param.INIT_PID and hops < 100_000:
            if p.ppid == holder:
                return True
            p = procs.get(p.ppid)
            hops += 1
        return False

    def may_hold_relative(self, resource: str, giver: int, holder: int) -> bool:
        """A relative pattern (``proc:children``) names the *giver's* descendants only while it stays
        in the giver's subtree: given to anyone else it would mean theirs, a widening."""
        kind, value = pattern.split(resource)
        if value not in pattern.RELATIVE.get(kind, ()):
            return True
        return giver in (param.INIT_PID, holder) or self._relative(giver, kind, value, str(holder))

    def remaining_uses(self, cap: Capability) -> int | None:
        left = [n - self.k.state.ledger.cap_uses.get(c, 0) for c, n in self._limited(cap)]
        return min(left) if left else None

    def expire_due(self) -> int:
        """Record the expiry of every capability past it (the audit trail; checks need no event)."""
        now = self.clock()
        expired = self.k.state.ledger.expired
        due = [
            c.id
            for c in self.k.state.world.caps.caps.values()
            if c.expires_ns is not None and c.expires_ns <= now and c.id not in expired
        ]
        for cap in due:
            self.k.emit(ev.CapExpired(cap=cap))
        return len(due)

    def next_expiry_ns(self) -> int | None:
        expired = self.k.state.ledger.expired
        pending = [
            c.expires_ns
            for c in self.k.state.world.caps.caps.values()
            if c.expires_ns is not None and c.id not in expired
        ]
        return min(pending) if pending else None

    # -- deriving --------------------------------------------------------------------------------

    def source_for(self, pid: int, spec: sc.CapSpec) -> Capability:
        """The held, live capability a request narrows: the one named, else the first that covers it."""
        now = self.clock()
        if spec.cap is not None:
            cap = self.k.state.world.caps.get(spec.cap)
            if cap is None or cap.holder != pid:
                raise PermissionDenied(f"process {pid} holds no capability {spec.cap}", code="EBADF")
            problem = self.problem(cap, now)
            if problem:
                raise PermissionDenied(f"capability {cap.id} {problem}", code="EACCES")
            return cap
        if spec.resource is None:
            raise PermissionDenied("name the capability (cap) or the resource you ask for", code="EINVAL")
        want = pattern.normalise(spec.resource)
        rights = pattern.normalise_rights(spec.rights) if spec.rights is not None else None
        for cap in self.k.state.world.caps.held_by(pid):
            if not pattern.subsumes(cap.resource, want):
                continue
            if rights is not None and not pattern.rights_within(rights, cap.rights):
                continue
            if self.problem(cap, now):
                continue
            return cap
        raise PermissionDenied(
            f"process {pid} holds no live capability covering {want} with rights {list(rights or [])}",
            code="EACCES",
        )

    def derive(
        self,
        source: Capability,
        spec: sc.CapSpec,
        *,
        holder: int,
        origin: str,
        by: int,
        delegation: bool,
        cap_id: int,
        note: str = "",
    ) -> ev.CapGranted:
        """A capability for ``holder`` narrowed from ``source`` by ``spec``: never wider."""
        resource = pattern.normalise(spec.resource) if spec.resource is not None else source.resource
        rights = (
            list(pattern.normalise_rights(spec.rights)) if spec.rights is not None else list(source.rights)
        )
        if not pattern.subsumes(source.resource, resource):
            raise PermissionDenied(f"{resource} is wider than capability {source.id} ({source.resource})")
        # a spawned child is a descendant by construction (and not in the state yet)
        if origin != "spawn" and not self.may_hold_relative(resource, source.holder, holder):
            raise PermissionDenied(
                f"{resource} means process {source.holder}'s descendants: {holder} is not one"
            )
        if not pattern.rights_within(rights, source.rights):
            raise PermissionDenied(f"rights {rights} exceed capability {source.id}'s {source.rights}")
        if delegation:
            if not pattern.has_right(source.rights, "grant"):
                raise PermissionDenied(
                    f"capability {source.id} lacks the 'grant' right needed to delegate it"
                )
            if source.depth < 1:
                raise PermissionDenied(f"capability {source.id} may not be delegated further (depth 0)")
            max_depth = source.depth - 1
        else:
            max_depth = source.depth
        depth = max_depth if spec.depth is None else spec.depth
        if depth > max_depth:
            raise PermissionDenied(
                f"delegation depth {depth} exceeds the {max_depth} capability {source.id} allows"
            )
        expires = source.expires_ns
        if spec.expires_in is not None:
            asked = self.clock() + int(spec.expires_in * 1e9)
            if expires is not None and asked > expires:
                raise PermissionDenied(
                    f"capability {source.id} expires sooner than {spec.expires_in}s from now"
                )
            expires = asked
        limits = list(source.limits)
        if spec.max_uses is not None:
            left = self.remaining_uses(source)
            if left is not None and spec.max_uses > left:
                raise PermissionDenied(
                    f"capability {source.id} has only {left} uses left, not {spec.max_uses}"
                )
        if spec.max_uses is not None:
            limits.append([cap_id, spec.max_uses])
        return ev.CapGranted(
            cap=cap_id,
            holder=holder,
            resource=resource,
            rights=rights,
            parent=source.id,
            chain=[*source.chain, source.id],
            origin=origin,
            by=by,
            depth=depth,
            expires_ns=expires,
            max_uses=spec.max_uses,
            limits=limits,
            note=note,
        )

    def policy_grants(self, pid: int, by: int, *, origin: str = "policy") -> list[ev.CapGranted]:
        """The policy's agent capabilities for a new process, derived from init's root."""
        root, first = self.k.root_cap(), self.k.state.ledger.next_cap
        return [
            self.derive(
                root,
                sc.CapSpec(
                    resource=spec.resource,
                    rights=list(spec.rights),
                    expires_in=spec.expires_in,
                    depth=spec.depth,
                    max_uses=spec.max_uses,
                ),
                holder=pid,
                origin=origin,
                by=by,
                delegation=False,
                cap_id=first + i,
            )
            for i, spec in enumerate(self.k.policy.agent_caps)
        ]
