"""Landlock, read from the launching process: which ABI the running kernel offers.

The rules themselves are applied by ``agentos-stage`` inside the sandbox (``stage.c``): a Landlock
domain forbids ``mount(2)``, so it has to come after bubblewrap has built the mounts, and it must
never be applied to the kernel's own process. Rights granted (the stage's ``-r``/``-w``):
read-only paths get execute, read file, read dir; read-write paths get every right the ABI knows;
with ``-N`` (ABI >= 4) TCP bind/connect are denied, with ``-S`` (ABI >= 6) signals and abstract
unix sockets are scoped to the sandbox.
"""

from __future__ import annotations

import ctypes
import functools

SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture (generic table)
LANDLOCK_CREATE_RULESET_VERSION = 1


@functools.cache
def abi_version() -> int:
    """Landlock's ABI version here; 0 when the kernel lacks it or it is disabled at boot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        v = libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                         ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))  # fmt: skip
    except (OSError, AttributeError):
        return 0
    return max(int(v), 0)
