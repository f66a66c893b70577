"""The file system's event payloads (``vfs.*``), applied by ``state/vfs_apply.py``.

Inode numbers come from the ledger (``Ledger.next_ino``, bumped by mkfs and created). ``pid`` is
the process whose call it was (fd events: whose fd table). Content travels as the hash of an
encoded ``store.chunks.Manifest`` blob, written with the event, as are its chunks.
"""

from __future__ import annotations

from agentos.state.payload import Payload, event


@event("vfs.mkfs")
class VfsMkfs(Payload):
    """The root directory came to exist (the kernel emits it once, at first boot)."""

    ino: int
    mode: int = 0o755


@event("vfs.created")
class VfsCreated(Payload):
    parent: int
    name: str
    ino: int
    kind: str  # dir | file | symlink
    mode: int
    pid: int
    target: str = ""  # a symlink's target
    group: str = ""  # the resource group charged for the new inode (the files quota), "" none


@event("vfs.opened")
class VfsOpened(Payload):
    pid: int
    fd: int
    ino: int  # 0 on a mounted file system
    flags: int  # state.vfs.READ | WRITE | APPEND
    offset: int = 0
    mount: str = ""  # the mount point ("/dev"), "" for the versioned tree
    path: str = ""  # the file's path inside the mount ("/null")


@event("vfs.closed")
class VfsClosed(Payload):
    pid: int
    fd: int


@event("vfs.dup")
class VfsDup(Payload):
    """``new_fd`` shares ``fd``'s open file (offset and flags), as POSIX dup2: an open ``new_fd``
    is closed first."""

    pid: int
    fd: int
    new_fd: int


@event("vfs.wrote")
class VfsWrote(Payload):
    """Bytes written into a file's pending content (a version is cut later, at close or fsync)."""

    pid: int
    fd: int  # -1: not through an fd
    ino: int
    offset: int  # where the bytes went
    data: str  # manifest hash of the written bytes
    length: int
    pos: int  # the fd's offset after the write
    size: int  # the file's size after the write
    stored: int = 0  # bytes of new chunks it stored (charged to the writer's group)


@event("vfs.offset")
class VfsOffset(Payload):
    """A read or a seek moved an fd's offset."""

    pid: int
    fd: int
    offset: int


@event("vfs.truncated")
class VfsTruncated(Payload):
    ino: int
    size: int
    pid: int = 0


@event("vfs.version")
class VfsVersion(Payload):
    """A version cut (close, fsync, commit, restore): its manifest replaces the pending writes."""

    ino: int
    manifest: str  # "" for an empty file
    size: int
    pid: int
    stored: int = 0  # bytes of new blobs it stored (the manifest; chunks of a restore)
    cause: str = ""  # close | fsync | exit | restore | undo; "" a transaction, truncate, older logs


@event("vfs.unlinked")
class VfsUnlinked(Payload):
    parent: int
    name: str
    ino: int
    pid: int = 0


@event("vfs.linked")
class VfsLinked(Payload):
    parent: int
    name: str
    ino: int
    pid: int = 0


@event("vfs.renamed")
class VfsRenamed(Payload):
    """Atomic; a file (or empty directory) at the destination is replaced and unlinked."""

    parent: int
    name: str
    new_parent: int
    new_name: str
    ino: int
    replaced: int = 0  # the inode it replaced, 0 none
    pid: int = 0


@event("vfs.rmdir")
class VfsRmdir(Payload):
    parent: int
    name: str
    ino: int
    pid: int = 0


@event("vfs.chmod")
class VfsChmod(Payload):
    ino: int
    mode: int
    pid: int = 0


@event("vfs.mounted")
class VfsMounted(Payload):
    """A file system mounted at ``path`` (world state; the kernel's own /proc, /dev, /tmp never are)."""

    path: str  # the mount point, normalised
    kind: str
    source: str = ""
    readonly: bool = False
    pid: int = 0


@event("vfs.unmounted")
class VfsUnmounted(Payload):
    path: str
    pid: int = 0
