"""``fs_read_version`` and ``fs_restore`` of a host-mount path (``docs/vfs.md``, host mounts).

A host file's versions are the contents its made changes left at that path: a publish's ``after``,
none after an unlink or a rename away, the moved file's after a rename in (known only if that
file's content was recorded too). Folded in sequence order up to the asked seq. A file never
changed through AgentOS has no recorded version: ENOENT, saying so. A restore is a recorded write
like any (cause ``restore``), made once durable; the caller waits for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentos.errors import NotFound
from agentos.kernel.calls import Block, Caller, Done
from agentos.kernel.vfs.hostmount import HostFS, stored, version_bytes, wait_for_change
from agentos.kernel.vfs.hostundo import _size, host_changes
from agentos.kernel.vfs.mountfs import Routed
from agentos.state import events as ev

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

UNKNOWN = "?"  # content that was there but never recorded


def version_at(k: Kernel, r: Routed, seq: int, exact: bool) -> tuple[int, str]:
    """(the seq of the change that left it, its manifest hash) of ``r``'s content as of ``seq``."""
    content: dict[str, tuple[int, str | None]] = {}
    for h in host_changes(k, r.point):
        if h.seq > seq:
            break
        if h.error is not None:
            continue
        e = h.e
        if e.op == "write":
            content[e.path] = (h.seq, e.after)
        elif e.op == "unlink":
            content[e.path] = (h.seq, None)
        elif e.op == "rename":
            content[e.to] = (h.seq, content.get(e.path, (h.seq, UNKNOWN))[1])
            content[e.path] = (h.seq, None)
    at, h = content.get(r.path, (0, UNKNOWN))
    if h is None:
        raise NotFound(f"{r.full} did not exist as of seq {seq}", code="ENOENT")
    if h == UNKNOWN:
        raise NotFound(
            f"{r.full}: no version recorded as of seq {seq} (not changed through AgentOS)", code="ENOENT"
        )
    if exact and at != seq:
        raise NotFound(f"{r.full}: no version was made at seq {seq} (the one as of it: {at})", code="ENOENT")
    return at, h


def read_version(k: Kernel, r: Routed, seq: int, exact: bool, offset: int, n: int) -> Done:
    at, h = version_at(k, r, seq, exact)
    data = version_bytes(k, h)
    return Done({"data": data[offset : offset + n], "seq": at, "size": len(data), "hash": h, "ino": 0})


def restore(k: Kernel, c: Caller, r: Routed, seq: int, exact: bool) -> Done | Block:
    at, h = version_at(k, r, seq, exact)
    fs = r.fs
    assert isinstance(fs, HostFS)
    fs._writable(r)
    now = fs.content(r.path)
    before, blobs = stored(k, now)
    result: dict[str, Any] = {"changed": before != h, "seq": at, "size": _size(k, h), "ino": 0}
    if before == h:
        return Done(result)
    change = ev.VfsHostChange(
        mount=r.point,
        path=r.path,
        op="write",
        pid=c.pid,
        before=before,
        after=h,
        cause="restore",
        stored=sum(map(len, blobs.values())),
    )
    return wait_for_change(k, "fs_restore", [change], blobs, result)
