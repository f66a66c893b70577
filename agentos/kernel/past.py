"""The state at a point in the past, and read-only calls against it (``agentos at POINT ...``).

A POINT is a sequence number, a time (ISO 8601, local unless it says otherwise, or ``@`` and Unix
seconds: the state after the last event at or before it), ``now`` (the durable head), a checkpoint's
name, or ``BRANCH:SEQ``; all but the last two are read on the live branch's lineage. The state there
is rebuilt from the newest snapshot its lineage took at or before it plus the log between (snapshots
are caches: none, and it is the log from its start), from durable events only; the last few are kept. Nothing is changed: a call against the past runs its
ordinary handler on a read-only view of the kernel whose state is the past one, and any call that
would record an event is refused. Mounted file systems (/proc, /dev, /tmp, host mounts) keep no
history and are not in the view.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agentos import param
from agentos.errors import InvalidArgument, NotFound
from agentos.kernel import timeline
from agentos.kernel.base import base_state
from agentos.kernel.boot import _digest_at, best_snapshot, replay_into
from agentos.kernel.calls import Caller, Done
from agentos.kernel.systxn import _Through
from agentos.state.snapshot import from_pieces
from agentos.state.world import State, forks
from agentos.store import history
from agentos.store.lineage import Lineage

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

KEPT = 4  # past states kept for the next call (a person looking around one moment)
CALLS = frozenset({"ps", "stat", "readdir", "readlink", "groups", "caps", "cat"})  # read-only, state only


def point_seq(k: Kernel, point: str) -> int:
    """The sequence number ``point`` names on the live branch's lineage; never past the durable head."""
    branch, seq = point_of(k, point)
    if branch != k.state.world.branch and not timeline.lineage(k).contains(branch, seq):
        raise InvalidArgument(
            f"{point!r} is on branch {branch}, outside this branch's history: use `at`, or restore it first",
            code="EXDEV",
        )
    return seq


def point_of(k: Kernel, point: str) -> tuple[int, int]:
    """(branch, seq) that ``point`` names (see the module docstring); never past the durable head."""
    durable = k.committer.durable_seq
    text = point.strip()
    here = k.state.world.branch
    if text == "now":  # the durable head: what a crash now would leave
        return here, durable
    branch, colon, rest = text.partition(":")
    if colon and branch.isdigit() and rest.isdigit():
        return _on_branch(k, int(branch), int(rest), durable)
    if text.isdigit():
        return here, _durable(int(text), durable)
    checkpoint = k.state.ledger.checkpoints.get(text)
    if checkpoint is not None:
        return checkpoint.branch, checkpoint.seq
    try:
        when = dt.datetime.fromtimestamp(float(text[1:]), dt.UTC) if text.startswith("@") else None
        when = when or dt.datetime.fromisoformat(text)
    except ValueError:
        raise NotFound(f"{point!r} is not a seq, a time or a checkpoint name", code="ENOENT") from None
    return here, _seq_at_time(k, int(when.timestamp() * 1e9), durable)


def _durable(seq: int, durable: int) -> int:
    if seq > durable:
        raise InvalidArgument(f"seq {seq} is not in the log yet (durable up to {durable})")
    return seq


def _on_branch(k: Kernel, branch: int, seq: int, durable: int) -> tuple[int, int]:
    if branch != param.MAIN_BRANCH and branch not in k.state.ledger.branches:
        raise NotFound(f"there is no branch {branch} (agentos branches lists them)", code="ENOENT")
    info = k.state.ledger.branches.get(branch)
    if info is not None and seq < info.fork_seq:
        raise InvalidArgument(f"branch {branch} begins at seq {info.fork_seq}; {seq} is before it")
    return branch, _durable(seq, durable)


def _seq_at_time(k: Kernel, ts_ns: int, durable: int) -> int:
    """The last durable seq whose event is at or before ``ts_ns`` (timestamps rise with seq)."""
    lo, hi = 0, durable
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ts = history.ts_of(k.reader, mid)
        if ts is None or ts <= ts_ns:  # None: compacted by gc, so older than every event kept after it
            lo = mid
        else:
            hi = mid - 1
    return lo


class Past:
    """Past states of one kernel, rebuilt on demand and a few kept."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.kept: OrderedDict[tuple[int, int], State] = OrderedDict()

    def state_at(self, seq: int, branch: int | None = None) -> State:
        """The state at ``seq`` of ``branch`` (default: the live one). Shared: never change it."""
        key = (self.k.state.world.branch if branch is None else branch, seq)
        state = self.kept.get(key)
        if state is None:
            state = self.kept[key] = self.rebuild(*key)
            while len(self.kept) > KEPT:
                self.kept.popitem(last=False)
        self.kept.move_to_end(key)
        return state

    def rebuild(self, branch: int, seq: int) -> State:
        """A fresh state at ``seq`` of ``branch``, the caller's to keep (a rewind takes its world)."""
        with paused_gc():
            return self._rebuild(branch, seq)

    def _rebuild(self, branch: int, seq: int) -> State:
        k = self.k
        lineage = Lineage.of(branch, forks(k.state.ledger))
        snap = best_snapshot(k.log, lineage, seq, k.reader)
        state, since = None, 0
        if snap is not None:
            try:
                digest = _digest_at(k.log, snap[0], k.reader)
                state = from_pieces(snap[1], k.blob, digest, lambda hs: k.log.get_blobs(hs, k.reader))
                since = snap[0]
            except Exception:  # noqa: BLE001 - a snapshot is a cache: fall back to the log alone
                state = None
        if state is None:  # the log from its start, or from its base (ECOMPACTED before it)
            state, since = base_state(k.log, lineage, seq, k.reader)
        state = replay_into(state, k.log, since, until=seq, conn=k.reader, lineage=lineage)
        state.world.branch = branch
        return state


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection while a past state is built: decoding a snapshot and folding its tail make
    hundreds of thousands of objects, none of them garbage, and the collections they would set off
    (each walking the live state too) took more than half of a rebuild's time at a million events."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # what was made is long-lived (a kept past state, a world a rewind swaps in): move it to the
        # oldest generation in O(1) (freeze, then unfreeze), rather than have the next young
        # collection walk all of it (~10 ms at 100k events, a third of a rebuild)
        gc.freeze()
        gc.unfreeze()
        if was:
            gc.enable()


class PastView(_Through):
    """The kernel as handlers read it, with the past state in place of the live one."""

    def __init__(self, k: Kernel, state: State) -> None:
        super().__init__(k, state=state)


def call_at(k: Kernel, c: Caller, point: tuple[int, int], call: str, args: Any) -> Done:
    """``call`` (one of :data:`CALLS`) answered from the state at ``seq``."""
    from agentos.abi.syscalls import decode_args  # noqa: PLC0415 - the table imports this module's users
    from agentos.kernel.syscall import SYSCALLS  # noqa: PLC0415

    if call not in CALLS:
        raise InvalidArgument(f"{call!r} cannot be asked of the past (one of: {', '.join(sorted(CALLS))})")
    branch, seq = point
    view = PastView(k, k.past.state_at(seq, branch))
    if call == "cat":  # a file's bytes then: no fd (an open would be an event)
        return Done({"seq": seq, "result": _cat(view, args or {})})
    row = SYSCALLS[call]
    out = row.handler(view, c, decode_args(row.schema, args or {}))
    if not isinstance(out, Done) or out.events:
        raise InvalidArgument(f"{call} would change something: the past is read-only", code="EROFS")
    return Done({"seq": seq, "result": out.result})


def _cat(view: PastView, args: dict[str, Any]) -> bytes:
    from agentos.abi.history_args import ReadVersionRange  # noqa: PLC0415
    from agentos.abi.syscalls import decode_args  # noqa: PLC0415
    from agentos.kernel import filedata, sysfile  # noqa: PLC0415

    a = decode_args(ReadVersionRange, args)
    fs = view.state.world.vfs
    with sysfile.paths():
        node = fs.get(fs.resolve(a.path))
    if node is None or node.kind != "file":
        raise InvalidArgument(f"{a.path} is not a file", code="EISDIR")
    return filedata.read_bytes(view, node, a.offset, a.n)


def sys_at(k: Kernel, c: Caller, a: Any) -> Done:
    """``{seq, result}``: the call ``a.what`` with ``a.args`` answered as the kernel would have at ``a.point``."""
    return call_at(k, c, point_of(k, a.point), a.what, a.args)
