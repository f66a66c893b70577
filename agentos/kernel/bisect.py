"""``agentos bisect --good A --bad B --sql "SELECT ..."``: the first event at which a predicate held.

The predicate is false at ``good`` and true at ``bad``; the answer is the seq s in (good, bad] where it
is true and false at s - 1, found by halving the range: one probe at ``bad`` (it must hold there, or
there is nothing to find), then ceil(log2(bad - good)) probes, each a state reconstruction (the
predicate is assumed monotone between the two, as git bisect assumes; ``good`` is taken on trust,
not probed). Two forms of predicate:

* SQL (the ``bisect`` syscall, the CLI): true when the query returns a row, over the views of
  ``agentos query`` as of the probed seq (state-backed tables rebuilt there when it names them).
  It runs on a query worker thread (``kernel/query.py``), each probe bounded as a query is;
* Python, through the API: :func:`bisect` with a ``Callable[[State], bool]``, run on the calling
  thread against ``k.past.state_at`` (the kernel's loop thread in the kernel process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from agentos.abi import history_args as ha
from agentos.errors import InvalidArgument
from agentos.kernel import timeline
from agentos.kernel.calls import Block, Caller
from agentos.kernel.past import point_seq
from agentos.kernel.query import pool_of, rows_at, run_at, state_needs
from agentos.kernel.sysadmin import event_row
from agentos.state.world import State

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


@dataclass(slots=True)
class Probe:
    seq: int
    bad: bool
    ms: float


@dataclass(slots=True)
class BisectResult:
    good: int
    bad: int
    first_bad: int
    probes: list[Probe] = field(default_factory=list)


def search(good: int, bad: int, is_bad: Callable[[int], bool]) -> BisectResult:
    """Halve (good, bad] down to the first seq at which ``is_bad`` holds; every probe recorded."""
    if not 0 <= good < bad:
        raise InvalidArgument(f"good ({good}) must come before bad ({bad})")
    out = BisectResult(good, bad, bad)

    def probe(seq: int) -> bool:
        t0 = time.perf_counter()
        verdict = bool(is_bad(seq))
        out.probes.append(Probe(seq, verdict, round((time.perf_counter() - t0) * 1000, 3)))
        return verdict

    if not probe(bad):
        raise InvalidArgument(f"the predicate does not hold at bad ({bad}): nothing to find")
    lo, hi = good, bad
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            hi = mid
        else:
            lo = mid
    out.first_bad = hi
    return out


def bisect(k: Kernel, good: int, bad: int, predicate: Callable[[State], bool]) -> BisectResult:
    """The first seq in (good, bad] at which ``predicate`` holds of the state (the API's form)."""
    durable = k.committer.durable_seq
    if bad > durable:
        raise InvalidArgument(f"seq {bad} is not in the log yet (durable up to {durable})")
    return search(good, bad, lambda seq: predicate(k.past.state_at(seq)))


def sys_bisect(k: Kernel, c: Caller, a: ha.BisectArgs) -> Block:
    """``{good, bad, first_bad, probes: [{seq, bad, ms}], event}``: ``a.sql`` as the predicate."""
    good = point_seq(k, a.good)
    bad = point_seq(k, a.bad) if a.bad is not None else k.committer.durable_seq
    if not good < bad:
        raise InvalidArgument(f"good ({good}) must come before bad ({bad})")
    needs = state_needs(a.sql)
    pool, here = pool_of(k), timeline.lineage(k)

    def is_bad(seq: int) -> bool:
        rows = pool.on_loop(rows_at, k, seq, needs) if needs else {}
        return bool(run_at(k, seq, rows, a.sql, 1, a.timeout, here).rows)

    def work() -> dict[str, Any]:
        result = search(good, bad, is_bad)
        out = asdict(result)
        out["event"] = pool.on_loop(_event, k, result.first_bad)
        return out

    return pool.submit("bisect", work)


def _event(k: Kernel, seq: int) -> dict[str, Any] | None:
    rows = list(k.log.read(seq - 1, until=seq, conn=k.reader))
    return event_row(rows[0]) if rows else None
