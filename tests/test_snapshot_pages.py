"""Paged structural snapshots (``state/snapshot.py``) and the fast past-state path (``kernel/past.py``).

What a user relies on: a snapshot taken of a big state stores only the pages that changed since the
last one, a past state rebuilt from one equals the log prefix folded from scratch, and a snapshot
written in the older one-piece-per-item layout still loads.
"""

from __future__ import annotations

import gc
import hashlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.kernel.boot import rebuild_state
from agentos.kernel.past import paused_gc
from agentos.state import events as ev
from agentos.state.snapshot import PAGE, Manifest, from_pieces, piece_hashes, to_pieces
from agentos.state.world import State, apply, state_hash
from agentos.testing.kernelrig import KernelRig, run_rig


def spawned(pids: list[int]) -> State:
    state = State()
    for seq, pid in enumerate(pids, 1):
        apply(state, seq, 1000 + seq, ev.ProcSpawned(pid=pid, ppid=1, name=f"p{pid}", kind="agent"))
    return state


def manifest_of(data: bytes) -> Manifest:
    return msgspec.msgpack.decode(data, type=Manifest)


def test_a_change_rewrites_only_its_page_and_a_load_gives_the_same_state() -> None:
    state = spawned(list(range(PAGE, 11 * PAGE)))  # dense pids: ten pages
    m1, p1 = to_pieces(state)
    assert len(manifest_of(m1).proc_pages) == 10
    apply(state, state.seq + 1, 9999, ev.ProcExited(pid=5 * PAGE + 3, status=3))  # one process changes
    m2, p2 = to_pieces(state)
    changed = {k for k, h in manifest_of(m2).proc_pages.items() if manifest_of(m1).proc_pages[k] != h}
    assert changed == {str(5 * PAGE)}, "only the page holding the changed process is new"
    stored = {**p1, **p2}
    restored = from_pieces(m2, stored.get)
    assert restored == state and state_hash(restored) == state_hash(state)
    assert piece_hashes(m2) <= stored.keys()


def test_sparse_keys_make_few_pages() -> None:
    state = spawned([2 + 40 * i for i in range(200)])  # one pid in forty: reaped processes' holes
    manifest, pieces = to_pieces(state)
    assert len(manifest_of(manifest).proc_pages) <= 200 // (PAGE // 2), "pages hold ~PAGE items, not one"
    assert from_pieces(manifest, pieces.get) == state


def test_a_missing_or_corrupt_page_is_an_error_not_a_wrong_state() -> None:
    state = spawned(list(range(2, 100)))
    manifest, pieces = to_pieces(state)
    page = next(iter(manifest_of(manifest).proc_pages.values()))
    for broken in ({**pieces, page: b"garbage"}, {h: d for h, d in pieces.items() if h != page}):
        with pytest.raises(KeyError):  # a bad page is never loaded as a (wrong) state
            from_pieces(manifest, broken.get, get_blobs=lambda hs, b=broken: {h: b[h] for h in hs if h in b})


def test_an_older_manifest_with_one_piece_per_item_still_loads() -> None:
    state = spawned(list(range(2, 30)))
    pieces: dict[str, bytes] = {}

    def put(obj: object) -> str:
        data = msgspec.msgpack.encode(obj)
        pieces[hashlib.sha256(data).hexdigest()] = data
        return hashlib.sha256(data).hexdigest()

    old = Manifest(  # the layout before pages: as snapshots already in homes were written
        seq=state.seq,
        branch=state.world.branch,
        ledger=put(state.ledger),
        procs={str(pid): put(p) for pid, p in state.world.procs.procs.items()},
        caps=put(state.world.caps),
        groups=put(state.world.groups),
        vfs=put(msgspec.structs.replace(state.world.vfs, inodes={})),
    )
    restored = from_pieces(msgspec.msgpack.encode(old), pieces.get)
    assert restored == state


def test_paused_gc_restores_the_collector_even_on_error() -> None:
    assert gc.isenabled()
    try:
        with paused_gc():
            assert not gc.isenabled()
            raise ValueError
    except ValueError:
        pass
    assert gc.isenabled()


OPS = st.lists(
    st.tuples(st.sampled_from(["put", "rm", "spawn"]), st.integers(0, 80), st.binary(max_size=30)),
    min_size=5,
    max_size=60,
)


def test_past_states_over_paged_snapshots_equal_the_log_prefix_replayed(tmp_path: Path) -> None:
    counter = iter(range(10_000))

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops=OPS, picks=st.lists(st.floats(0, 1), min_size=1, max_size=4))
    def one(ops: list[tuple[str, int, bytes]], picks: list[float]) -> None:
        async def body(r: KernelRig) -> None:
            r.k.snapshot_every = 7  # many snapshots, many pages changing between them
            for op, n, data in ops:
                try:
                    if op == "put":
                        r.put(r.person, f"/shared/f{n}", data)
                    elif op == "rm":
                        r(r.person, "unlink", path=f"/shared/f{n}")
                    else:
                        r.agent()
                except Exception:  # noqa: BLE001 - ENOENT and the like: part of a random workload
                    pass
                await r.k.committer.durable(r.k.head_seq)
            if r.k._snapshot_task is not None:
                await r.k._snapshot_task
            head = r.k.committer.durable_seq
            assert r.k.log.conn.execute("SELECT count(*) FROM snapshots").fetchall()[0][0] > 0
            for f in picks:
                seq = max(1, int(f * head))
                r.k.past.kept.clear()
                past = r.k.past.state_at(seq)
                assert state_hash(past) == state_hash(rebuild_state(r.k.log, until=seq, conn=r.k.reader))

        run_rig(KernelRig(tmp_path / f"h{next(counter)}"), body)

    one()
