"""``fs_transaction``: several file changes that land as one, and undo as one (``docs/vfs.md``).

Why: an agent that changes several files together (a module and its index, a rename and the file
that names it) must never leave half of it behind — not on an error halfway, not on a crash.

How. The ops are decided in order against a *view* of the tree: a copy-on-write overlay of the live
inodes (an inode is copied the first time the transaction reads it, never the whole tree). Each op
is decided by the handler its own syscall uses (``sys_mkdir``, ``sys_unlink``, ``sys_rmdir``,
``sys_rename``; a write by ``sys_open``'s checks, then its bytes), reading the view, and its events
are applied to the view with the pure functions of ``state/vfs_apply.py`` — so each op sees the
ones before it (``mkdir /a`` then write ``/a/b``). Live state is never touched here: either every
event comes back in one ``Done``, or the first failing op's typed error is raised, its message
naming the op's index, and nothing happened.

All or none across a crash: the kernel emits a ``Done``'s events in one synchronous step, and the
group committer writes everything pending in one SQLite transaction, never a part
(``kernel/commit.py``): the events of one call never straddle two transactions (tested with kill -9
around large transactions, ``tests/test_vfs_txn.py``). They share the call's correlation id, which
the result returns with the seq range, for ``fs_undo(correlation=...)`` to undo them together.

A write op replaces the file's content (``append``: adds to it) and cuts a version: the events a
write through an fd and its close leave (``vfs.truncated``, ``vfs.wrote`` with fd -1,
``vfs.version``), so history and undo treat both alike. Quotas (``file_bytes``, ``stored_bytes``)
are checked for the transaction's running total before each write.

Cost: a full copy of a 10k-file tree (msgspec round trip) takes ~20 ms; the view copies only what
the ops read (the directories on their paths, with their entries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import msgspec

from agentos import param
from agentos.abi import syscalls as sc
from agentos.errors import AgentOSError, InvalidArgument
from agentos.kernel import filedata, fsaccess, sysfile
from agentos.kernel.calls import Caller, Done
from agentos.state import events as ev
from agentos.state.vfs import FileSystem, Inode
from agentos.state.vfs_apply import VFS_APPLY

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


# -- the capability the row checks: write on the first op's path (each op is then checked itself) -------


def txn_resource(a: sc.FsTransactionArgs) -> str:
    if not a.ops:
        return "sys:fd"  # an empty transaction changes nothing: any agent with files may make one
    op = a.ops[0]
    return f"fs:{sysfile.fs_path(op.src if isinstance(op, sc.TxnRename) else op.path)}"


def txn_right(a: sc.FsTransactionArgs) -> str:
    return "write" if a.ops else "use"


# -- the view: the live kernel, with the transaction's tree, inode numbers and blobs ---------------------


class _Inodes(dict[int, Inode]):
    """Copy-on-read inodes over the live ones: read means copied (apply may change what it reads);
    new inodes are added here, removed ones hidden. ``len`` is an upper bound (loop bounds only)."""

    __slots__ = ("base", "gone")

    def __init__(self, base: dict[int, Inode]) -> None:
        super().__init__()
        self.base, self.gone = base, set[int]()

    def __missing__(self, ino: int) -> Inode:
        if ino in self.gone:
            raise KeyError(ino)
        node = self.base[ino]
        copy = msgspec.structs.replace(node, entries=dict(node.entries), pending=list(node.pending))
        dict.__setitem__(self, ino, copy)
        return copy

    def get(self, ino: int, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[ino]
        except KeyError:
            return default

    def __contains__(self, ino: object) -> bool:
        return dict.__contains__(self, ino) or (ino not in self.gone and ino in self.base)

    def __setitem__(self, ino: int, node: Inode) -> None:
        self.gone.discard(ino)
        dict.__setitem__(self, ino, node)

    def __delitem__(self, ino: int) -> None:
        dict.pop(self, ino, None)
        self.gone.add(ino)

    def __len__(self) -> int:
        return len(self.base) + dict.__len__(self)


class _Through:
    """Reads attributes through to ``inner`` except those set here."""

    def __init__(self, inner: Any, **own: Any) -> None:
        self.__dict__.update(own, _inner=inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_inner"], name)


class View(_Through):
    """What a handler reads (``k.state.world.vfs``, ``k.state.ledger.next_ino``, ``k.blob`` ...)."""

    def __init__(self, k: Kernel) -> None:
        live = k.state.world.vfs
        fs = FileSystem(root=live.root, inodes=_Inodes(live.inodes), files=live.files, fds=live.fds)
        ledger = _Through(k.state.ledger, next_ino=k.state.ledger.next_ino)
        state = _Through(k.state, world=_Through(k.state.world, vfs=fs), ledger=ledger)
        super().__init__(k, state=state)
        self.fs, self.ledger = fs, ledger
        self.blobs: dict[str, bytes] = {}
        self.events: list[ev.Payload] = []

    def blob(self, h: str) -> bytes | None:
        found = self.blobs.get(h)
        return found if found is not None else self._inner.blob(h)

    def has_blob(self, h: str) -> bool:
        return h in self.blobs or self._inner.has_blob(h)

    def get_blobs(self, hashes: list[str]) -> dict[str, bytes]:
        found = {h: self.blobs[h] for h in hashes if h in self.blobs}
        rest = [h for h in hashes if h not in found]
        return found | self._inner.get_blobs(rest) if rest else found

    def stored_blobs(self, hashes: list[str]) -> set[str]:
        staged = {h for h in hashes if h in self.blobs}
        rest = [h for h in hashes if h not in staged]
        return staged | self._inner.stored_blobs(rest) if rest else staged

    def apply(self, events: list[ev.Payload]) -> None:
        """Fold ``events`` into the view (as the kernel will into live state) and keep them."""
        for e in events:
            fold = VFS_APPLY.get(type(e))
            if fold is not None:  # (a handler's other events, if any, change no file)
                fold(self.fs, 0, 0, e)
            if isinstance(e, ev.VfsCreated):
                self.ledger.next_ino = max(self.ledger.next_ino, e.ino + 1)
            self.events.append(e)


# -- the call -------------------------------------------------------------------------------------------


def _describe(op: Any) -> str:
    tag = type(op).__struct_config__.tag
    where = f"{op.src} -> {op.dst}" if isinstance(op, sc.TxnRename) else op.path
    return f"{tag} {where[:200]}"


def _write(view: View, k: Kernel, c: Caller, op: sc.TxnWrite, spent: dict[str, int]) -> None:
    """Replace (or append to) a file's content, creating it, and cut its version."""
    flags = ["write", "create", "append" if op.append else "truncate"]
    handler = cast("Kernel", view)
    opened = sysfile.sys_open(handler, c, sc.OpenArgs(path=op.path, flags=flags, mode=op.mode))
    ino = next(e.ino for e in opened.events if isinstance(e, ev.VfsOpened))
    view.apply([e for e in opened.events if not isinstance(e, ev.VfsOpened)])  # created, truncated
    node = view.fs.inodes[ino]
    old = filedata.content(handler, node) if op.append and node.pending_size else b""
    end = len(old) + len(op.data)
    if end > param.MAX_FILE_BYTES:
        raise InvalidArgument(f"a file is at most {param.MAX_FILE_BYTES} bytes", code="EFBIG")
    events: list[ev.Payload] = []
    h, new = filedata.store_bytes(handler, op.data)
    view.blobs |= new
    stored = sum(len(b) for b in new.values())
    if op.data:
        events.append(
            ev.VfsWrote(
                pid=c.pid,
                fd=-1,
                ino=ino,
                offset=len(old),
                data=h,
                length=len(op.data),
                pos=end,
                size=end,
                stored=stored,
            )
        )
    vh, vnew = (h, {}) if not old else filedata.store_bytes(handler, old + op.data)
    view.blobs |= vnew
    vstored = sum(len(b) for b in vnew.values())
    events.append(ev.VfsVersion(ino=ino, manifest=vh, size=end, pid=c.pid, stored=vstored))
    spent["file_bytes"] += len(op.data)
    spent["stored_bytes"] += stored + vstored
    if c.confined:
        k.quotas.check(c.pid, spent)  # the transaction's running total
    view.apply(events)


def _decide(view: View, k: Kernel, c: Caller, op: Any, spent: dict[str, int]) -> None:
    """Check one op against the caller's capabilities and the view, and fold its events in."""
    handler = cast("Kernel", view)
    path = op.src if isinstance(op, sc.TxnRename) else op.path  # rename's handler checks its dst itself
    fsaccess.authorise(handler, c, "fs_transaction", path, "write", follow=isinstance(op, sc.TxnWrite))
    if isinstance(op, sc.TxnWrite):
        _write(view, k, c, op, spent)
    elif isinstance(op, sc.TxnMkdir):
        view.apply(sysfile.sys_mkdir(handler, c, sc.MkdirArgs(path=op.path, mode=op.mode)).events)
    elif isinstance(op, sc.TxnUnlink):
        view.apply(sysfile.sys_unlink(handler, c, sc.PathArgs(path=op.path)).events)
    elif isinstance(op, sc.TxnRmdir):
        view.apply(sysfile.sys_rmdir(handler, c, sc.PathArgs(path=op.path)).events)
    else:
        view.apply(sysfile.sys_rename(handler, c, sc.RenameArgs(src=op.src, dst=op.dst)).events)


def sys_fs_transaction(k: Kernel, c: Caller, a: sc.FsTransactionArgs) -> Done:
    total = sum(len(op.data) for op in a.ops if isinstance(op, sc.TxnWrite))
    if total > param.TXN_MAX_BYTES:
        raise InvalidArgument(
            f"a transaction writes at most {param.TXN_MAX_BYTES} bytes, not {total}", code="E2BIG"
        )
    view = View(k)
    spent = {"file_bytes": 0, "stored_bytes": 0}
    for i, op in enumerate(a.ops):
        try:
            _decide(view, k, c, op, spent)
        except AgentOSError as exc:
            raise type(exc)(
                f"op {i} ({_describe(op)}): {exc.message}",
                code=exc.code,
                severity=exc.severity,
                retryable=exc.retryable,
            ) from None
    first = k.head_seq + 1  # emitted right after this returns, in order, with nothing between
    result = {
        "correlation": c.correlation,
        "ops": len(a.ops),
        "first_seq": first if view.events else None,
        "last_seq": first + len(view.events) - 1 if view.events else None,
    }
    return Done(result, view.events, view.blobs)
