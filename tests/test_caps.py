"""Capabilities end to end, through the real dispatcher (``Kernel.call``) of an in-process kernel.

Each test boots its own kernel on a fresh home and drives it as a user would: a person (a session
process, acting with init's root capability) spawns agents with capabilities, agents spawn, delegate,
transfer and revoke, and every check is a real syscall. Agents never run: ``Kernel.call`` with an
agent's ``Caller`` is exactly what the runtime does for a trapped syscall. The authority's clock is
replaced by a fake one, so expiry is tested without sleeping.

What is checked: deny by default (every syscall, each refusal audited); attenuation on spawn and
delegation (a hypothesis model of ``source_for``/``derive``/``authorise`` over random capability trees);
revocation cascading through derivation chains; transfer; expiry (own and inherited); use limits
charged to every limited ancestor; the per-process decision cache never serving a dead capability;
opaque processes; and the ledger (revocations, uses) surviving a restart, with a rebuild from the log
hashing equal to the live state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos import param
from agentos.caps import pattern
from agentos.errors import Conflict, NotFound, PermissionDenied
from agentos.kernel.boot import rebuild_state
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.kernel import Kernel
from agentos.kernel.syscall import SYSCALLS
from agentos.state import events as ev
from agentos.state.caps import Capability
from agentos.state.world import state_hash
from agentos.store.home import Home
from agentos.testing.helpers import minimal_args

AGENT_SOURCE = "async def main(*argv):\n    return 0\n"
SECRET = b"s3cret"

# -- a kernel in-process ------------------------------------------------------------------------------


@dataclass
class Rig:
    """A booted kernel, a person at a session, an agent file, and a fake clock the authority reads."""

    k: Kernel
    person: Caller
    target: str
    now: list[int] = field(default_factory=lambda: [time.time_ns()])

    def advance(self, seconds: float) -> None:
        self.now[0] += int(seconds * 1e9)

    def spawn(self, by: Caller, caps: list[dict[str, Any]] | None = None, **extra: Any) -> Caller:
        args: dict[str, Any] = {"target": self.target, **extra}
        if caps is not None:
            args["caps"] = caps
        return Caller(pid=self.k.call(by, "spawn", args).result, kind="agent")

    def held(self, who: Caller) -> list[Capability]:
        return self.k.state.world.caps.held_by(who.pid)

    def cap(self, who: Caller, resource: str) -> Capability:
        """The one capability ``who`` holds for exactly ``resource``."""
        found = [c for c in self.held(who) if c.resource == resource]
        assert len(found) == 1, (who.pid, resource, found)
        return found[0]

    def secret(self, who: Caller, name: str = "K") -> bytes:
        return self.k.call(who, "secret_get", {"name": name}).result

    def expect_refused(self, who: Caller, call: str, args: dict[str, Any], *why: str) -> PermissionDenied:
        """``call`` is refused with PermissionDenied (its message naming each of ``why``)."""
        with pytest.raises(PermissionDenied) as info:
            self.k.call(who, call, args)
        for word in why:
            assert word in str(info.value), (call, str(info.value))
        return info.value


def new_session(k: Kernel) -> Caller:
    """A session process, as the socket server makes one for each connection."""
    pid = k.state.ledger.next_pid
    k.emit(ev.ProcSpawned(pid=pid, ppid=param.INIT_PID, name="person", kind="session"), pid)
    k.emit(ev.ProcStarted(pid=pid), pid)
    return Caller(pid=pid, kind="session")


async def boot_rig(root: Path) -> Rig:
    k = Kernel(Home(root / "home"))
    k.boot()
    agent = root / "agent.py"
    agent.write_text(AGENT_SOURCE)
    rig = Rig(k, Caller(pid=0, kind="session"), str(agent))
    k.authority.clock = lambda: rig.now[0]
    k.start()
    rig.person = new_session(k)
    for name in ("K", "K1", "L"):
        k.call(rig.person, "secret_set", {"name": name, "value": SECRET})
    return rig


def run(root: Path, body: Callable[[Rig], Awaitable[None]]) -> None:
    """Boot a kernel on ``root``, run ``body`` against it, close it."""

    async def main() -> None:
        rig = await boot_rig(root)
        try:
            await body(rig)
        finally:
            await rig.k.close(clean=False)

    asyncio.run(main())


# -- 1. deny by default ---------------------------------------------------------------------------------


def test_a_process_holding_nothing_is_refused_every_syscall_and_each_refusal_is_audited(
    tmp_path: Path,
) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        parent = rig.spawn(rig.person)  # the policy's capabilities
        bare = rig.spawn(parent, caps=[])
        assert rig.held(bare) == []
        for name in sorted(SYSCALLS):
            before = k.state.ledger.denials
            with pytest.raises(PermissionDenied) as info:
                k.call(bare, name, minimal_args(SYSCALLS[name].schema))
            assert (info.value.code, info.value.category) == ("EACCES", "denied"), name
            assert k.state.ledger.denials == before + 1, f"{name}: one audit.denied per refusal"
        # the audit trail, as the person reads it, names every refused call
        await k.committer.durable(k.head_seq)
        rows = k.call(rig.person, "audit", {"pid": bare.pid, "denied": True}).result
        assert sorted(r["payload"]["call"] for r in rows) == sorted(SYSCALLS)
        assert {r["kind"] for r in rows} == {"audit.denied"}
        assert {r["payload"]["pid"] for r in rows} == {bare.pid}
        # the parent, which holds the policy's capabilities, is not affected
        assert k.call(parent, "getpid", {}).result == parent.pid

    run(tmp_path, body)


# -- 2. attenuation on spawn ----------------------------------------------------------------------------


def test_spawn_attenuates_and_refuses_anything_wider(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self", "spawn"], "depth": 1},
                {"resource": "secret:K", "rights": ["read"], "expires_in": 100, "max_uses": 5, "depth": 1},
            ],
        )
        narrow = rig.spawn(a, caps=[{"resource": "sys:proc", "rights": ["self"]}])
        assert k.call(narrow, "getpid", {}).result == narrow.pid
        rig.expect_refused(narrow, "spawn", {"target": rig.target}, "'spawn' right")
        (only,) = rig.held(narrow)
        assert (only.resource, only.rights, only.parent) == ("sys:proc", ["self"], rig.cap(a, "sys:proc").id)

        src = rig.cap(a, "secret:K")
        wider: list[dict[str, Any]] = [
            {"resource": "sys:proc", "rights": ["self", "admin"]},  # a right it lacks
            {"resource": "*", "rights": ["self"]},  # a wider resource
            {"resource": "sys:*", "rights": ["self"]},
            {"resource": "secret:*", "rights": ["read"]},
            {"resource": "secret:K*", "rights": ["read"]},
            {"resource": "secret:K", "rights": ["read", "write"]},
            {"resource": "secret:K", "rights": ["*"]},
            {"cap": src.id, "rights": ["grant"]},
            {"cap": src.id, "expires_in": 101},  # a later expiry than its source
            {"resource": "secret:K", "rights": ["read"], "expires_in": 1000},
            {"cap": src.id, "max_uses": 6},  # more uses than it has left
            {"cap": src.id, "depth": 2},  # more delegation depth
            {"resource": "sys:proc", "rights": ["self"], "depth": 2},
            {"cap": k.root_cap().id},  # a capability it does not hold
        ]
        for spec in wider:
            procs, next_pid, next_cap = (
                len(k.state.world.procs.procs),
                k.state.ledger.next_pid,
                k.state.ledger.next_cap,
            )
            with pytest.raises(PermissionDenied):
                rig.spawn(a, caps=[{"resource": "sys:proc", "rights": ["self"]}, spec])
            assert len(k.state.world.procs.procs) == procs, spec  # no process was created
            assert (k.state.ledger.next_pid, k.state.ledger.next_cap) == (next_pid, next_cap), spec

        # equal is allowed, and omitted fields keep the source's values (expiry, limits, depth)
        same = rig.spawn(a, caps=[{"cap": src.id}])
        (copy,) = rig.held(same)
        assert (copy.resource, copy.rights, copy.depth, copy.expires_ns) == (
            src.resource,
            src.rights,
            src.depth,
            src.expires_ns,
        )
        assert copy.limits == src.limits and copy.chain == [*src.chain, src.id]
        # uses spent shrink what a child may be given
        for _ in range(2):
            rig.secret(a)
        with pytest.raises(PermissionDenied, match="3 uses left"):
            rig.spawn(a, caps=[{"cap": src.id, "max_uses": 4}])
        rig.spawn(a, caps=[{"cap": src.id, "max_uses": 3, "expires_in": 50, "depth": 0}])

    run(tmp_path, body)


# -- 3. hypothesis: random capability trees never widen -------------------------------------------------

UNIVERSE = ("fs:/a", "fs:/a/b", "fs:/a*", "fs:/ab", "svc:x", "svc:x/y", "sys:proc", "secret:K*", "secret:K1")
RIGHTS = ("read", "write", "grant", "self", "spawn")
TICKS = (0.5, 3.0, 20.0, 200.0)

rights_st = st.lists(st.sampled_from(RIGHTS), min_size=1, max_size=3, unique=True)
# a request by resource (rarely neither resource nor cap: refused, there is nothing to narrow)
by_resource_st = st.fixed_dictionaries(
    {"resource": st.sampled_from(UNIVERSE)},
    optional={
        "rights": rights_st,
        "depth": st.integers(0, 3),
        "expires_in": st.sampled_from((1.0, 5.0, 50.0, 500.0)),
        "max_uses": st.integers(1, 6),
        "cap": st.integers(0, 6) | st.just(40),  # an index into the actor's capabilities (40: not one)
    },
)
spec_st = st.one_of(st.just({}), by_resource_st, by_resource_st, by_resource_st)
# a delegation that names one of the actor's capabilities (past the two fixed ones) and narrows it
named_spec_st = st.fixed_dictionaries(
    {"cap": st.integers(2, 5)},
    optional={
        "rights": st.lists(st.sampled_from(RIGHTS), min_size=1, max_size=2, unique=True),
        "depth": st.integers(0, 2),
        "expires_in": st.sampled_from((1.0, 50.0)),
        "max_uses": st.integers(1, 4),
    },
)
# the roots are mostly delegable (grant), so that delegations often succeed
root_rights_st = st.builds(
    lambda r, g: sorted(set(r) | ({"grant"} if g else set())), rights_st, st.booleans()
)
root_spec_st = st.fixed_dictionaries(
    {"resource": st.sampled_from(UNIVERSE), "rights": root_rights_st},
    optional={
        "depth": st.integers(0, 3),
        "expires_in": st.sampled_from((5.0, 50.0, 500.0)),
        "max_uses": st.integers(1, 6),
    },
)
spawn_st = st.tuples(st.just("spawn"), st.integers(0, 20), st.none() | st.lists(spec_st, max_size=3))
delegate_st = st.tuples(st.just("delegate"), st.integers(0, 20), st.integers(0, 20), spec_st | named_spec_st)
use_st = st.tuples(st.just("use"), st.integers(0, 20))
op_st = st.one_of(  # weighted: derivations most often
    spawn_st,
    spawn_st,
    delegate_st,
    delegate_st,
    delegate_st,
    use_st,
    use_st,
    st.tuples(st.just("tick"), st.sampled_from(TICKS)),
    st.tuples(st.just("revoke"), st.integers(0, 1000)),
)


class Model:
    """The rules, stated independently of ``authz.py``: which capability would authorise or be derived
    from, and whether a derivation is a narrowing. Predictions are compared with the kernel's outcomes."""

    def __init__(self, k: Kernel, now: int) -> None:
        self.k, self.now = k, now
        self.uses = dict(k.state.ledger.cap_uses)

    def live(self, cap: Capability) -> bool:
        revoked = self.k.state.ledger.revoked
        if cap.id in revoked or any(a in revoked for a in cap.chain):
            return False
        if cap.expires_ns is not None and self.now >= cap.expires_ns:
            return False
        return all(self.uses.get(c, 0) < n for c, n in cap.limits)

    def left(self, cap: Capability) -> int | None:
        return min((n - self.uses.get(c, 0) for c, n in cap.limits), default=None)

    def authorise(self, pid: int, resource: str, right: str) -> Capability | None:
        """The capability that authorises the call, with its limits charged; None: refused."""
        for cap in self.k.state.world.caps.held_by(pid):
            if (
                pattern.has_right(cap.rights, right)
                and pattern.covers(cap.resource, resource)
                and self.live(cap)
            ):
                for c, _ in cap.limits:
                    self.uses[c] = self.uses.get(c, 0) + 1
                return cap
        return None

    def source(self, pid: int, spec: dict[str, Any]) -> Capability | None:
        held = self.k.state.world.caps.held_by(pid)
        if "cap" in spec:
            named = next((c for c in held if c.id == spec["cap"]), None)
            return named if named is not None and self.live(named) else None
        if "resource" not in spec:
            return None
        want = pattern.normalise(spec["resource"])
        for cap in held:
            if not pattern.subsumes(cap.resource, want):
                continue
            if "rights" in spec and not pattern.rights_within(spec["rights"], cap.rights):
                continue
            if self.live(cap):
                return cap
        return None

    def narrows(self, source: Capability, spec: dict[str, Any], *, delegation: bool) -> bool:
        resource = pattern.normalise(spec.get("resource", source.resource))
        if not pattern.subsumes(source.resource, resource):
            return False
        if not pattern.rights_within(spec.get("rights", source.rights), source.rights):
            return False
        max_depth = source.depth
        if delegation:
            if not pattern.has_right(source.rights, "grant") or source.depth < 1:
                return False
            max_depth -= 1
        if spec.get("depth", max_depth) > max_depth:
            return False
        if "expires_in" in spec and source.expires_ns is not None:
            if self.now + int(spec["expires_in"] * 1e9) > source.expires_ns:
                return False
        left = self.left(source)
        return not ("max_uses" in spec and left is not None and spec["max_uses"] > left)

    def derivable(self, pid: int, spec: dict[str, Any], *, delegation: bool) -> bool:
        source = self.source(pid, spec)
        return source is not None and self.narrows(source, spec, delegation=delegation)


# concrete resources: whatever a capability covers of these, its parent must cover too
CONCRETE = ("fs:/a", "fs:/a/b", "fs:/a/b/c", "fs:/ab", "fs:/abc/d", "svc:x", "svc:x/y", "svc:xy")
CONCRETE += ("sys:proc", "sys:cap", "secret:K", "secret:K1", "secret:L")


def check_tree(k: Kernel) -> None:
    """Every capability is covered by its parent: never wider, never longer-lived, never deeper."""
    caps = k.state.world.caps.caps
    for cap in caps.values():
        if cap.parent is None:
            assert cap.holder == param.INIT_PID and cap.resource == pattern.ANY
            continue
        parent = caps.get(cap.parent)
        assert parent is not None, cap  # nothing is reaped here
        assert cap.chain == [*parent.chain, parent.id], (cap, parent)
        assert pattern.subsumes(parent.resource, cap.resource), (cap, parent)
        for r in CONCRETE:
            assert not pattern.covers(cap.resource, r) or pattern.covers(parent.resource, r), (r, cap, parent)
        assert pattern.rights_within(cap.rights, parent.rights), (cap, parent)
        if parent.expires_ns is not None:
            assert cap.expires_ns is not None and cap.expires_ns <= parent.expires_ns, (cap, parent)
        if cap.origin == "delegate":
            assert cap.depth < parent.depth and pattern.has_right(parent.rights, "grant"), (cap, parent)
        else:
            assert cap.depth <= parent.depth, (cap, parent)
        for limit in parent.limits:  # uses are charged to every limited ancestor
            assert limit in cap.limits, (cap, parent)
        if cap.max_uses is not None:
            assert [cap.id, cap.max_uses] in cap.limits, cap


def delta(after: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {c: n - before.get(c, 0) for c, n in after.items() if n != before.get(c, 0)}


def concrete(spec: dict[str, Any], held: list[Capability]) -> dict[str, Any]:
    """A drawn spec with its ``cap`` index turned into a capability id (40: one not held)."""
    out = dict(spec)
    if "cap" in out:
        i = out["cap"]
        out["cap"] = held[i % len(held)].id if i < 40 and held else 10_000 + i
    return out


async def play(root: Path, roots: list[dict[str, Any]], ops: list[tuple[Any, ...]]) -> dict[str, int]:
    rig = await boot_rig(root)
    k = rig.k
    outcomes = {"ok": 0, "denied": 0}
    try:
        fixed = [
            {"resource": "sys:proc", "rights": ["self", "spawn"]},
            {"resource": "sys:cap", "rights": ["delegate"]},
        ]
        actors = [rig.spawn(rig.person, caps=fixed + roots)]
        check_tree(k)
        for op in ops:
            model = Model(k, rig.now[0])
            uses_before = dict(k.state.ledger.cap_uses)
            ok: bool
            if op[0] == "tick":
                rig.advance(op[1])
                continue
            if op[0] == "revoke":
                targets = [c for c in k.state.world.caps.caps.values() if c.parent is not None]
                if targets:
                    cap = targets[op[1] % len(targets)]
                    k.call(rig.person, "cap_revoke", {"cap": cap.id})
                    assert cap.id in k.state.ledger.revoked
                continue
            actor = actors[op[1] % len(actors)]
            held = rig.held(actor)
            if op[0] == "use":
                expect = model.authorise(actor.pid, "secret:K1", "read")
                try:
                    assert rig.secret(actor, "K1") == SECRET
                    ok = True
                except PermissionDenied:
                    ok = False
                assert ok == (expect is not None), (op, held)
            elif op[0] == "spawn":
                specs = None if op[2] is None else [concrete(s, held) for s in op[2]]
                expect_ok = model.authorise(actor.pid, "sys:proc", "spawn") is not None
                if specs is not None and expect_ok:
                    expect_ok = all(model.derivable(actor.pid, s, delegation=False) for s in specs)
                before = set(k.state.world.caps.caps)
                try:
                    child = rig.spawn(actor, specs)
                    ok = True
                except PermissionDenied:
                    ok = False
                assert ok == expect_ok, (op, specs, held)
                if ok:
                    actors.append(child)
                    new = [k.state.world.caps.caps[c] for c in set(k.state.world.caps.caps) - before]
                    assert all(c.holder == child.pid and c.origin == "spawn" for c in new)
                    if specs is not None:
                        assert len(new) == len(specs)
            else:  # delegate
                to = actors[op[2] % len(actors)]
                spec = concrete(op[3], held)
                expect_ok = model.authorise(actor.pid, "sys:cap", "delegate") is not None
                expect_ok = expect_ok and model.derivable(actor.pid, spec, delegation=True)
                try:
                    granted = k.call(actor, "cap_delegate", {"to": to.pid, "spec": spec}).result
                    ok = True
                except PermissionDenied:
                    ok = False
                assert ok == expect_ok, (op, spec, held)
                if ok:
                    cap = k.state.world.caps.caps[granted["cap"]]
                    assert (cap.holder, cap.origin, cap.by) == (to.pid, "delegate", actor.pid)
            outcomes["ok" if ok else "denied"] += 1
            # each authorised call charged exactly what the model charged
            assert delta(k.state.ledger.cap_uses, uses_before) == delta(model.uses, uses_before), op
            check_tree(k)
    finally:
        await k.close(clean=False)
    return outcomes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(roots=st.lists(root_spec_st, min_size=1, max_size=4), ops=st.lists(op_st, min_size=2, max_size=16))
def test_random_capability_trees_never_widen(
    tmp_path_factory: pytest.TempPathFactory, roots: list[dict[str, Any]], ops: list[tuple[Any, ...]]
) -> None:
    asyncio.run(play(tmp_path_factory.mktemp("tree"), roots, ops))


# -- 4. delegation and revocation cascade ---------------------------------------------------------------


def test_revocation_cascades_through_delegations(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self", "spawn"]},
                {"resource": "sys:cap", "rights": ["delegate", "revoke", "list"]},
                {"resource": "secret:K", "rights": ["read", "grant"], "depth": 2},
            ],
        )
        b = rig.spawn(
            a,
            caps=[
                {"resource": "sys:proc", "rights": ["self", "spawn"]},
                {"resource": "sys:cap", "rights": ["delegate", "revoke", "list"]},
            ],
        )
        c = rig.spawn(
            b,
            caps=[
                {"resource": "sys:proc", "rights": ["self"]},
                {"resource": "sys:cap", "rights": ["delegate", "revoke"]},
            ],
        )
        d = rig.spawn(rig.person)  # a bystander with the policy's capabilities (sys:cap revoke among them)
        x = rig.cap(a, "secret:K")
        assert (x.rights, x.depth) == (["grant", "read"], 2)
        rig.expect_refused(b, "secret_get", {"name": "K"}, "'read' right on secret:K")

        def delegate_down() -> tuple[int, int]:
            y = k.call(
                a, "cap_delegate", {"to": b.pid, "spec": {"cap": x.id, "rights": ["read", "grant"]}}
            ).result
            assert k.state.world.caps.caps[y["cap"]].depth == 1  # each delegation spends one
            with pytest.raises(PermissionDenied, match="depth"):  # more depth than it has
                k.call(
                    b,
                    "cap_delegate",
                    {"to": c.pid, "spec": {"cap": y["cap"], "rights": ["read"], "depth": 1}},
                )
            z = k.call(b, "cap_delegate", {"to": c.pid, "spec": {"cap": y["cap"], "rights": ["read"]}}).result
            assert k.state.world.caps.caps[z["cap"]].chain == [*x.chain, x.id, y["cap"]]
            for who in (a, b, c):
                for _ in range(3):  # the second and third are served by the decision cache
                    assert rig.secret(who) == SECRET
            return y["cap"], z["cap"]

        y, z = delegate_down()
        # C holds Z without the grant right (and with depth 0): it can delegate nothing further
        rig.expect_refused(c, "cap_delegate", {"to": d.pid, "spec": {"cap": z}}, "'grant'")

        # who may not revoke: a bystander, a holder of a descendant (B holds Y under X, C holds Z under Y)
        for who, cap in ((d, x.id), (b, x.id), (c, x.id), (c, y), (d, z)):
            rig.expect_refused(who, "cap_revoke", {"cap": cap}, "neither holds")
        assert k.state.ledger.revoked == {}

        # A revokes only what it delegated to B: B and C lose it, A keeps its own
        assert k.call(a, "cap_revoke", {"cap": y, "reason": "done"}).result == {"cap": y, "already": False}
        assert rig.secret(a) == SECRET
        rig.expect_refused(b, "secret_get", {"name": "K"}, "revoked")
        rig.expect_refused(c, "secret_get", {"name": "K"}, "revoked")
        assert y in k.state.ledger.revoked and z not in k.state.ledger.revoked  # Z dies with its ancestor

        # the holder itself may revoke what it holds
        y2, z2 = delegate_down()
        assert k.call(c, "cap_revoke", {"cap": z2}).result["already"] is False
        rig.expect_refused(c, "secret_get", {"name": "K"}, "revoked")
        assert rig.secret(b) == SECRET
        z3 = k.call(b, "cap_delegate", {"to": c.pid, "spec": {"cap": y2, "rights": ["read"]}}).result["cap"]
        assert rig.secret(c) == SECRET

        # the person revokes A's source capability: everything derived from it dies before the next call
        assert k.call(rig.person, "cap_revoke", {"cap": x.id}).result == {"cap": x.id, "already": False}
        assert x.id in k.state.ledger.revoked
        for who in (a, b, c):
            err = rig.expect_refused(who, "secret_get", {"name": "K"}, "revoked")
            assert err.code == "EACCES"
        assert "ancestor" in str(rig.expect_refused(c, "secret_get", {"name": "K"}))
        assert k.call(rig.person, "cap_revoke", {"cap": x.id}).result == {"cap": x.id, "already": True}
        # nothing can be derived from a revoked capability
        rig.expect_refused(a, "cap_delegate", {"to": b.pid, "spec": {"cap": x.id}}, "revoked")
        rig.expect_refused(b, "spawn", {"target": rig.target, "caps": [{"cap": y2}]}, "revoked")
        # the other capabilities still work, and revocation is visible in the views
        assert k.call(a, "getpid", {}).result == a.pid
        rows = {r["cap"]: r for r in k.call(a, "cap_list", {}).result}
        assert rows[x.id]["status"] == "was revoked"
        view = {r["cap"]: r for r in k.call(rig.person, "caps", {"pid": c.pid}).result}
        assert [link["revoked"] for link in view[z3]["chain"]] == [False, True, False]  # root, X, Y2
        assert view[z3]["status"].startswith("was revoked with its ancestor")
        # the root is never revoked; an unknown capability is not found
        root = k.root_cap().id
        with pytest.raises(Conflict):
            k.call(rig.person, "cap_revoke", {"cap": root})
        with pytest.raises(NotFound):
            k.call(rig.person, "cap_revoke", {"cap": 999_999})

    run(tmp_path, body)


# -- 5. transfer ------------------------------------------------------------------------------------------


def test_transfer_moves_a_capability_only_with_the_grant_right(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self"]},
                {"resource": "sys:cap", "rights": ["delegate", "list"]},
                {"resource": "secret:K", "rights": ["read", "grant"], "depth": 0},
                {"resource": "secret:L", "rights": ["read"]},
            ],
        )
        b = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"]}])
        xk, xl = rig.cap(a, "secret:K"), rig.cap(a, "secret:L")
        for _ in range(3):
            assert rig.secret(a) == SECRET
        rig.expect_refused(b, "secret_get", {"name": "K"})

        assert k.call(a, "cap_transfer", {"cap": xk.id, "to": b.pid}).result == {"cap": xk.id}
        rig.expect_refused(a, "secret_get", {"name": "K"}, "'read' right on secret:K")
        assert rig.secret(b) == SECRET
        moved = k.state.world.caps.get(xk.id)
        assert moved is not None and moved.holder == b.pid and moved.resource == "secret:K"
        assert xk.id not in [c.id for c in rig.held(a)]
        # A no longer holds it: it can neither transfer it again nor delegate from it
        rig.expect_refused(a, "cap_transfer", {"cap": xk.id, "to": b.pid}, "holds no capability")
        # without the grant right a capability stays put
        rig.expect_refused(a, "cap_transfer", {"cap": xl.id, "to": b.pid}, "'grant'")
        assert rig.secret(a, "L") == SECRET and k.state.world.caps.caps[xl.id].holder == a.pid
        # init keeps the root: the person cannot give it away, an agent cannot name it
        root = k.root_cap().id
        with pytest.raises(Conflict) as info:
            k.call(rig.person, "cap_transfer", {"cap": root, "to": a.pid})
        assert info.value.code == "EPERM"
        assert k.root_cap().holder == param.INIT_PID
        rig.expect_refused(a, "cap_transfer", {"cap": root, "to": b.pid}, "holds no capability")
        # nor can anything be transferred to init
        rig.expect_refused(a, "cap_transfer", {"cap": xl.id, "to": param.INIT_PID})

    run(tmp_path, body)


# -- 6. expiry with a controllable clock ---------------------------------------------------------------


def test_expiry_with_a_fake_clock_stops_a_capability_and_everything_derived(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self", "spawn"]},
                {"resource": "secret:K", "rights": ["read"], "expires_in": 10},
            ],
        )
        x = rig.cap(a, "secret:K")
        assert x.expires_ns == rig.now[0] + 10 * 10**9
        child = rig.spawn(
            a,
            caps=[{"resource": "sys:proc", "rights": ["self"]}, {"resource": "secret:K", "rights": ["read"]}],
        )
        inherited = rig.cap(child, "secret:K")
        assert inherited.expires_ns == x.expires_ns  # no expiry of its own: its source's (effective expiry)
        for who in (a, child):
            for _ in range(3):
                assert rig.secret(who) == SECRET  # cached after the first
        rig.advance(9)
        assert rig.secret(a) == SECRET and rig.secret(child) == SECRET
        assert k.authority.expire_due() == 0 and k.state.ledger.expired == {}

        rig.advance(2)  # 11 s after the grant
        assert k.authority.expire_due() == 2
        assert set(k.state.ledger.expired) == {x.id, inherited.id}
        assert k.authority.expire_due() == 0  # recorded once
        for who in (a, child):
            rig.expect_refused(who, "secret_get", {"name": "K"}, "expired")
            assert k.call(who, "getpid", {}).result == who.pid  # what has no expiry still works
        # nothing is derived from an expired capability
        rig.expect_refused(a, "spawn", {"target": rig.target, "caps": [{"cap": x.id}]}, "expired")
        inherit_all = rig.spawn(a)  # inheriting takes only the live ones
        assert [c.resource for c in rig.held(inherit_all)] == ["sys:proc"]
        assert k.authority.next_expiry_ns() is None

    run(tmp_path, body)


def test_an_expiry_noticed_by_a_check_is_recorded_once(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(rig.person, caps=[{"resource": "secret:K", "rights": ["read"], "expires_in": 1}])
        x = rig.cap(a, "secret:K")
        assert rig.secret(a) == SECRET
        rig.advance(1)  # exactly at the expiry: no longer valid
        rig.expect_refused(a, "secret_get", {"name": "K"}, "expired")
        rig.expect_refused(a, "secret_get", {"name": "K"}, "expired")
        assert list(k.state.ledger.expired) == [x.id]
        assert k.authority.expire_due() == 0

    run(tmp_path, body)


# -- 7. the decision cache -----------------------------------------------------------------------------


def test_the_decision_cache_never_serves_a_revoked_or_transferred_capability(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        auth = k.authority
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self"]},
                {"resource": "sys:cap", "rights": ["delegate"]},
                {"resource": "secret:K", "rights": ["read", "grant"], "depth": 1},
            ],
        )
        b = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"]}])
        hits = auth.hits
        for _ in range(50):
            assert k.call(a, "getpid", {}).result == a.pid
        assert auth.hits - hits == 49  # one miss, then hits
        k.call(rig.person, "cap_revoke", {"cap": rig.cap(a, "sys:proc").id})
        rig.expect_refused(a, "getpid", {}, "revoked")

        # a capability delegated to B, cached there; its source is revoked elsewhere
        y = k.call(
            a, "cap_delegate", {"to": b.pid, "spec": {"resource": "secret:K", "rights": ["read"]}}
        ).result
        for _ in range(20):
            assert rig.secret(b) == SECRET
        k.call(rig.person, "cap_revoke", {"cap": rig.cap(a, "secret:K").id})
        rig.expect_refused(b, "secret_get", {"name": "K"}, "revoked")
        assert y["cap"] not in k.state.ledger.revoked  # revoked through its chain

        # transferred away: the sender's cached decision is gone with it
        k.call(
            rig.person,
            "cap_delegate",
            {"to": a.pid, "spec": {"resource": "secret:L", "rights": ["read", "grant"]}},
        )
        hits = auth.hits
        for _ in range(20):
            assert rig.secret(a, "L") == SECRET
        assert auth.hits - hits == 19
        k.call(a, "cap_transfer", {"cap": rig.cap(a, "secret:L").id, "to": b.pid})
        rig.expect_refused(a, "secret_get", {"name": "L"})
        assert rig.secret(b, "L") == SECRET

    run(tmp_path, body)


def test_decision_cache_hit_rate_while_other_processes_lose_capabilities(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        auth = k.authority
        workers = [
            rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"]}]) for _ in range(4)
        ]
        victim = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"]}])
        rates: list[tuple[int | None, float]] = []
        for revoke_every in (None, 40, 8):
            hits = misses = 0
            for i in range(200):
                w = workers[i % len(workers)]
                h, m = auth.hits, auth.misses
                assert k.call(w, "getpid", {}).result == w.pid  # never affected by others' revocations
                hits, misses = hits + auth.hits - h, misses + auth.misses - m
                if revoke_every and i % revoke_every == revoke_every - 1:
                    spec = {"resource": "secret:K", "rights": ["read"]}
                    cap = k.call(rig.person, "cap_delegate", {"to": victim.pid, "spec": spec}).result["cap"]
                    k.call(rig.person, "cap_revoke", {"cap": cap})
            assert hits + misses == 200
            rates.append((revoke_every, hits / 200))
        print("decision cache hit rate (one revocation elsewhere every N calls, hit rate):", rates)
        assert rates[0][1] >= 0.98  # a miss per worker, then hits
        assert all(rate > 0 for _, rate in rates)

    run(tmp_path, body)


# -- 8. use limits ---------------------------------------------------------------------------------------


def test_use_limits_count_exact_calls_and_charge_ancestors(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self", "spawn"]},
                {"resource": "secret:K", "rights": ["read"], "max_uses": 5},
            ],
        )
        p = rig.cap(a, "secret:K")
        proc = [{"resource": "sys:proc", "rights": ["self"]}]
        with pytest.raises(PermissionDenied, match="5 uses left"):
            rig.spawn(a, caps=[*proc, {"cap": p.id, "max_uses": 6}])
        c1 = rig.spawn(a, caps=[*proc, {"cap": p.id, "max_uses": 3}])  # its own limit, under P's
        c2 = rig.spawn(a, caps=[*proc, {"cap": p.id}])  # no limit of its own: P's
        own1, own2 = rig.cap(c1, "secret:K"), rig.cap(c2, "secret:K")
        assert own1.limits == [[p.id, 5], [own1.id, 3]] and own2.limits == [[p.id, 5]]
        assert k.state.ledger.cap_uses == {}

        hits = k.authority.hits
        for _ in range(3):
            assert rig.secret(c1) == SECRET
        rig.expect_refused(c1, "secret_get", {"name": "K"}, "used up")
        assert k.state.ledger.cap_uses == {p.id: 3, own1.id: 3}  # each use charged to every limited ancestor
        assert k.authority.hits == hits  # a limited capability is never served from the cache
        rows = {r["cap"]: r for r in k.call(rig.person, "caps", {"pid": a.pid}).result}
        assert rows[p.id]["uses_left"] == 2

        assert rig.secret(c2) == SECRET
        assert rig.secret(a) == SECRET  # P's fifth and last use
        rig.expect_refused(a, "secret_get", {"name": "K"}, "used up")
        err = rig.expect_refused(
            c2, "secret_get", {"name": "K"}, f"capability {p.id}", "used up"
        )  # its ancestor
        assert err.code == "EACCES"
        assert k.state.ledger.cap_uses == {p.id: 5, own1.id: 3}
        # nothing is derived from a used-up capability
        rig.expect_refused(a, "spawn", {"target": rig.target, "caps": [{"cap": p.id}]}, "used up")

    run(tmp_path, body)


def test_a_limited_capability_authorises_exactly_its_uses(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"], "max_uses": 3}])
        cap = rig.cap(a, "sys:proc")
        assert [k.call(a, "getpid", {}).result for _ in range(3)] == [a.pid] * 3
        rig.expect_refused(a, "getpid", {}, "used up")
        rig.expect_refused(a, "getppid", {}, "used up")
        assert k.state.ledger.cap_uses == {cap.id: 3}

    run(tmp_path, body)


# -- 9. opaque processes -------------------------------------------------------------------------------


def test_an_opaque_process_uses_its_capabilities_but_cannot_list_them(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        clear = rig.spawn(rig.person)
        assert {r["resource"] for r in k.call(clear, "cap_list", {}).result} >= {"sys:proc", "sys:cap"}
        dark = rig.spawn(rig.person, opaque=True)
        assert rig.held(dark)  # it holds the policy's capabilities
        rig.expect_refused(dark, "cap_list", {}, "opaque")
        assert k.call(dark, "getpid", {}).result == dark.pid
        # its children are opaque too, whatever they ask
        for child in (rig.spawn(dark), rig.spawn(dark, opaque=False)):
            assert k.state.world.procs.procs[child.pid].caps_opaque
            rig.expect_refused(child, "cap_list", {}, "opaque")
            assert k.call(child, "getpid", {}).result == child.pid
        # the person can still see what it holds
        assert k.call(rig.person, "caps", {"pid": dark.pid}).result

    run(tmp_path, body)


# -- 10. the ledger survives a restart --------------------------------------------------------------------


def test_revocations_and_uses_survive_a_restart_and_a_rebuild_equals_the_live_state(tmp_path: Path) -> None:
    async def body() -> None:
        rig = await boot_rig(tmp_path)
        k = rig.k
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self"]},
                {"resource": "sys:cap", "rights": ["delegate", "revoke"]},
                {"resource": "secret:K", "rights": ["read", "grant"], "depth": 1},
                {"resource": "secret:L", "rights": ["read"], "max_uses": 4},
            ],
        )
        b = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"]}])
        y = k.call(
            a, "cap_delegate", {"to": b.pid, "spec": {"resource": "secret:K", "rights": ["read"]}}
        ).result["cap"]
        assert rig.secret(b) == SECRET
        x = rig.cap(a, "secret:K").id
        k.call(rig.person, "cap_revoke", {"cap": x, "reason": "test"})
        rig.expect_refused(b, "secret_get", {"name": "K"}, "revoked")
        assert rig.secret(a, "L") == SECRET and rig.secret(a, "L") == SECRET
        await k.close(clean=True)
        live_hash, live_seq = state_hash(k.state), k.state.seq
        revoked, uses = dict(k.state.ledger.revoked), dict(k.state.ledger.cap_uses)
        assert x in revoked and uses

        k2 = Kernel(Home(tmp_path / "home"))
        k2.boot()
        k2.start()
        try:
            assert k2.state.ledger.revoked == revoked and k2.state.ledger.cap_uses == uses
            assert state_hash(rebuild_state(k2.log, until=live_seq, conn=k2.reader)) == live_hash
            with pytest.raises(PermissionDenied, match="revoked"):
                k2.call(b, "secret_get", {"name": "K"})
            with pytest.raises(PermissionDenied, match="revoked"):
                k2.call(a, "secret_get", {"name": "K"})
            assert k2.call(a, "getpid", {}).result == a.pid
            assert k2.call(a, "secret_get", {"name": "L"}).result == SECRET
            assert k2.call(a, "secret_get", {"name": "L"}).result == SECRET
            with pytest.raises(PermissionDenied, match="used up"):  # 4 uses across both boots
                k2.call(a, "secret_get", {"name": "L"})
            assert k2.state.world.caps.get(y) is not None and y not in k2.state.ledger.revoked
            await k2.committer.durable(k2.head_seq)
            assert state_hash(rebuild_state(k2.log, conn=k2.reader)) == state_hash(k2.state)
        finally:
            await k2.close(clean=False)

    asyncio.run(body())


# -- bugs these tests found, fixed: relative patterns, departed ancestors, reaped caches ----------------


def _signal_setup(rig: Rig) -> tuple[Caller, Caller, Caller]:
    """A may signal its own descendants (proc:children, delegable); B, a sibling, may signal nothing;
    V is B's child."""
    a = rig.spawn(
        rig.person,
        caps=[
            {"resource": "sys:proc", "rights": ["self", "spawn"]},
            {"resource": "sys:cap", "rights": ["delegate"]},
            {"resource": "proc:children", "rights": ["signal", "grant"], "depth": 1},
        ],
    )
    b = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self", "spawn"]}])
    v = rig.spawn(b, caps=[])
    own = rig.spawn(a, caps=[])
    assert rig.k.call(a, "kill", {"pid": own.pid, "sig": "USR1"}).result is None
    for who in (a, b):  # V is in neither's reach
        rig.expect_refused(who, "kill", {"pid": v.pid, "sig": "USR1"}, "'signal' right on proc:")
    return a, b, v


def test_delegating_proc_children_to_a_non_descendant_does_not_widen(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        a, b, v = _signal_setup(rig)
        try:
            rig.k.call(
                a, "cap_delegate", {"to": b.pid, "spec": {"resource": "proc:children", "rights": ["signal"]}}
            )
        except PermissionDenied:
            return  # refused: nothing widened
        # delegated: it must not reach V, which A could not signal
        rig.expect_refused(b, "kill", {"pid": v.pid, "sig": "USR1"})

    run(tmp_path, body)


def test_transferring_proc_children_to_a_non_descendant_does_not_widen(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        a, b, v = _signal_setup(rig)
        cap = rig.cap(a, "proc:children").id
        try:
            rig.k.call(a, "cap_transfer", {"cap": cap, "to": b.pid})
        except PermissionDenied:
            return
        rig.expect_refused(b, "kill", {"pid": v.pid, "sig": "USR1"})

    run(tmp_path, body)


def test_an_ancestor_can_be_revoked_after_its_holder_is_reaped(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        a = rig.spawn(
            rig.person,
            caps=[
                {"resource": "sys:proc", "rights": ["self"]},
                {"resource": "sys:cap", "rights": ["delegate"]},
                {"resource": "secret:K", "rights": ["read", "grant"], "depth": 1},
            ],
        )
        b = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"]}])
        x = rig.cap(a, "secret:K").id
        y = k.call(a, "cap_delegate", {"to": b.pid, "spec": {"cap": x, "rights": ["read"]}}).result["cap"]
        k.call(a, "exit", {})
        assert k.call(rig.person, "wait", {"pid": a.pid}).result["pid"] == a.pid  # reaped
        assert k.state.world.caps.get(x) is None and k.state.world.caps.caps[y].chain[-1] == x
        assert rig.secret(b) == SECRET
        k.call(rig.person, "cap_revoke", {"cap": x})  # today: NotFound
        assert x in k.state.ledger.revoked
        rig.expect_refused(b, "secret_get", {"name": "K"}, "revoked")

    run(tmp_path, body)


def test_the_decision_cache_of_a_reaped_process_is_dropped(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        gone = []
        for _ in range(20):
            a = rig.spawn(rig.person, caps=[{"resource": "sys:proc", "rights": ["self"]}])
            k.call(a, "getpid", {})
            k.call(a, "exit", {})
            k.call(rig.person, "wait", {"pid": a.pid})
            assert (
                k.state.world.procs.procs[a.pid].state == "dead" or not k.state.world.procs.procs[a.pid].alive
            )
            gone.append(a.pid)
        assert not set(gone) & set(k.authority._caches), "caches of reaped processes are kept"

    run(tmp_path, body)


# -- the confused deputy: a call that names its capability ---------------------------------------------


def test_a_deputy_naming_the_requesters_capability_cannot_use_its_own_wider_ones(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k, person = rig.k, rig.person
        cap_rights = {"resource": "sys:cap", "rights": ["delegate", "revoke", "list"]}
        # the service reads every secret on its own account; the requester only K, and may lend it
        service = rig.spawn(person, [{"resource": "secret:*", "rights": ["read"]}, cap_rights])
        requester = rig.spawn(
            person, [{"resource": "secret:K", "rights": ["read", "grant"], "depth": 1}, cap_rights]
        )
        lent = k.call(
            requester,
            "cap_delegate",
            {
                "to": service.pid,
                "spec": {"resource": "secret:K", "rights": ["read"], "expires_in": 60, "max_uses": 2},
            },
        ).result["cap"]
        acting = Caller(pid=service.pid, kind="agent", use_cap=lent)
        assert k.call(acting, "secret_get", {"name": "K"}).result == SECRET
        # asked (by a confused or malicious requester) for what only the service may read: refused,
        # though the service's own capability covers it — the call named the requester's
        rig.expect_refused(
            acting, "secret_get", {"name": "L"}, f"capability {lent}", "does not cover secret:L"
        )
        assert rig.secret(service, "L") == SECRET  # on its own account it still may
        assert k.call(acting, "secret_get", {"name": "K"}).result == SECRET
        rig.expect_refused(acting, "secret_get", {"name": "K"}, "used up")  # the loan allowed two reads
        # a handle the caller does not hold designates nothing
        own = rig.cap(requester, "secret:K").id
        rig.expect_refused(
            Caller(pid=service.pid, kind="agent", use_cap=own), "secret_get", {"name": "K"}, "holds no"
        )
        # the requester revokes the loan: the deputy is cut off at once
        second = k.call(
            requester,
            "cap_delegate",
            {"to": service.pid, "spec": {"resource": "secret:K", "rights": ["read"]}},
        ).result["cap"]
        acting2 = Caller(pid=service.pid, kind="agent", use_cap=second)
        assert k.call(acting2, "secret_get", {"name": "K"}).result == SECRET
        k.call(requester, "cap_revoke", {"cap": second})
        rig.expect_refused(acting2, "secret_get", {"name": "K"}, "revoked")

    run(tmp_path, body)


def test_a_request_made_again_after_a_crash_gets_the_answer_given_meanwhile(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        k = rig.k
        intent = ev.SyscallBlocked(pid=0, epoch=0, task=0, n=0, call="cap_request", deadline_ns=None)
        for answer in ("approve", "deny"):
            agent = rig.spawn(rig.person)
            args = {"resource": "secret:K", "rights": ["read"], "reason": answer, "timeout": 60}
            blocked = k.call(agent, "cap_request", args)
            assert isinstance(blocked, Block) and blocked.poll is not None and blocked.poll() is None
            request = max(a["id"] for a in k.call(rig.person, "approvals", {}).result)
            k.call(rig.person, answer, {"id": request})
            # the kernel died before the agent saw the answer: its resume makes the call again, with
            # the intent journaled when it blocked; it gets that answer, and files no new request
            resumed = Caller(
                pid=agent.pid, kind="agent", intent=msgspec.structs.replace(intent, pid=agent.pid)
            )
            if answer == "approve":
                done = k.call(resumed, "cap_request", args)
                assert isinstance(done, Done) and done.result["outcome"] == "held"
                assert done.result["cap"] == rig.cap(agent, "secret:K").id
            else:
                again = k.call(resumed, "cap_request", args)
                assert isinstance(again, Block) and again.poll is not None
                with pytest.raises(PermissionDenied, match="denied"):
                    again.poll()
            assert k.call(rig.person, "approvals", {}).result == []  # nothing new waits for a person

    run(tmp_path, body)
