"""Projected state: apply is pure and deterministic, snapshots are faithful caches, the ledger is monotone,
events are typed and versioned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.kernel.boot import load_state, rebuild_state
from agentos.sdk.client import Client
from agentos.state import events as ev
from agentos.state import payload
from agentos.state.proc import Process, ProcessTable
from agentos.state.snapshot import from_pieces, to_pieces
from agentos.state.world import Ledger, State, World, apply, state_hash
from agentos.store.log import EventLog
from agentos.testing.kernelproc import KernelProcess


def run_workload(c: Client, n: int = 3) -> list[int]:
    """The family and counter examples, run to completion; returns their pids."""
    family = c.call("spawn", target="agentos.examples.family", argv=[str(n)])
    counter = c.call("spawn", target="agentos.examples.counter", argv=[str(n), "0.01"])
    for pid in (family, counter):
        st_ = c.call("wait", pid=pid, timeout=20)
        assert st_["status"] == 0, st_
    return [family, counter]


def open_log(home: Path) -> EventLog:
    return EventLog(home / "log.db")


def rebuilt_hash(home: Path, until: int) -> str:
    log = open_log(home)
    try:
        state = rebuild_state(log, until=until)
        assert state.seq == until
        return state_hash(state)
    finally:
        log.close()


# -- apply is deterministic and pure ------------------------------------------------------------------


def test_rebuild_from_the_log_alone_equals_the_live_state(kernel: KernelProcess) -> None:
    with kernel.client() as c:
        run_workload(c)
        live = c.call("state_hash")
        assert rebuilt_hash(kernel.home, live["seq"]) == live["hash"]

        run_workload(c, 2)  # the kernel keeps running; do it again further on
        later = c.call("state_hash")
        assert later["seq"] > live["seq"] and later["hash"] != live["hash"]
        assert rebuilt_hash(kernel.home, later["seq"]) == later["hash"]

    log = open_log(kernel.home)
    try:
        kinds = set(log.kind_counts())
        assert {"proc.spawned", "proc.exited", "sys.done", "sys.blocked", "console.write"} <= kinds
        assert kinds <= set(ev.KINDS)  # every stored event is of a registered, typed kind
    finally:
        log.close()


def test_state_hash_does_not_depend_on_dict_insertion_order() -> None:
    def proc(pid: int, signals: dict[str, int]) -> Process:
        return Process(pid=pid, ppid=1, name=f"p{pid}", kind="agent", signals=signals)

    def make(order: list[int], cpu_order: list[int], sig_order: list[str]) -> State:
        procs = {pid: proc(pid, {s: len(s) for s in sig_order}) for pid in order}
        ledger = Ledger(next_pid=9, cpu_ns={pid: pid * 10 for pid in cpu_order}, events=3)
        return State(seq=3, world=World(procs=ProcessTable(procs)), ledger=ledger)

    a = make([1, 5, 3, 8], [3, 5], ["TERM", "CHLD"])
    b = make([8, 3, 1, 5], [5, 3], ["CHLD", "TERM"])
    assert list(a.world.procs.procs) != list(b.world.procs.procs)
    assert state_hash(a) == state_hash(b)
    c = make([8, 3, 1, 5], [5, 3], ["CHLD", "TERM"])
    c.world.procs.procs[3].signals["CHLD"] += 1  # any real difference shows
    assert state_hash(c) != state_hash(a)


def test_snapshot_round_trip_preserves_the_hash(kernel: KernelProcess) -> None:
    with kernel.client() as c:
        run_workload(c)
        c.call("state_hash")
    log = open_log(kernel.home)
    try:
        state = rebuild_state(log)
    finally:
        log.close()
    assert state.ledger.cpu_ns and len(state.world.procs.procs) > 5  # a state with some substance
    manifest, pieces = to_pieces(state)
    restored = from_pieces(manifest, pieces.get)
    assert state_hash(restored) == state_hash(state)
    assert restored == state
    with pytest.raises(KeyError):
        from_pieces(manifest, lambda h: None)


def test_boot_from_snapshot_plus_tail_equals_rebuild_from_zero(kernel: KernelProcess) -> None:
    with kernel.client() as c:
        run_workload(c)
    kernel.shutdown()  # clean: writes a snapshot at its last event

    log = open_log(kernel.home)
    try:
        shutdown_seq = max(r.seq for r in log.read(kinds=["kernel.shutdown"]))
        state, snap_seq = load_state(log)
        assert snap_seq >= shutdown_seq  # the clean shutdown wrote a snapshot, and boot uses it
        assert state.seq == log.head()[0]
        assert state_hash(state) == state_hash(rebuild_state(log))
    finally:
        log.close()

    kernel.boot()  # boots from that snapshot plus the (empty) tail
    with kernel.client() as c:
        run_workload(c, 2)
        live = c.call("state_hash")
    assert live["seq"] > snap_seq
    assert rebuilt_hash(kernel.home, live["seq"]) == live["hash"]
    kernel.kill9()  # no new snapshot: the next load is snapshot + a real tail

    log = open_log(kernel.home)
    try:
        state, from_seq = load_state(log)
        assert from_seq == snap_seq < log.head()[0]
        assert state.seq == log.head()[0]
        assert state_hash(state) == state_hash(rebuild_state(log))
    finally:
        log.close()


def test_pids_are_never_reused_across_reboots_and_kill_9(kernel: KernelProcess) -> None:
    acknowledged: list[int] = []
    for round_ in range(3):
        with kernel.client() as c:
            acknowledged.append(c.pid)  # sessions are processes too
            for _ in range(2):
                acknowledged.append(c.call("spawn", target="agentos.examples.hello"))
            acknowledged.append(c.call("spawn", target="agentos.examples.sleeper", argv=["30"]))
        if round_ == 1:
            kernel.shutdown()
        else:
            kernel.kill9()  # the sleeper is alive, the hello agents may be mid-call
        kernel.boot()
    with kernel.client() as c:
        acknowledged.append(c.pid)
    kernel.kill9()

    assert len(set(acknowledged)) == len(acknowledged), acknowledged
    log = open_log(kernel.home)
    try:
        spawned: list[int] = []
        state = State()
        last_next_pid = state.ledger.next_pid
        for r in log.read():
            payload = ev.decode(r.kind, r.version, r.payload)
            apply(state, r.seq, r.ts, payload)
            assert state.ledger.next_pid >= last_next_pid, f"next_pid went backwards at seq {r.seq}"
            last_next_pid = state.ledger.next_pid
            if isinstance(payload, ev.ProcSpawned):
                assert payload.pid < state.ledger.next_pid
                spawned.append(payload.pid)
    finally:
        log.close()
    assert spawned == sorted(set(spawned))  # strictly increasing: never reused, not even by init
    assert set(acknowledged) <= set(spawned)  # every pid a client was told about is durable
    assert state.ledger.boots == 4


# -- typed, versioned events ------------------------------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    if annotation is Any:
        return JSON
    if annotation == dict[str, Any] | None:
        return st.none() | st.dictionaries(st.text(max_size=8), JSON, max_size=4)
    if annotation is int:
        return st.integers(-(2**63), 2**63 - 1)
    if annotation == int | None:
        return st.none() | st.integers(-(2**63), 2**63 - 1)
    finite = st.floats(allow_nan=False, allow_infinity=False)  # the producers validate: JSON has no inf
    if annotation is float:
        return finite
    if annotation == float | None:
        return st.none() | finite
    if annotation == dict[str, float]:
        return st.dictionaries(st.text(max_size=8), finite, max_size=4)
    return st.from_type(annotation)


def payload_strategy(cls: type[ev.Payload]) -> st.SearchStrategy[ev.Payload]:
    hints = msgspec.structs.fields(cls)
    return st.fixed_dictionaries(
        {f.encode_name: strategy_for(f.type) for f in hints if f.required},
        optional={f.encode_name: strategy_for(f.type) for f in hints if not f.required},
    ).map(lambda kw: cls(**kw))


@pytest.mark.parametrize("kind", sorted(ev.KINDS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_event_kind_round_trips(kind: str, data: st.DataObject) -> None:
    cls = ev.KINDS[kind]
    assert cls.KIND == kind and cls.VERSION >= 1
    payload = data.draw(payload_strategy(cls))
    text = ev.encode(payload)
    assert msgspec.json.decode(text) is not None  # stored as plain JSON text
    assert ev.decode(kind, cls.VERSION, text) == payload
    assert ev.encode(ev.decode(kind, cls.VERSION, text)) == text  # canonical: re-encoding is stable


@pytest.fixture
def widget_kind() -> Iterator[type[ev.Payload]]:
    """A test-only kind at version 3 with upcasters from versions 1 and 2."""

    class Widget(ev.Payload):
        pid: int
        label: str
        size: int

    ev.event("test.widget", version=3)(Widget)
    # v1 had {"pid", "name"}; v2 renamed name -> label; v3 added size
    ev.UPCASTERS[("test.widget", 1)] = lambda raw: {"pid": raw["pid"], "label": raw["name"]}
    ev.UPCASTERS[("test.widget", 2)] = lambda raw: {**raw, "size": len(raw["label"])}
    try:
        yield Widget
    finally:
        del ev.KINDS["test.widget"]
        del ev.UPCASTERS[("test.widget", 1)], ev.UPCASTERS[("test.widget", 2)]
        payload._decoders.pop("test.widget", None)


def test_upcasters_for_old_versions_are_applied_on_read(widget_kind: type[ev.Payload], home: Path) -> None:
    home.mkdir(parents=True)
    log = EventLog(home / "log.db")
    try:
        from agentos.store.events import Sequencer

        seqr = Sequencer(1, log.head()[1])
        old = [
            (1, msgspec.json.encode({"pid": 7, "name": "sprocket"})),
            (2, msgspec.json.encode({"pid": 8, "label": "cog"})),
            (3, ev.encode(widget_kind(pid=9, label="gear", size=40))),  # type: ignore[call-arg]
        ]
        log.append(
            [
                seqr.stamp(
                    branch=1,
                    kind="test.widget",
                    version=v,
                    pid=0,
                    syscall=None,
                    correlation=None,
                    ts=1,
                    payload=text,
                )
                for v, text in old
            ]
        )
        read = [ev.decode(r.kind, r.version, r.payload) for r in log.read()]
        # the log is never rewritten: the old texts are still there, as written
        assert [r.payload for r in log.read()] == [text for _, text in old]
        assert log.verify_chain()[0]
    finally:
        log.close()
    assert read == [
        widget_kind(pid=7, label="sprocket", size=8),  # type: ignore[call-arg]
        widget_kind(pid=8, label="cog", size=3),  # type: ignore[call-arg]
        widget_kind(pid=9, label="gear", size=40),  # type: ignore[call-arg]
    ]
    with pytest.raises(KeyError):
        ev.decode("test.no-such-kind", 1, b"{}")
