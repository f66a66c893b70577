"""The state at a point in the past, and read-only calls against it (``agentos at POINT ...``).

A POINT is a sequence number, a time (ISO 8601, local unless it says otherwise, or ``@`` and Unix
seconds: the state after the last event at or before it), ``now`` (the durable head) or, once
checkpoints exist (issue 6), a checkpoint's name. The state there is rebuilt from the newest snapshot at or before it plus the log
between (snapshots are caches: none, and it is the log from its start), on the live branch, from
durable events only; the last few are kept. Nothing is changed: a call against the past runs its
ordinary handler on a read-only view of the kernel whose state is the past one, and any call that
would record an event is refused. Mounted file systems (/proc, /dev, /tmp, host mounts) keep no
history and are not in the view.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from agentos.errors import InvalidArgument, NotFound
from agentos.kernel.boot import _digest_at, replay_into
from agentos.kernel.calls import Caller, Done
from agentos.kernel.systxn import _Through
from agentos.state.snapshot import from_pieces
from agentos.state.world import PROJECTION_VERSION, State
from agentos.store import history

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

KEPT = 4  # past states kept for the next call (a person looking around one moment)
CALLS = frozenset({"ps", "stat", "readdir", "readlink", "groups", "caps", "cat"})  # read-only, state only


def point_seq(k: Kernel, point: str) -> int:
    """The sequence number ``point`` names (see the module docstring); never past the durable head."""
    durable = k.committer.durable_seq
    text = point.strip()
    if text == "now":  # the durable head: what a crash now would leave
        return durable
    if text.isdigit():
        seq = int(text)
        if seq > durable:
            raise InvalidArgument(f"seq {seq} is not in the log yet (durable up to {durable})")
        return seq
    try:
        when = dt.datetime.fromtimestamp(float(text[1:]), dt.UTC) if text.startswith("@") else None
        when = when or dt.datetime.fromisoformat(text)
    except ValueError:
        raise NotFound(f"{point!r} is not a seq, a time or a checkpoint name", code="ENOENT") from None
    return _seq_at_time(k, int(when.timestamp() * 1e9), durable)


def _seq_at_time(k: Kernel, ts_ns: int, durable: int) -> int:
    """The last durable seq whose event is at or before ``ts_ns`` (timestamps rise with seq)."""
    lo, hi = 0, durable
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ts = history.ts_of(k.reader, mid)
        if ts is not None and ts <= ts_ns:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Past:
    """Past states of one kernel, rebuilt on demand and a few kept."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.kept: OrderedDict[tuple[int, int], State] = OrderedDict()

    def state_at(self, seq: int) -> State:
        key = (self.k.state.world.branch, seq)
        state = self.kept.get(key)
        if state is None:
            state = self.kept[key] = self._rebuild(seq)
            while len(self.kept) > KEPT:
                self.kept.popitem(last=False)
        self.kept.move_to_end(key)
        return state

    def _rebuild(self, seq: int) -> State:
        k = self.k
        snap = k.log.latest_snapshot(k.state.world.branch, PROJECTION_VERSION, seq)
        state, since = State(), 0
        if snap is not None:
            try:
                state = from_pieces(snap[1], k.blob, _digest_at(k.log, snap[0], k.reader))
                since = snap[0]
            except Exception:  # noqa: BLE001 - a snapshot is a cache: fall back to the log alone
                state = State()
        return replay_into(state, k.log, since, until=seq, conn=k.reader)


class PastView(_Through):
    """The kernel as handlers read it, with the past state in place of the live one."""

    def __init__(self, k: Kernel, state: State) -> None:
        super().__init__(k, state=state)


def call_at(k: Kernel, c: Caller, seq: int, call: str, args: Any) -> Done:
    """``call`` (one of :data:`CALLS`) answered from the state at ``seq``."""
    from agentos.abi.syscalls import decode_args  # noqa: PLC0415 - the table imports this module's users
    from agentos.kernel.syscall import SYSCALLS  # noqa: PLC0415

    if call not in CALLS:
        raise InvalidArgument(f"{call!r} cannot be asked of the past (one of: {', '.join(sorted(CALLS))})")
    view = PastView(k, k.past.state_at(seq))
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
    return call_at(k, c, point_seq(k, a.point), a.what, a.args)
