"""openat2(2) through ctypes, the resolve flags, and probes for what this kernel offers (openat2
itself, reopening through /proc/self/fd, mount ids): the primitives of confined lookups."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import sys
from collections.abc import Callable

# linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

#: How a host mount resolves every path: beneath the root, no magic links, no mount crossings.
CONFINED = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV

SYS_OPENAT2 = 437  # the unified syscall table (5.1+): x86_64, aarch64, arm, riscv, ppc, s390 alike
_OPENAT2_ARCHES = frozenset({"x86_64", "aarch64", "arm64", "armv7l", "riscv64", "ppc64le", "ppc64", "s390x"})

MAX_HOPS = 40  # symlinks followed in one lookup, as the kernel's MAXSYMLINKS
PATH_MAX = 4096
NAME_MAX = 255
_RACE_TRIES = 16  # how often a lookup that lost a race (EAGAIN, a swapped entry) is tried again

_O_PATH = os.O_PATH | os.O_CLOEXEC
_OPEN_FLAGS = (
    os.O_ACCMODE
    | os.O_CREAT
    | os.O_EXCL
    | os.O_TRUNC
    | os.O_APPEND
    | os.O_DIRECTORY
    | os.O_NOFOLLOW
    | os.O_CLOEXEC
    | os.O_NONBLOCK
    | os.O_NOCTTY
    | os.O_SYNC
    | os.O_DSYNC
    | getattr(os, "O_LARGEFILE", 0)
)
_WRITE_FLAGS = os.O_CREAT | os.O_TRUNC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW_SIZE = ctypes.sizeof(_OpenHow)


@functools.lru_cache(maxsize=64)
def _how(flags: int, mode: int, resolve: int) -> _OpenHow:
    """An ``open_how``, made once per combination: the kernel only reads it, so threads may share it."""
    return _OpenHow(flags, mode, resolve)


@functools.cache
def _syscall() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux") or platform.machine() not in _OPENAT2_ARCHES:
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_OpenHow), ctypes.c_size_t]
    return fn


def openat2(dirfd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """``openat2(2)``: open ``path`` relative to ``dirfd`` under the ``RESOLVE_*`` rules; returns the fd.

    Raises the ``OSError`` of the errno (ENOSYS where the kernel or platform has no openat2), and
    ``ValueError`` for a NUL byte in the path. ``mode`` must be 0 unless ``flags`` has ``O_CREAT``.
    EINTR is retried; EAGAIN (a racing rename seen during ``..``) is the caller's to retry.
    """
    fn = _syscall()
    raw = os.fsencode(path)
    if fn is None:
        raise OSError(errno.ENOSYS, "openat2 is not available on this platform", os.fsdecode(raw))
    if b"\0" in raw:
        raise ValueError("embedded null byte")
    how = _how(flags, mode, resolve)
    while True:
        fd = fn(SYS_OPENAT2, dirfd, raw, how, _HOW_SIZE)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), os.fsdecode(raw))


@functools.cache
def openat2_available() -> bool:
    """Whether this kernel has openat2 with the resolve flags a host mount uses (probed once)."""
    if _syscall() is None:
        return False
    try:
        probe = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.close(openat2(probe, ".", _O_PATH | os.O_DIRECTORY, 0, CONFINED))
        return True
    except OSError:  # ENOSYS (old kernel), EPERM (a seccomp filter), EINVAL (unknown resolve flags)
        return False
    finally:
        os.close(probe)


@functools.cache
def proc_reopen_available() -> bool:
    """Whether an ``O_PATH`` fd can be reopened through ``/proc/self/fd`` here (probed once)."""
    try:
        probe = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.close(os.open(f"/proc/self/fd/{probe}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        return True
    except OSError:
        return False
    finally:
        os.close(probe)


def _mnt_id(fd: int) -> int | None:
    """The mount id of an fd (``/proc/self/fdinfo``), or None where ``/proc`` cannot tell."""
    try:
        info = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(info, 4096)
    except OSError:
        return None
    finally:
        os.close(info)
    for line in data.splitlines():
        if line.startswith(b"mnt_id:"):
            return int(line.split()[1])
    return None
