"""The FUSE kernel protocol (``<linux/fuse.h>``), spoken directly on a ``/dev/fuse`` fd.

Why not libfuse (mfusepy, pyfuse3): the kernel process must own the connection as a plain fd it
can hand to a sandbox's stage, serve several mounts at once, and send invalidations. mfusepy
runs ``fuse_main_real``, which mounts by path and installs process-wide SIGINT/SIGTERM/SIGHUP
handlers (the kernel's own); pyfuse3 holds one session per process and needs trio. The wire
protocol is small and stable: fixed little-endian structs after a 40-byte request header.

We answer as protocol 7.31: no request extensions, no STATX, no READDIRPLUS (not negotiated).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat as st
import struct
from dataclasses import dataclass

MAJOR, MINOR = 7, 31
ROOT_ID = 1
MAX_WRITE = 128 * 1024
BUFSIZE = MAX_WRITE + 4096 * 2  # a WRITE's header and data fit; the kernel wants at least 8 KiB

# opcodes
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE = 8, 9, 10, 11, 12, 13, 14, 15, 16
STATFS, RELEASE, FSYNC, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = (
    17,
    18,
    20,
    25,
    26,
    27,
    28,
    29,
    30,
)
ACCESS, CREATE, INTERRUPT, DESTROY, BATCH_FORGET, RENAME2 = 34, 35, 36, 38, 42, 45
NO_REPLY = frozenset({FORGET, BATCH_FORGET, INTERRUPT})

# INIT flags we ask for (fuse_init_out.flags); FUSE_WRITEBACK_CACHE is deliberately absent
ASYNC_READ, ATOMIC_O_TRUNC, BIG_WRITES, AUTO_INVAL_DATA = 1 << 0, 1 << 3, 1 << 5, 1 << 12
PARALLEL_DIROPS, MAX_PAGES = 1 << 18, 1 << 22
WANTED = ASYNC_READ | ATOMIC_O_TRUNC | BIG_WRITES | AUTO_INVAL_DATA | PARALLEL_DIROPS | MAX_PAGES

# setattr valid bits
FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE, FATTR_FH = 1, 2, 4, 8, 64
GETATTR_FH = 1
RENAME_NOREPLACE = 1

NOTIFY_INVAL_INODE = 2

HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid total_extlen padding
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
ATTR = struct.Struct(
    "<QQQQQQIIIIIIIIII"
)  # ino size blocks a/m/ctime, nsecs, mode nlink uid gid rdev blksize flags
ENTRY = struct.Struct("<QQQQII")  # nodeid generation entry_valid attr_valid (+nsecs), then ATTR
ATTR_OUT = struct.Struct("<QII")  # attr_valid attr_valid_nsec dummy, then ATTR
OPEN_OUT = struct.Struct("<QII")  # fh open_flags padding
INIT_IN = struct.Struct("<IIII")  # major minor max_readahead flags
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")  # ... max_pages map_alignment flags2 unused[7]
READ_IN = struct.Struct("<QQIIQII")  # fh offset size read_flags lock_owner flags padding
WRITE_IN = READ_IN  # fh offset size write_flags lock_owner flags padding, then the data
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
CREATE_IN = struct.Struct("<IIII")  # flags mode umask open_flags
MKDIR_IN = struct.Struct("<II")  # mode umask
MKNOD_IN = struct.Struct("<IIII")  # mode rdev umask padding
OPEN_IN = struct.Struct("<II")
FH_IN = struct.Struct("<Q")  # the fh first: release, flush, fsync, releasedir
GETATTR_IN = struct.Struct("<IIQ")  # getattr_flags dummy fh
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
LINK_IN = struct.Struct("<Q")
ACCESS_IN = struct.Struct("<II")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
FORGET_ONE = struct.Struct("<QQ")
WRITE_OUT = struct.Struct("<II")
KSTATFS = struct.Struct("<QQQQQIII28x")  # blocks bfree bavail files ffree bsize namelen frsize
DIRENT = struct.Struct("<QQII")  # ino off namelen type, then the name padded to 8
INVAL_INODE = struct.Struct("<Qqq")  # ino off len


@dataclass(slots=True)
class Request:
    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int
    body: memoryview


def parse(buf: bytes) -> Request:
    """One request as read from the fd (a read returns exactly one)."""
    length, opcode, unique, nodeid, uid, gid, pid, _ext, _pad = HEADER.unpack_from(buf)
    return Request(opcode, unique, nodeid, uid, gid, pid, memoryview(buf)[HEADER.size : length])


def names(body: memoryview, count: int) -> list[bytes]:
    """``count`` NUL-terminated names at the start of ``body``."""
    parts = bytes(body).split(b"\0", count)
    if len(parts) < count + 1:  # each name must end with its NUL
        raise ValueError("truncated names")
    return parts[:count]


def reply(unique: int, payload: bytes = b"", error: int = 0) -> bytes:
    """A reply frame; ``error`` is a positive errno (sent negated, with no payload)."""
    if error:
        return OUT_HEADER.pack(OUT_HEADER.size, -error, unique)
    return OUT_HEADER.pack(OUT_HEADER.size + len(payload), 0, unique) + payload


def notify_inval_inode(nodeid: int, off: int = 0, length: int = 0) -> bytes:
    """Drop the page cache of ``nodeid`` from ``off`` (all of it with length 0; attrs only with off -1)."""
    body = INVAL_INODE.pack(nodeid, off, length)
    return OUT_HEADER.pack(OUT_HEADER.size + len(body), NOTIFY_INVAL_INODE, 0) + body


def split_time(ns: int) -> tuple[int, int]:
    return ns // 1_000_000_000, ns % 1_000_000_000


TYPE_BITS = {"file": st.S_IFREG, "dir": st.S_IFDIR, "symlink": st.S_IFLNK, "chardev": st.S_IFCHR}


def attr(nodeid: int, s: dict, uid: int, gid: int) -> bytes:
    """A ``fuse_attr`` from a VFS ``stat`` result, owned by ``uid``/``gid`` (the caller: git checks it)."""
    size = int(s.get("size", 0))
    secs, nsecs = split_time(int(s.get("mtime_ns") or 0))
    mode = TYPE_BITS.get(s.get("kind", "file"), st.S_IFREG) | (int(s.get("mode", 0o644)) & 0o7777)
    nlink = int(s.get("nlink", 1)) or 1
    blocks = (size + 511) // 512
    return ATTR.pack(
        nodeid, size, blocks, secs, secs, secs, nsecs, nsecs, nsecs, mode, nlink, uid, gid, 0, 4096, 0
    )


def entry(nodeid: int, a: bytes, timeout: float) -> bytes:
    secs, nsecs = int(timeout), int((timeout % 1) * 1e9)
    return ENTRY.pack(nodeid, 0, secs, secs, nsecs, nsecs) + a


def attr_out(a: bytes, timeout: float) -> bytes:
    return ATTR_OUT.pack(int(timeout), int((timeout % 1) * 1e9), 0) + a


def dirent(ino: int, off: int, name: bytes, dtype: int = 0) -> bytes:
    raw = DIRENT.pack(ino, off, len(name), dtype) + name
    return raw + b"\0" * (-len(raw) % 8)


def init_reply(body: memoryview) -> tuple[bytes, int]:
    """Our INIT answer and the protocol minor in force (ours or the kernel's, the lower)."""
    major, minor, max_readahead, flags = INIT_IN.unpack_from(body)
    if major != MAJOR:
        raise ValueError(f"FUSE protocol {major}.{minor}: only {MAJOR}.x is spoken here")
    minor = min(minor, MINOR)
    out = INIT_OUT.pack(
        MAJOR, minor, max_readahead, flags & WANTED, 16, 12, MAX_WRITE, 1, MAX_WRITE // 4096, 0, 0
    )
    return out, minor


# -- mounting (root, or the owner of a user namespace): used by the stage plan and the tests ---------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2


def open_dev() -> int:
    """A fresh ``/dev/fuse`` connection fd (close-on-exec; pass it on explicitly)."""
    return os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)


def mount_options(fd: int, uid: int = 0, gid: int = 0) -> str:
    """The mount(2) data for a connection: no ``default_permissions`` (the kernel checks), others allowed
    (a sandbox's user namespace is not the mounter's)."""
    return f"fd={fd},rootmode=40000,user_id={uid},group_id={gid},allow_other,max_read={MAX_WRITE}"


def mount(fd: int, target: str, *, uid: int = 0, gid: int = 0) -> None:
    """Mount connection ``fd`` at ``target`` (in the caller's mount namespace)."""
    data = mount_options(fd, uid, gid).encode()
    flags = MS_NOSUID | MS_NODEV
    if _libc.mount(b"agentos", target.encode(), b"fuse.agentos", flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount fuse at {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    """Lazily detach ``target`` (a dead connection's mount included)."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
