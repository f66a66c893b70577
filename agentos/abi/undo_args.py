"""Argument schemas of ``undo``, ``redo`` and ``undo_list`` (``kernel/sysundo.py``). Part of the ABI,
beside ``history_args.py`` (``fs_undo``'s): bounded, so an untrusted caller cannot ask for the world."""

from __future__ import annotations

from typing import Annotated

import msgspec

from agentos.abi.syscalls import Args

MAX_OPS = 1000  # operations one undo or redo may take, and rows one listing returns

Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_OPS)]
Pid = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class UndoArgs(Args):
    """Undo the last ``n`` operations of the kernel (``pid`` None) or of one process."""

    n: Count = 1
    pid: Pid | None = None
    dry_run: bool = False


class RedoArgs(Args):
    """Re-apply the last ``n`` undos (of ``pid``'s operations, when given) not redone yet."""

    n: Count = 1
    pid: Pid | None = None
    dry_run: bool = False


class UndoListArgs(Args):
    """The last ``limit`` operations (of ``pid``), newest first, each with what became of it."""

    pid: Pid | None = None
    limit: Count = 20
