"""Traps: the frozen objects an SDK agent yields to ask the kernel for a syscall.

``Trap`` is the only thing an agent's coroutine may yield. The kernel answers each trap by
resuming the coroutine with the result, or by throwing a typed error into it. ``trap()`` is
the one ``yield`` in the SDK (as curio's ``_kernel_trap``).
"""

from __future__ import annotations

import types
from collections.abc import Generator
from typing import Any

import msgspec


class Trap(msgspec.Struct, frozen=True):
    call: str
    args: dict[str, Any]
    cap: int | None = None  # the capability that must authorise it (a deputy acting for another)


@types.coroutine
def trap(call: str, args: dict[str, Any], cap: int | None = None) -> Generator[Trap, Any, Any]:
    return (yield Trap(call, args, cap))
