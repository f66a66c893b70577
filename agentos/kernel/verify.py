"""``agentos verify``: check the hash chain, then rebuild the state from the log alone and compare it.

1. The whole chain — every digest, every link, no gap — and the signed head (``EventLog.verify_chain``).
   A break names the first bad seq; nothing is rebuilt from a log that was edited.
2. For each branch that has snapshots (and the live one), the state is folded forward once from seq 0
   through ``boot.replay_into`` (so branch-aware replay flows in here unchanged); at every stored
   snapshot of that branch the rebuild's ``state_hash`` is compared with the snapshot's, decoded; at
   the live state's seq, with the live state (when a kernel runs this).
3. At the first disagreement, ``verifydiff`` names what differs and the first event after the last
   agreeing point that changed it. A snapshot that fails its signature or cannot be decoded is a
   failure too (the kernel would silently ignore it; a verifier should not).

In a kernel (the ``verify`` admin call) the work runs on the query workers, on a connection of its
own (``query.py`` says why): only copying the live state happens on the loop. With no kernel,
``python -m agentos.kernel.verify --home DIR`` (what ``agentos verify`` runs then) opens the log
read-only and prints the same report as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import apsw
import msgspec

from agentos import param
from agentos.abi import syscalls as sc
from agentos.errors import AgentOSError, SecurityViolation
from agentos.kernel import base as log_base
from agentos.kernel import verifydiff
from agentos.kernel.boot import _digest_at, lineage_at, replay_into
from agentos.kernel.calls import Block, Caller
from agentos.kernel.query import pool_of
from agentos.state.snapshot import from_pieces
from agentos.state.world import PROJECTION_VERSION, State, World, state_hash
from agentos.store.home import Home
from agentos.store.lineage import Lineage
from agentos.store.log import EventLog
from agentos.store.logread import ReadOnlyLog, snapshot_rows

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

MAX_PROBLEMS = 20  # listed in one report at most (the count says how many there were)
_VERIFIED = re.compile(r"^(\d+) events verified")
_BAD_SEQ = re.compile(r"(?:at seq|expected seq) (\d+)")


@dataclass
class Target:
    """A state the rebuild is compared with: a stored snapshot, or the live state."""

    what: str  # "snapshot" | "live"
    branch: int
    seq: int
    state: State | None  # None: unusable (its problem is already reported)


def _fresh(branch: int) -> State:
    return State(world=World(branch=branch))


def _fold(
    state: State, log: EventLog, since: int, until: int, conn: apsw.Connection, lineage: Lineage
) -> State:
    """The only fold verify makes: ``replay_into`` on ``lineage`` (the world sees its events, the
    ledger every event). The world is then called by the lineage's branch, as ``past`` and boot do."""
    state = replay_into(state, log, since, until, conn, lineage=lineage)
    state.world.branch = lineage.branch
    return state


def _copy(state: State) -> State:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=State)


def verify_log(
    log: EventLog, conn: apsw.Connection, live: tuple[int, int, bytes] | None = None
) -> dict[str, Any]:
    """The report (see the module docstring). ``live``: (branch, seq, msgpack of the live state)."""
    t0 = time.perf_counter()
    chain_ok, detail = log_base.verify_chain(log, conn)  # from the log's base, when gc or import made one
    report: dict[str, Any] = {
        "ok": chain_ok,
        "detail": detail,
        "chain": {"ok": chain_ok, "detail": detail, "first_bad_seq": None},
        "events": 0,
        "replayed": 0,
        "snapshots": {"compared": 0, "agreed": 0, "skipped": 0},
        "live": None,
        "divergence": None,
        "problems": [],
    }
    verified = _VERIFIED.match(detail)
    if not chain_ok or verified is None:
        bad = _BAD_SEQ.search(detail)
        report["chain"]["first_bad_seq"] = int(bad.group(1)) if bad else None
        report["events"] = int(bad.group(1)) - 1 if bad else 0  # the links that held, before it
        report["ok"] = False
        report["problems"].append(f"hash chain: {detail}; nothing was rebuilt from it")
        report["ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return report
    head = report["events"] = int(verified.group(1))
    conn.execute("BEGIN")  # one read snapshot: the snapshots, their pieces and the events agree
    try:
        _rebuild_and_compare(log, conn, head, live, report)
    finally:
        conn.execute("COMMIT")
    report["ok"] = not report["problems"]
    if report["problems"]:  # the headline: the first thing wrong (the chain's own word stays in "chain")
        report["detail"] = report["problems"][0]
    report["problems"] = report["problems"][:MAX_PROBLEMS]
    report["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return report


def _targets(log: EventLog, conn: apsw.Connection, head: int, report: dict[str, Any]) -> list[Target]:
    targets = []
    for row in snapshot_rows(log, conn, head):
        where = f"snapshot at seq {row.seq} (branch {row.branch})"
        if row.projection_version != PROJECTION_VERSION:  # another projection's cache: not comparable
            report["snapshots"]["skipped"] += 1
            continue
        if not row.signed:
            report["problems"].append(f"{where} fails its signature: forged, or written under another key")
            targets.append(Target("snapshot", row.branch, row.seq, None))
            continue
        try:
            state = from_pieces(row.manifest, lambda h: log.get_blob(h, conn), _digest_at(log, row.seq, conn))
        except (KeyError, ValueError, SecurityViolation, msgspec.DecodeError) as exc:
            report["problems"].append(f"{where} cannot be read: {exc}")
            state = None
        targets.append(Target("snapshot", row.branch, row.seq, state))
    return targets


def _rebuild_and_compare(
    log: EventLog,
    conn: apsw.Connection,
    head: int,
    live: tuple[int, int, bytes] | None,
    report: dict[str, Any],
) -> None:
    targets = _targets(log, conn, head, report)
    if live is not None:
        branch, seq, data = live
        targets.append(Target("live", branch, seq, msgspec.msgpack.decode(data, type=State)))
    for branch in sorted({t.branch for t in targets} | {param.MAIN_BRANCH}):
        mine = sorted((t for t in targets if t.branch == branch), key=lambda t: (t.seq, t.what == "live"))
        lineage = lineage_at(log, conn, branch)
        state, at = log_base.base_state(log, lineage, None, conn)
        if at == 0:
            state = _fresh(branch)
        agreed = (at, _copy(state))
        for t in mine:
            state = _fold(state, log, at, t.seq, conn, lineage)
            report["replayed"] += t.seq - at
            at = t.seq
            if t.state is None:
                continue
            rebuilt, theirs = state_hash(state), state_hash(t.state)
            if t.what == "live":
                report["live"] = {"seq": t.seq, "branch": branch, "hash": theirs, "rebuilt": rebuilt}
            else:
                report["snapshots"]["compared"] += 1
            if rebuilt == theirs:
                report["snapshots"]["agreed"] += t.what == "snapshot"
                agreed = (t.seq, t.state)
                continue
            where = f"the {t.what} state at seq {t.seq} (branch {branch})"
            report["problems"].append(f"{where} differs from the state rebuilt from the log")
            if report["divergence"] is None:  # name the first one only: it is the one to chase
                report["divergence"] = _name(log, conn, lineage, t, state, agreed)
        if branch == param.MAIN_BRANCH and at < head:  # every event folded at least once
            _fold(state, log, at, head, conn, lineage)
            report["replayed"] += head - at


def _name(
    log: EventLog,
    conn: apsw.Connection,
    lineage: Lineage,
    t: Target,
    rebuilt: State,
    agreed: tuple[int, State],
) -> dict:
    """What differs at ``t`` and the first event after the last agreeing point that changed it."""
    assert t.state is not None
    items = verifydiff.differences(rebuilt, t.state)
    since, start = agreed
    found = verifydiff.first_change(log, conn, lineage, _copy(start), since, t.seq, items)
    return {"what": t.what, "branch": t.branch, "seq": t.seq, "agreed_seq": since, **found.as_dict()}


# -- the admin call ---------------------------------------------------------------------------------


def sys_verify(k: Kernel, c: Caller, a: sc.NoArgs) -> Block:
    """The report of :func:`verify_log` for this kernel's log and live state (``mode: kernel``)."""
    seq, branch = k.state.seq, k.state.world.branch
    live = msgspec.msgpack.encode(k.state)  # a copy, taken on the loop: the state moves on meanwhile
    pool = pool_of(k)

    def work() -> dict[str, Any]:
        pool.wait_durable(k, seq)  # the rebuild reads the log up to the live state's seq
        conn = k.log.reader()
        try:
            return {**verify_log(k.log, conn, (branch, seq, live)), "mode": "kernel"}
        finally:
            conn.close()

    return pool.submit("verify", work)


# -- with no kernel: python -m agentos.kernel.verify --home DIR ---------------------------------------


def verify_home(home: Home) -> dict[str, Any]:
    """The report for ``home``'s log, opened read-only (``mode: offline``)."""
    key_file = home.path / "hmac.key"
    log = ReadOnlyLog(home.log_db, hmac_key=key_file.read_bytes() if key_file.exists() else b"")
    try:
        return {**verify_log(log, log.conn), "mode": "offline"}
    finally:
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentos.kernel.verify", description=__doc__)
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    try:
        report = verify_home(Home(args.home))
    except (AgentOSError, apsw.Error, OSError) as err:
        print(f"agentos: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
