"""The file system as projected state: inodes, the directory tree, open files, fd tables (apply: vfs_apply.py).

What lives elsewhere: file *bytes* are content-addressed blobs (``store/chunks.py``: a version is
a ``Manifest`` blob naming chunk blobs), written by the kernel with the event that names them;
version history is the log itself (every ``vfs.version`` event, with its envelope's seq, ts, pid
and correlation); syscalls and their checks are the kernel's (``docs/vfs.md``).

Discussion — what apply trusts. The handlers validate (names, rights, EEXIST, ENOTEMPTY, EXDEV,
moving a directory into itself ...) and only emit sensible events. Apply trusts that, yet never
crashes and never breaks the tree's invariants on any well-formed event: an event that names a
missing inode, fd or entry, or that would break an invariant (a name created twice, ``rmdir`` of a
non-empty directory, ``unlink`` of a directory, a directory renamed into its own subtree or over a
non-empty one), is a no-op. The invariants:

- every directory entry names a live inode; ``nlink`` counts a file's names, and is 2 + its
  subdirectories for a linked directory (0 once removed); a directory has exactly one name;
- an inode is freed when it has no name left (``nlink == 0``) and no open file holds it (POSIX:
  an unlinked file stays readable and writable through its fds until the last close);
- an open file (POSIX's open file description: ino, flags, offset) is shared by the fds that
  ``dup`` made, so they share the offset; its id is the seq of its ``vfs.opened`` event (unique and
  deterministic: no counter needed); it is dropped when its last fd closes;
- ``files_of[group]`` is the number of live inodes whose ``group`` is that resource group (the
  ``files`` quota): world state, so a rewind that removes files gives their count back too.

A file's content is its last version (``manifest``, ``size``) plus ``pending``: the writes and
truncates since that version, in order; ``pending_size`` is the size readers see. fds start at
:data:`FIRST_FD` (3): 0, 1 and 2 stay free for stdio, which is the console, not a file here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Container

import msgspec

DIR, FILE, SYMLINK = "dir", "file", "symlink"
KINDS = frozenset({DIR, FILE, SYMLINK})
READ, WRITE, APPEND = 1, 2, 4  # OpenFile.flags bits
ROOT_INO = 1  # the root's number at first boot (the ledger's first inode)
FIRST_FD = 3  # the lowest fd handed out
MAX_SYMLINK_HOPS = 40  # as Linux's MAXSYMLINKS


def lexical(path: str) -> str:
    """``path`` normalised by its text alone (``.``, ``..``, repeated slashes), made absolute."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


class PathError(Exception):
    """A path that does not resolve; ``code`` is the POSIX name the kernel answers with."""

    code = "EINVAL"


class NoEntry(PathError):
    code = "ENOENT"


class NotADirectory(PathError):
    code = "ENOTDIR"


class SymlinkLoop(PathError):
    code = "ELOOP"


class PendingWrite(msgspec.Struct, array_like=True, frozen=True):
    """One change since the last version: ``length`` bytes at ``offset`` whose content is the
    manifest blob ``data`` — or, when ``data`` is "", a truncate to ``offset`` bytes."""

    offset: int
    data: str
    length: int


class Inode(msgspec.Struct, kw_only=True):
    ino: int
    kind: str  # dir | file | symlink
    mode: int
    nlink: int = 1
    size: int = 0  # of the last version
    manifest: str = ""  # blob hash of the last version's encoded Manifest, "" for empty
    version_seq: int = 0  # seq of the last version cut, 0 none
    target: str = ""  # a symlink's
    entries: dict[str, int] = {}  # a directory's: name -> ino
    pending: list[PendingWrite] = []
    pending_size: int = 0  # the size after the pending changes: the size readers see
    parent: int = 0  # the directory holding its last name (a directory's is its one name; root's is itself)
    name: str = ""  # its last name there (a file's may be stale once that name is unlinked)
    opens: int = 0  # open files on it
    mtime_ns: int = 0
    ctime_ns: int = 0
    created_by: int = 0
    created_seq: int = 0
    group: str = ""  # the resource group charged for it (the files quota), "" none


class OpenFile(msgspec.Struct, kw_only=True):
    """An open file description, shared by the fds that ``dup`` made. On a mounted file system
    (``mount`` set: /dev, /proc, a private /tmp, a host mount) ``ino`` is 0 and ``path`` is the
    file's path inside the mount; its bytes are the kernel's (``kernel/vfs/mounts.py``)."""

    id: int  # seq of its vfs.opened event
    pid: int  # who opened it
    ino: int
    flags: int  # READ | WRITE | APPEND
    offset: int = 0
    refs: int = 1  # fds naming it
    mount: str = ""  # the mount point ("/dev"), "" for the versioned tree
    path: str = ""  # inside the mount ("/null")
    pending: list[PendingWrite] = []  # a host mount's file: writes not yet published (vfs.host_wrote)


class HostIntent(msgspec.Struct, kw_only=True, frozen=True):
    """A host-mount change recorded (``vfs.host_change``) and not yet made (``vfs.host_done``)."""

    mount: str
    path: str
    op: str
    pid: int
    before: str | None = None
    after: str | None = None
    to: str = ""


class Mount(msgspec.Struct, kw_only=True, frozen=True):
    """A file system mounted in the world (a host directory): world state, so a rewind sees it.
    The kernel's own mounts (/proc, /dev, the private /tmp) are not here: they are always there."""

    kind: str  # which file system serves it (``kernel/vfs/mounts.py``: KINDS)
    source: str = ""  # what it serves (a host directory)
    readonly: bool = False
    pid: int = 0  # who mounted it


class FileSystem(msgspec.Struct):
    root: int = 0  # 0 until vfs.mkfs: then every path resolves to NoEntry and nothing can be created
    inodes: dict[int, Inode] = {}
    files: dict[int, OpenFile] = {}  # open file id -> open file
    fds: dict[int, dict[int, int]] = {}  # pid -> fd -> open file id (a pid with no fd has no table)
    mounts: dict[str, Mount] = {}  # mount point (a normalised absolute path) -> what is mounted there
    files_of: dict[str, int] = {}  # resource group -> inodes charged to it that exist (the files quota)
    host_unmade: dict[int, HostIntent] = {}  # seq of a vfs.host_change -> it, until its vfs.host_done

    # -- pure reads for the syscall layer ------------------------------------------------------------

    def get(self, ino: int) -> Inode | None:
        return self.inodes.get(ino)

    def open_file(self, pid: int, fd: int) -> OpenFile | None:
        fid = self.fds.get(pid, {}).get(fd)
        return None if fid is None else self.files.get(fid)

    def lowest_free_fd(self, pid: int) -> int:
        used = self.fds.get(pid, {})
        fd = FIRST_FD
        while fd in used:
            fd += 1
        return fd

    def resolve(self, path: str, *, follow: bool = True) -> int:
        """The inode at absolute ``path``, following symlinks (a final one only if ``follow``, or
        the path ends in "/"); raise NoEntry, NotADirectory, SymlinkLoop, or PathError (relative)."""
        if not path.startswith("/"):
            raise PathError(f"not an absolute path: {path!r}")
        if self.root not in self.inodes:
            raise NoEntry("no file system yet")
        must_dir = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
        todo = [p for p in reversed(path.split("/")) if p]
        cur, hops = self.root, 0
        while todo:
            name = todo.pop()
            node = self.inodes[cur]
            if node.kind != DIR:
                raise NotADirectory(path)
            if name == ".":
                continue
            if name == "..":
                cur = node.parent if cur != self.root and node.parent in self.inodes else self.root
                continue
            child_ino = node.entries.get(name)
            child = self.inodes.get(child_ino) if child_ino is not None else None
            if child is None:
                raise NoEntry(path)
            if child.kind == SYMLINK and (todo or follow or must_dir):
                hops += 1
                if hops > MAX_SYMLINK_HOPS or not child.target:
                    raise (SymlinkLoop if child.target else NoEntry)(path)
                if child.target.startswith("/"):
                    cur = self.root
                must_dir = must_dir or (not todo and child.target.endswith("/"))
                todo.extend(p for p in reversed(child.target.split("/")) if p)
                continue
            cur = child.ino
        if must_dir and self.inodes[cur].kind != DIR:
            raise NotADirectory(path)
        return cur

    def lookup(self, path: str, *, follow: bool = True) -> int | None:
        """``resolve``, with None for any path that does not resolve."""
        try:
            return self.resolve(path, follow=follow)
        except PathError:
            return None

    def canonical(self, path: str, *, follow: bool = True, stops: Container[str] = ()) -> str:
        """The physical path ``path`` names, as capabilities are checked on it: components walked as
        ``resolve`` walks them (symlinks followed — a final one only if ``follow`` or the path ends
        in "/" — and ``..`` taken physically, after them), so the result holds no symlink, ``.`` or
        ``..``. What does not resolve (a name not there yet, a loop) is kept lexically after the
        part that did, as is everything below a mount point (``stops``, and the world's mounts):
        another file system resolves those. Never raises."""
        if not path.startswith("/") or self.root not in self.inodes:
            return lexical(path)
        must_dir = path.endswith(("/", "/.", "/.."))
        todo = [p for p in reversed(path.split("/")) if p]
        names: list[str] = []
        inos = [self.root]
        hops = 0
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":
                if names:  # a directory has one name: its parent is the one above it
                    names.pop()
                    inos.pop()
                continue
            node = self.inodes.get(inos[-1])
            child_ino = node.entries.get(name) if node is not None and node.kind == DIR else None
            child = self.inodes.get(child_ino) if child_ino is not None else None
            at = "/" + "/".join((*names, name))
            if child is None or at in stops or at in self.mounts:
                todo.append(name)
                break
            if child.kind == SYMLINK and (todo or follow or must_dir):
                hops += 1
                if hops > MAX_SYMLINK_HOPS or not child.target:
                    todo.append(name)
                    break
                if child.target.startswith("/"):
                    names, inos = [], [self.root]
                must_dir = must_dir or (not todo and child.target.endswith("/"))
                todo.extend(p for p in reversed(child.target.split("/")) if p)
                continue
            names.append(name)
            inos.append(child.ino)
        return lexical("/" + "/".join((*names, *reversed(todo))))

    def parent_of(self, path: str) -> tuple[int, str]:
        """The directory that holds (or would hold) ``path``'s last component, and that name.
        Trailing slashes are dropped; "/" and names "." and ".." raise PathError (EINVAL)."""
        head, _, name = path.rstrip("/").rpartition("/")
        if not path.startswith("/") or name in ("", ".", ".."):
            raise PathError(f"no parent and name in {path!r}")
        parent = self.resolve(head + "/")
        return parent, name

    def listdir(self, ino: int) -> list[str]:
        """A directory's names, sorted (a stable readdir order)."""
        node = self.inodes.get(ino)
        if node is None:
            raise NoEntry(f"inode {ino}")
        if node.kind != DIR:
            raise NotADirectory(f"inode {ino}")
        return sorted(node.entries)

    def path_of(self, ino: int) -> str | None:
        """A path naming ``ino`` now (best effort: a file's last name, else any), None if it has none."""
        node = self.inodes.get(ino)
        if node is None or node.nlink <= 0:
            return None
        names: list[str] = []
        hops = 0
        while node.ino != self.root:
            holder = self.inodes.get(node.parent)
            if holder is None or holder.entries.get(node.name) != node.ino or hops > len(self.inodes):
                return self._search(ino)  # a stale last name (unlinked hard link): look
            names.append(node.name)
            node, hops = holder, hops + 1
        return "/" + "/".join(reversed(names))

    def _search(self, ino: int) -> str | None:
        todo = [(self.root, "")] if self.root in self.inodes else []
        while todo:
            cur, prefix = todo.pop()
            for name, child in sorted(self.inodes[cur].entries.items(), reverse=True):
                if child == ino:
                    return f"{prefix}/{name}"
                if self.inodes[child].kind == DIR:
                    todo.append((child, f"{prefix}/{name}"))
        return None
