"""The seccomp filter of a process agent, compiled once per policy with libseccomp (``pyseccomp``).

The filter allows by default and denies a list of calls an agent has no business making: debugging
or reading other processes, mounting, changing namespaces, loading kernel code, keyrings, perf,
raw and packet sockets, io_uring (whose ops would slip past this filter), and the like (``DENY``).
A denied call fails with ``EPERM`` (``action="errno"``) or kills the agent with ``SIGSYS``
(``action="kill"``, a typed fault). ``clone3`` always fails with ``ENOSYS``: its flags live in
memory a filter cannot read, and libc then falls back to ``clone``, whose namespace flags are
denied. A syscall from a foreign architecture (32-bit ``int 0x80`` on x86_64) kills the process.

``bpf_program(...)`` returns the classic-BPF bytes bubblewrap loads with ``--seccomp FD``
(after it has set ``no_new_privs``), so no filter is ever loaded into the kernel's own process.
"""

from __future__ import annotations

import errno
import functools
import os
import socket

DENY: tuple[str, ...] = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at",
    "reboot", "swapon", "swapoff", "acct", "syslog", "vhangup", "quotactl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "iopl", "ioperm",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip
# clone(2) flags that would make a new namespace
CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
SOCK_TYPE_MASK = 0xF


class SeccompUnavailable(RuntimeError):
    """pyseccomp or the system libseccomp is missing or unusable."""


def _lib():  # noqa: ANN202 - the module is optional at import time
    try:
        import pyseccomp
    except (ImportError, OSError) as e:  # OSError: libseccomp.so.2 not found by ctypes
        raise SeccompUnavailable(f"pyseccomp unusable: {e}") from e
    return pyseccomp


@functools.cache
def bpf_program(action: str = "errno", no_ip: bool = True, extra: tuple[str, ...] = ()) -> bytes:
    """The BPF bytes of the filter. ``no_ip`` also denies AF_INET/AF_INET6 sockets."""
    sc = _lib()
    deny = sc.KILL_PROCESS if action == "kill" else sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in DENY + extra:
        try:
            f.add_rule(deny, name)
        except (OSError, ValueError):
            continue  # not a syscall on this architecture: nothing to deny
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NS_FLAGS:
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(deny, "socket", sc.Arg(0, sc.EQ, socket.AF_PACKET))
    f.add_rule(deny, "socket", sc.Arg(1, sc.MASKED_EQ, SOCK_TYPE_MASK, socket.SOCK_RAW))
    if no_ip:
        for family in (socket.AF_INET, socket.AF_INET6):
            f.add_rule(deny, "socket", sc.Arg(0, sc.EQ, family))
    fd = os.memfd_create("agentos-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "rb") as out:
            f.export_bpf(out)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def available() -> tuple[bool, str]:
    """Whether a filter can be compiled here, and why not."""
    try:
        bpf_program()
    except (SeccompUnavailable, OSError) as e:
        return False, str(e)
    return True, "libseccomp"
