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


# -- host mounts (kernel/vfs/hostmount.py): writes are pending in the open file, then published --------


@event("vfs.host_wrote")
class VfsHostWrote(Payload):
    """Bytes written through an fd on a host mount, pending in its open file until close or fsync
    publishes them (``data`` "" and ``length`` 0: a truncate to ``offset``, as O_TRUNC)."""

    pid: int
    fd: int
    offset: int
    data: str  # manifest hash of the written bytes
    length: int
    stored: int = 0  # bytes of new chunks it stored (charged to the writer's group)


@event("vfs.host_change")
class VfsHostChange(Payload):
    """A change to a host mount, recorded with what it destroys before it is made: the kernel makes
    it only once this event is durable (the output-commit rule), then records ``vfs.host_done``.
    ``before``/``after``: manifest hashes of the regular file's content before and after (None: no
    such file). ``op``: write (publish pending writes, create), mkdir, rmdir, unlink, rename (to
    ``to``), symlink (``to`` is its target)."""

    mount: str
    path: str  # inside the mount
    op: str
    pid: int
    before: str | None = None
    after: str | None = None
    to: str = ""
    file: int = 0  # the open file whose pending writes this publishes (its pending are cleared)
    cause: str = ""  # close | fsync | exit | undo | restore | a path call's name
    stored: int = 0  # bytes of new blobs stored for it (the before and after copies), charged


@event("vfs.host_done")
class VfsHostDone(Payload):
    """The host change recorded at seq ``change`` was made (``error`` "") or not (its POSIX code and
    message); ``note`` says what recovery after a restart found."""

    change: int
    error: str = ""
    note: str = ""
