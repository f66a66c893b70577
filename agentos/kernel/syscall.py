"""The syscall table: name -> (argument schema, right needed, handler, journal rule).

Read it top to bottom (as xv6's syscall.c). ``journal`` says what an agent's call leaves in
its journal: ``result`` (a ``sys.done`` record carrying the result), ``counter`` (nothing:
the result is fixed for the caller, so only the call counter advances) or ``none`` (an admin
call, never made by a replayed agent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentos.abi import syscalls as sc
from agentos.kernel import sysadmin, sysproc
from agentos.kernel.calls import RIGHT_ADMIN, RIGHT_PROC


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str
    schema: type[sc.Args]
    right: str
    handler: Callable[..., Any]
    journal: str = "result"


def _table(*rows: Syscall) -> dict[str, Syscall]:
    return {row.name: row for row in rows}


SYSCALLS: dict[str, Syscall] = _table(
    # processes
    Syscall("getpid", sc.NoArgs, RIGHT_PROC, sysproc.sys_getpid, journal="counter"),
    Syscall("getppid", sc.NoArgs, RIGHT_PROC, sysproc.sys_getppid),
    Syscall("spawn", sc.SpawnArgs, RIGHT_PROC, sysproc.sys_spawn),
    Syscall("exit", sc.ExitArgs, RIGHT_PROC, sysproc.sys_exit),
    Syscall("wait", sc.WaitArgs, RIGHT_PROC, sysproc.sys_wait),
    Syscall("kill", sc.KillArgs, RIGHT_PROC, sysproc.sys_kill),
    Syscall("ps", sc.PsArgs, RIGHT_PROC, sysproc.sys_ps),
    Syscall("continue_as_new", sc.ContinueAsNewArgs, RIGHT_PROC, sysproc.sys_continue_as_new),
    # scheduling and time
    Syscall("sched_yield", sc.NoArgs, RIGHT_PROC, sysproc.sys_sched_yield, journal="counter"),
    Syscall("sleep", sc.SleepArgs, RIGHT_PROC, sysproc.sys_sleep),
    Syscall("time", sc.NoArgs, RIGHT_PROC, sysproc.sys_time),
    Syscall("monotonic", sc.NoArgs, RIGHT_PROC, sysproc.sys_monotonic),
    Syscall("random", sc.RandomArgs, RIGHT_PROC, sysproc.sys_random),
    # console
    Syscall("write_console", sc.WriteConsoleArgs, RIGHT_PROC, sysproc.sys_write_console),
    # administration
    Syscall("status", sc.NoArgs, RIGHT_ADMIN, sysadmin.sys_status, journal="none"),
    Syscall("shutdown", sc.ShutdownArgs, RIGHT_ADMIN, sysadmin.sys_shutdown, journal="none"),
    Syscall("events", sc.EventsArgs, RIGHT_ADMIN, sysadmin.sys_events, journal="none"),
    Syscall("logs", sc.LogsArgs, RIGHT_ADMIN, sysadmin.sys_logs, journal="none"),
    Syscall("state_hash", sc.NoArgs, RIGHT_ADMIN, sysadmin.sys_state_hash, journal="none"),
    Syscall("verify", sc.NoArgs, RIGHT_ADMIN, sysadmin.sys_verify, journal="none"),
)
