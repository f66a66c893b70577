"""Per-process mount views: an agent given a subtree of the versioned tree as its root.

``spawn(..., root="/shared/proj")`` starts a child whose ``/`` is ``/shared/proj`` — plus its own
``/tmp``, ``/proc`` and ``/dev``, which every process sees at the same place. Why: a sub-agent
that works on one project can be handed that project as its whole world, with nothing above it to
reach or to name.

How, in three places:

- **Paths.** Before a call from a rooted process is authorised, :func:`rebase` turns every path it
  gives (``path``, ``src``, ``dst``, ``root``, and ``fs:`` resources in capability requests) into
  the kernel's: normalised lexically first — so ``..`` at its root stays at its root — then put
  under the root, except under ``/tmp``, ``/proc`` and ``/dev``. Capabilities, handlers and
  events then see only physical paths, exactly as for any process. What it reads back in a path
  call (``readdir``, ``stat``) is relative to its root by construction; ``readdir /`` shows the
  three mount points too.
- **The grant.** The spawner must hold ``list`` on ``fs:<subtree>``, which must be a directory of
  the versioned tree (a rooted spawner names it in its own view: roots nest). A child spawned
  without ``root`` keeps its parent's.
- **Capabilities are re-rooted** (:func:`reroot`): each ``fs:`` capability the child gets is
  narrowed to the subtree when it is wider (``fs:/`` becomes ``fs:/shared/proj``), kept when it
  lies inside the subtree or under ``/tmp``, ``/proc``, ``/dev``, and dropped when it lies
  elsewhere. So even a path that resolved outside the subtree (a symlink) would find no
  capability there.

What it does not translate: reports that name files for the kernel's administrators — ``cap_list``
rows, ``/proc/<pid>/fds``, ``watch`` changes — give physical paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from agentos.abi import syscalls as sc
from agentos.caps import pattern
from agentos.errors import InvalidArgument, NotFound
from agentos.kernel import sysfile
from agentos.kernel.calls import Caller
from agentos.kernel.vfs.mountfs import BUILTIN
from agentos.state import events as ev
from agentos.state import vfs
from agentos.state.proc import Process

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel

_PATHS = frozenset({"path", "src", "dst", "root"})


def own_mount(norm: str) -> bool:
    """Whether normalised ``norm`` is under a mount every process has at the same place."""
    return any(norm == point or norm.startswith(point + "/") for point in BUILTIN)


def physical(root: str, path: str) -> str:
    """``path`` as a process rooted at ``root`` means it, in the kernel's names."""
    norm = sysfile.fs_path(path)
    out = norm if own_mount(norm) else (root if norm == "/" else root + norm)
    return out + "/" if path.endswith("/") and out != "/" else out


def _resource(root: str, resource: str) -> str:
    kind, value = pattern.split(resource)
    if kind != "fs" or not value.startswith(("/", "*")):
        return resource
    if value == "*":
        return f"fs:{root}"
    if value.endswith("*"):  # a prefix: its directories are translated, the partial name kept
        head, _, tail = value[:-1].rpartition("/")
        return f"fs:{physical(root, head or '/').rstrip('/')}/{tail}*"
    return f"fs:{physical(root, value)}"


def _rebased(root: str, value: Any) -> Any:
    if isinstance(value, list):
        return [_rebased(root, v) for v in value]
    if not isinstance(value, msgspec.Struct):
        return value
    changes: dict[str, Any] = {}
    for name in value.__struct_fields__:
        v = getattr(value, name)
        if isinstance(v, str) and name in _PATHS:
            changes[name] = physical(root, v)
        elif isinstance(v, str) and name == "resource":
            changes[name] = _resource(root, v)
        elif isinstance(v, list | msgspec.Struct):
            new = _rebased(root, v)
            if new is not v:
                changes[name] = new
    return msgspec.structs.replace(value, **changes) if changes else value


def rebase(k: Kernel, c: Caller, args: sc.Args) -> sc.Args:
    """A rooted agent's arguments with the kernel's paths (unchanged for everyone else)."""
    if c.kind != "agent":
        return args
    p = k.state.world.procs.get(c.pid)
    return args if p is None or not p.root else _rebased(p.root, args)


def spawn_root(k: Kernel, c: Caller, parent: Process, root: str | None) -> str:
    """The root of a child: its parent's, or the subtree asked for (already in the kernel's names),
    which must be a directory of the versioned tree the spawner may list."""
    inherited = parent.root if parent.kind == "agent" else ""
    if root is None:
        return inherited
    norm = sysfile.fs_path(root)
    if k.mounts.point_of(norm) is not None:
        raise InvalidArgument(
            f"a root is a directory of the versioned tree, not {root} (a mount)", code="EXDEV"
        )
    node = k.state.world.vfs.lookup(norm)
    if node is None:
        raise NotFound(f"no such directory: {root}", code="ENOENT")
    if k.state.world.vfs.inodes[node].kind != vfs.DIR:
        raise InvalidArgument(f"{root} is not a directory", code="ENOTDIR")
    if c.kind != "kernel":
        k.authority.authorise(c, "spawn", f"fs:{norm}", "list")
    return "" if norm == "/" else norm


def reroot(grants: list[ev.Payload], root: str) -> list[ev.Payload]:
    """A rooted child's capabilities: each ``fs:`` one narrowed to ``fs:<root>`` if wider, kept if
    inside it or under a mount of its own, dropped if elsewhere."""
    if not root:
        return grants
    mine = f"fs:{root}"
    out: list[ev.Payload] = []
    for g in grants:
        if not isinstance(g, ev.CapGranted) or pattern.split(g.resource)[0] != "fs":
            out.append(g)  # not a path (the root capability "*" stays whole: it is everything anyway)
        elif pattern.subsumes(mine, g.resource) or any(
            pattern.subsumes(f"fs:{p}", g.resource) for p in BUILTIN
        ):
            out.append(g)
        elif pattern.subsumes(g.resource, mine):
            out.append(msgspec.structs.replace(g, resource=mine))
    return out
