"""The syscall table: name -> (argument schema, capability needed, handler, journal rule).

Read it top to bottom (as xv6's syscall.c). Every row names the resource and the right a caller
must hold a capability for (``agentos/caps/pattern.py``); the dispatcher checks it before the
handler runs, deny by default. The resource is fixed (``sys:proc``) or computed from the
validated arguments (``proc:<pid>`` for kill, ``fs:<path>`` for a file: the *physical* path, symlinks
and ``..`` resolved in the tree, ``kernel/fsaccess.py``), and so may the right
(``right_for``: ``open`` needs ``write`` when it may change the file, else ``read``). ``journal`` says what an agent's call leaves in
its journal: ``result`` (a ``sys.done`` record carrying the result), ``counter`` (nothing:
the result is fixed for the caller, so only the call counter advances), ``secret`` (a reference
to the secret read, never its value: replay re-reads the store) or ``none`` (an admin call, never
made by a replayed agent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentos.abi import export_args as xa
from agentos.abi import history_args as ha
from agentos.abi import syscalls as sc
from agentos.abi import undo_args as ua
from agentos.kernel import (
    bisect,
    exports,
    gc,
    past,
    pastdiff,
    query,
    sysadmin,
    syscap,
    sysfd,
    sysfile,
    syslink,
    sysmount,
    sysproc,
    sysprocagent,
    sysreplay,
    syssecret,
    systime,
    systxn,
    sysundo,
    sysversion,
    syswatch,
    verify,
)
from agentos.kernel.fsaccess import FsPath


@dataclass(frozen=True, slots=True)
class Syscall:
    name: str
    schema: type[sc.Args]
    resource: str | Callable[[Any], str]  # fixed, or computed from the validated arguments (FsPath: a path)
    right: str
    handler: Callable[..., Any]
    journal: str = "result"
    right_for: Callable[[Any], str] | None = None  # the right, when the arguments pick it (open)


def _table(*rows: Syscall) -> dict[str, Syscall]:
    return {row.name: row for row in rows}


def _target(a: Any) -> str:
    return f"proc:{a.pid}"


PROC, TIME, RANDOM, CONSOLE, CAP, FD, ADMIN = (
    "sys:proc",
    "sys:time",
    "sys:random",
    "sys:console",
    "sys:cap",
    "sys:fd",
    "admin",
)
# fs:<the physical path> (kernel/fsaccess.py): symlinks followed as the call follows them
FS, NAME, STAT = FsPath(), FsPath(follow=False), FsPath(follow=None)  # NAME: a final symlink itself
SRC = FsPath("src", follow=False)  # rename's and link's; their handlers check dst

SYSCALLS: dict[str, Syscall] = _table(
    # processes
    Syscall("getpid", sc.NoArgs, PROC, "self", sysproc.sys_getpid, journal="counter"),
    Syscall("getppid", sc.NoArgs, PROC, "self", sysproc.sys_getppid),
    Syscall("spawn", sc.SpawnArgs, PROC, "spawn", sysprocagent.sys_spawn),
    Syscall("exit", sc.ExitArgs, PROC, "self", sysproc.sys_exit),
    Syscall("wait", sc.WaitArgs, PROC, "wait", sysproc.sys_wait),
    Syscall("kill", sc.KillArgs, _target, "signal", sysproc.sys_kill),
    Syscall("ps", sc.PsArgs, PROC, "list", sysproc.sys_ps),
    Syscall("continue_as_new", sc.ContinueAsNewArgs, PROC, "self", sysproc.sys_continue_as_new),
    # scheduling and time
    Syscall("sched_yield", sc.NoArgs, PROC, "self", sysproc.sys_sched_yield, journal="counter"),
    Syscall("sleep", sc.SleepArgs, TIME, "read", sysproc.sys_sleep),
    Syscall("time", sc.NoArgs, TIME, "read", sysproc.sys_time),
    Syscall("monotonic", sc.NoArgs, TIME, "read", sysproc.sys_monotonic),
    Syscall("random", sc.RandomArgs, RANDOM, "read", sysproc.sys_random),
    # console
    Syscall("write_console", sc.WriteConsoleArgs, CONSOLE, "write", sysproc.sys_write_console),
    # files (by path: fs:<path>; by fd: sys:fd, then the mode the fd was opened with)
    Syscall("mkdir", sc.MkdirArgs, NAME, "write", sysfile.sys_mkdir),
    Syscall("open", sc.OpenArgs, FS, "write", sysfile.sys_open, right_for=sysfile.open_right),
    Syscall("write", sc.WriteArgs, FD, "use", sysfd.sys_write),
    Syscall("read", sc.ReadArgs, FD, "use", sysfd.sys_read),
    Syscall("seek", sc.SeekArgs, FD, "use", sysfd.sys_seek),
    Syscall("fsync", sc.FdArgs, FD, "use", sysfd.sys_fsync),
    Syscall("close", sc.FdArgs, FD, "use", sysfd.sys_close),
    Syscall("stat", sc.StatArgs, STAT, "list", sysfile.sys_stat),
    Syscall("readdir", sc.PathArgs, FS, "list", sysfile.sys_readdir),
    Syscall("unlink", sc.PathArgs, NAME, "write", sysfile.sys_unlink),
    Syscall("rmdir", sc.PathArgs, NAME, "write", sysfile.sys_rmdir),
    Syscall("rename", sc.RenameArgs, SRC, "write", sysfile.sys_rename),
    Syscall("dup", sc.FdArgs, FD, "use", sysfd.sys_dup),
    Syscall("dup2", sc.Dup2Args, FD, "use", sysfd.sys_dup2),
    Syscall("ftruncate", sc.FtruncateArgs, FD, "use", sysfd.sys_ftruncate),
    Syscall("truncate", sc.TruncateArgs, FS, "write", syslink.sys_truncate),
    Syscall("link", sc.LinkArgs, SRC, "write", syslink.sys_link),
    Syscall("symlink", sc.SymlinkArgs, NAME, "write", syslink.sys_symlink),
    Syscall("readlink", sc.PathArgs, NAME, "list", syslink.sys_readlink),
    Syscall("chmod", sc.ChmodArgs, FS, "write", syslink.sys_chmod),
    Syscall("watch", sc.WatchArgs, FS, "list", syswatch.sys_watch),
    Syscall(
        "fs_transaction",
        sc.FsTransactionArgs,
        systxn.txn_resource,
        "write",
        systxn.sys_fs_transaction,
        right_for=systxn.txn_right,
    ),
    # a file's past (kernel/sysversion.py): history and old bytes need read, a restore write;
    # an undo needs undo on proc:<pid>, then write on each path it changes
    Syscall("fs_history", ha.FsHistoryArgs, FS, "read", sysversion.sys_fs_history),
    Syscall("fs_read_version", ha.FsReadVersionArgs, FS, "read", sysversion.sys_fs_read_version),
    Syscall("fs_restore", ha.FsRestoreArgs, FS, "write", sysversion.sys_fs_restore),
    Syscall("fs_undo", ha.FsUndoArgs, sysversion.undo_resource, "undo", sysversion.sys_fs_undo),
    # the kernel's operations (kernel/sysundo.py): undo on proc:<pid>, or proc:all for everyone's
    Syscall("undo", ua.UndoArgs, sysundo.undo_resource, "undo", sysundo.sys_undo),
    Syscall("redo", ua.RedoArgs, sysundo.undo_resource, "undo", sysundo.sys_redo),
    Syscall("undo_list", ua.UndoListArgs, sysundo.undo_resource, "undo", sysundo.sys_undo_list),
    # capabilities
    Syscall("cap_list", sc.NoArgs, CAP, "list", syscap.sys_cap_list),
    Syscall("cap_delegate", sc.CapDelegateArgs, CAP, "delegate", syscap.sys_cap_delegate),
    Syscall("cap_transfer", sc.CapTransferArgs, CAP, "delegate", syscap.sys_cap_transfer),
    Syscall("cap_revoke", sc.CapRevokeArgs, CAP, "revoke", syscap.sys_cap_revoke),
    Syscall("cap_request", sc.CapRequestArgs, CAP, "request", syscap.sys_cap_request),
    # secrets (values never enter the log: the journal keeps a reference)
    Syscall(
        "secret_get", sc.SecretNameArgs, syssecret.secret_resource, "read", syssecret.sys_secret_get, "secret"
    ),
    # administration
    Syscall("status", sc.NoArgs, ADMIN, "status", sysadmin.sys_status, journal="none"),
    Syscall("shutdown", sc.ShutdownArgs, ADMIN, "shutdown", sysadmin.sys_shutdown, journal="none"),
    Syscall("mount", sc.MountArgs, ADMIN, "mount", sysmount.sys_mount, journal="none"),
    Syscall("umount", sc.PathArgs, ADMIN, "mount", sysmount.sys_umount, journal="none"),
    Syscall("mounts", sc.NoArgs, ADMIN, "mount", sysmount.sys_mounts, journal="none"),
    Syscall("at", ha.AtArgs, ADMIN, "history", past.sys_at, journal="none"),
    Syscall("query", ha.QueryArgs, ADMIN, "query", query.sys_query, journal="none"),
    Syscall("bisect", ha.BisectArgs, ADMIN, "query", bisect.sys_bisect, journal="none"),
    Syscall("diff", ha.DiffArgs, ADMIN, "history", pastdiff.sys_diff, journal="none"),
    Syscall("rewind", ha.RewindArgs, ADMIN, "rewind", systime.sys_rewind, journal="none"),
    Syscall("switch", ha.SwitchArgs, ADMIN, "rewind", systime.sys_switch, journal="none"),
    Syscall("restore", ha.CheckpointNameArgs, ADMIN, "rewind", systime.sys_restore, journal="none"),
    Syscall("branches", sc.NoArgs, ADMIN, "history", systime.sys_branches, journal="none"),
    Syscall("checkpoint", ha.CheckpointArgs, ADMIN, "checkpoint", systime.sys_checkpoint, journal="none"),
    Syscall("checkpoints", sc.NoArgs, ADMIN, "history", systime.sys_checkpoints, journal="none"),
    Syscall(
        "checkpoint_rm", ha.CheckpointNameArgs, ADMIN, "checkpoint", systime.sys_checkpoint_rm, journal="none"
    ),
    Syscall("export", xa.ExportArgs, ADMIN, "export", exports.sys_export, journal="none"),
    Syscall("gc", xa.GcArgs, ADMIN, "gc", gc.sys_gc, journal="none"),
    Syscall("replay_steps", ha.ReplayStepsArgs, ADMIN, "history", sysreplay.sys_replay_steps, journal="none"),
    Syscall("events", sc.EventsArgs, ADMIN, "events", sysadmin.sys_events, journal="none"),
    Syscall("logs", sc.LogsArgs, ADMIN, "logs", sysadmin.sys_logs, journal="none"),
    Syscall("state_hash", sc.NoArgs, ADMIN, "state_hash", sysadmin.sys_state_hash, journal="none"),
    Syscall("verify", sc.NoArgs, ADMIN, "verify", verify.sys_verify, journal="none"),
    Syscall("caps", sc.CapsArgs, ADMIN, "caps", syscap.sys_caps, journal="none"),
    Syscall("audit", sc.AuditArgs, ADMIN, "audit", syscap.sys_audit, journal="none"),
    Syscall("approvals", sc.ApprovalsArgs, ADMIN, "approvals", syscap.sys_approvals, journal="none"),
    Syscall("approve", sc.ApproveArgs, ADMIN, "approve", syscap.sys_approve, journal="none"),
    Syscall("deny", sc.DenyArgs, ADMIN, "approve", syscap.sys_deny, journal="none"),
    Syscall("groups", sc.NoArgs, ADMIN, "groups", sysadmin.sys_groups, journal="none"),
    Syscall("group_limit", sc.GroupLimitArgs, ADMIN, "groups", sysadmin.sys_group_limit, journal="none"),
    Syscall("secret_set", sc.SecretSetArgs, ADMIN, "secrets", syssecret.sys_secret_set, journal="none"),
    Syscall("secret_list", sc.NoArgs, ADMIN, "secrets", syssecret.sys_secret_list, journal="none"),
    Syscall("secret_rm", sc.SecretNameArgs, ADMIN, "secrets", syssecret.sys_secret_rm, journal="none"),
)
