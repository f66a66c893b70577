"""Who may touch a path: the ``fs:`` capability a file call is checked against, computed on the
*physical* path, and the mode bits and ``files`` quota a handler checks before it changes the tree.

Why physical: an agent may create symlinks, so the text of a path says nothing about where it
leads — ``/shared/x -> /secret`` makes ``/shared/x/key`` the secret key, ``/shared/x/..`` is
``/``. A capability is therefore checked on :meth:`FileSystem.canonical` of the path (symlinks
followed as the call follows them, ``..`` taken physically; a name not there yet: its canonical
parent plus the name) — the one place paths are canonicalised. Check and use see one state: the
dispatcher checks and the handler runs in one synchronous step, so nothing can swap a symlink
between them; each later call is checked afresh.

A row names :class:`FsPath` as its resource: called with the arguments alone it gives the lexical
resource (what the table shows, and what ``tests/test_layering.py`` inspects); the dispatcher asks
:meth:`FsPath.resolved` instead (``Kernel.check_call``). A second path (rename's and link's
``dst``) is checked by the handler with :func:`authorise`.

Mode bits (``docs/vfs.md``): for agents, a file's owner bits are enforced on top of capabilities
— opening to read needs 0o400, to write 0o200; creating or removing a name needs 0o200 on its
directory, listing one 0o400. Sessions (the person at the CLI holds root) and the kernel bypass
them, as root does. They guard against mistakes, not against the agent: one holding ``write`` on a
path may ``chmod`` it, as a file's owner may.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentos.errors import PermissionDenied
from agentos.kernel.calls import Caller
from agentos.kernel.vfs.mountfs import BUILTIN
from agentos.state import events as ev
from agentos.state.vfs import Inode, lexical

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

R, W = 0o400, 0o200  # the owner's bits that mean something


def canonical(k: Kernel, path: str, *, follow: bool = True) -> str:
    """``path`` as the physical path it names in the tree the call sees (a transaction's view
    included); below a mount point it is left as it reads (that file system resolves it)."""
    return k.state.world.vfs.canonical(path, follow=follow, stops=BUILTIN)


@dataclass(frozen=True, slots=True)
class FsPath:
    """A row's resource: ``fs:<the physical path>`` of the argument ``field``. ``follow``: whether
    the call follows a final symlink (None: the call's own ``follow`` argument, as ``stat``)."""

    field: str = "path"
    follow: bool | None = True

    def __call__(self, a: Any) -> str:
        return f"fs:{lexical(getattr(a, self.field))}"

    def resolved(self, k: Kernel, a: Any) -> str:
        follow = a.follow if self.follow is None else self.follow
        return f"fs:{canonical(k, getattr(a, self.field), follow=follow)}"


def authorise(k: Kernel, c: Caller, call: str, path: str, right: str, *, follow: bool = True) -> None:
    """A second path's check (rename's and link's ``dst``, ``open``'s read), on its physical path."""
    if c.kind != "kernel":
        k.authority.authorise(c, call, f"fs:{canonical(k, path, follow=follow)}", right)


def need(c: Caller, node: Inode, bits: int, path: str) -> None:
    """EACCES unless ``node``'s owner bits allow ``bits``, for an agent (sessions bypass, as root)."""
    if c.confined and node.mode & bits != bits:
        what = "read" if bits == R else "write" if bits == W else "read and write"
        raise PermissionDenied(f"{path}: mode {node.mode:o} does not allow {what}", code="EACCES")


def new_inode(
    k: Kernel, c: Caller, path: str, holder: Inode, name: str, kind: str, mode: int, target: str = ""
) -> ev.VfsCreated:
    """The event creating ``name`` in directory ``holder`` (``path``: for messages), after the
    checks every create shares: write permission on the directory, and the ``files`` quota of the
    caller's groups. The event names the group charged, so freeing the inode later gives it back
    (``state/vfs_apply.py``)."""
    need(c, holder, W, f"{path}: its directory")
    if c.confined:
        k.quotas.check(c.pid, {"files": 1})
    group = k.quotas.group_of(c.pid) if c.kind != "kernel" else ""
    ino = k.state.ledger.next_ino
    return ev.VfsCreated(
        parent=holder.ino, name=name, ino=ino, kind=kind, mode=mode, pid=c.pid, target=target, group=group
    )
