"""Syscall names and argument schemas — the part of the ABI both sides agree on.

Each schema is a msgspec Struct; the kernel converts the untrusted ``args`` map into it
(``decode_args``), so a wrong type, a missing field, an unknown field or an out-of-range
value is a typed ``InvalidArgument`` before any handler runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from agentos import param
from agentos.errors import InvalidArgument

Pid = Annotated[int, msgspec.Meta(ge=-1, le=2**62)]
Text = Annotated[str, msgspec.Meta(max_length=param.MAX_ARG_BYTES)]
Name = Annotated[str, msgspec.Meta(max_length=256)]


class Args(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class NoArgs(Args):
    pass


class HelloArgs(Args):
    abi: int
    client: Name = "client"
    cwd: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Limits = Annotated[dict[Annotated[str, msgspec.Meta(max_length=32)], float], msgspec.Meta(max_length=16)]
Rights = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=32)]], msgspec.Meta(min_length=1, max_length=16)
]
CapId = Annotated[int, msgspec.Meta(ge=1, le=2**62)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=param.MAX_SLEEP_SECONDS)]


class CapSpec(Args):
    """A capability asked for by narrowing one the caller holds: ``cap`` names it (else any held
    capability that covers the request); omitted fields keep the source's value."""

    resource: Pattern | None = None
    rights: Rights | None = None
    cap: CapId | None = None
    expires_in: Seconds | None = None
    depth: Annotated[int, msgspec.Meta(ge=0, le=16)] | None = None
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None


class SpawnArgs(Args):
    target: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    argv: Annotated[list[Text], msgspec.Meta(max_length=param.MAX_ARGV)] = []
    name: Name | None = None
    caps: Annotated[list[CapSpec], msgspec.Meta(max_length=64)] | None = None  # None: inherit (or policy)
    grants: Annotated[list[CapSpec], msgspec.Meta(max_length=64)] = []  # and these, on top (narrowed too)
    opaque: bool = False  # the child cannot list what it holds
    limits: Limits | None = None  # put the child in a new resource group (under its parent's) with these
    root: Path | None = None  # the child's "/": a directory of the versioned tree (kernel/vfs/view.py)
    # a real Linux program instead of an SDK agent: target is the command, argv its arguments
    kind: Literal["agent", "process"] = "agent"
    restart: Literal["never", "on-failure", "always"] | None = None  # process only (default never)
    profile: Literal["minimal", "full"] | None = None  # process only: the sandbox preset


class GroupLimitArgs(Args):
    group: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    limits: Limits


class CapDelegateArgs(Args):
    to: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    spec: CapSpec


class CapTransferArgs(Args):
    cap: CapId
    to: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class CapRevokeArgs(Args):
    cap: CapId
    reason: Annotated[str, msgspec.Meta(max_length=512)] = ""


class CapRequestArgs(Args):
    resource: Pattern
    rights: Rights
    reason: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    timeout: Seconds | None = None


class CapsArgs(Args):
    pid: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class AuditArgs(Args):
    pid: Pid | None = None
    denied: bool = False
    since: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class ApprovalsArgs(Args):
    all: bool = False


class ApproveArgs(Args):
    id: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    duration: Seconds | None = None  # how long the grant lasts (default param.APPROVAL_DEFAULT_SECONDS)


SecretName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]


class SecretNameArgs(Args):
    name: SecretName


class SecretSetArgs(Args):
    name: SecretName
    value: Annotated[bytes, msgspec.Meta(min_length=1, max_length=65536)]


class DenyArgs(Args):
    id: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    reason: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class ExitArgs(Args):
    status: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0


class WaitArgs(Args):
    pid: Pid = -1
    nohang: bool = False
    timeout: Annotated[float, msgspec.Meta(ge=0, le=param.MAX_SLEEP_SECONDS)] | None = None


class KillArgs(Args):
    pid: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    sig: Annotated[str, msgspec.Meta(max_length=16)] | Annotated[int, msgspec.Meta(ge=0, le=64)] = "TERM"


class SleepArgs(Args):
    seconds: Annotated[float, msgspec.Meta(ge=0, le=param.MAX_SLEEP_SECONDS)]


class RandomArgs(Args):
    n: Annotated[int, msgspec.Meta(ge=0, le=param.MAX_RANDOM_BYTES)]


class WriteConsoleArgs(Args):
    data: Annotated[str, msgspec.Meta(max_length=param.MAX_CONSOLE_WRITE)]
    stream: Literal["stdout", "stderr"] = "stdout"  # (a pattern's "$" also matched "stdout\n")


class PsArgs(Args):
    all: bool = False


class ContinueAsNewArgs(Args):
    argv: Annotated[list[Text], msgspec.Meta(max_length=param.MAX_ARGV)] = []


class EventsArgs(Args):
    since: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 0  # SQLite integers are 64-bit
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    follow: bool = False
    pid: Pid | None = None
    kind: Name | None = None
    branch: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None  # that branch's history (lineage)


class LogsArgs(Args):
    pid: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    follow: bool = False


class ShutdownArgs(Args):
    kill: bool = False


# -- the file system (kernel/sysfile.py, sysfd.py) --------------------------------------------------

Path = Annotated[str, msgspec.Meta(min_length=1, max_length=param.MAX_PATH, pattern=r"^/[^\x00]*\Z")]
"""An absolute VFS path, with no NUL."""
Mode = Annotated[int, msgspec.Meta(ge=0, le=0o7777)]
Fd = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
OpenFlag = Literal["read", "write", "append", "create", "exclusive", "truncate"]


class PathArgs(Args):
    path: Path


class MountArgs(Args):
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^/[^\x00]*\Z")]  # a host dir
    path: Path  # the mount point in the tree
    readonly: bool = False
    kind: Literal["host"] = "host"


class MkdirArgs(Args):
    path: Path
    mode: Mode = 0o755


class OpenArgs(Args):
    path: Path
    flags: Annotated[list[OpenFlag], msgspec.Meta(max_length=6)] = msgspec.field(
        default_factory=lambda: ["read"]
    )
    mode: Mode = 0o644  # of a file it creates


class FdArgs(Args):
    fd: Fd


class WriteArgs(Args):
    fd: Fd
    data: Annotated[bytes, msgspec.Meta(max_length=param.MAX_ARG_BYTES)]


class ReadArgs(Args):
    fd: Fd
    n: Annotated[int, msgspec.Meta(ge=0, le=param.MAX_ARG_BYTES)]


class SeekArgs(Args):
    fd: Fd
    offset: Annotated[int, msgspec.Meta(ge=-(2**62), le=2**62)]
    whence: Literal["set", "cur", "end"] = "set"


class RenameArgs(Args):
    src: Path
    dst: Path


# links, sizes, modes and fd copies (kernel/syslink.py, sysfd.py)

Size = Annotated[int, msgspec.Meta(ge=0, le=2**62)]  # EFBIG past param.MAX_FILE_BYTES (the handler's)


class StatArgs(Args):
    path: Path
    follow: bool = True  # False: the symlink itself (lstat)


class LinkArgs(Args):
    """``link``: a second name ``dst`` for the file at ``src`` (symlink ``src``: the link itself)."""

    src: Path
    dst: Path


class SymlinkArgs(Args):
    """``symlink``: a link at ``path`` whose content is ``target`` (any text, resolved when used)."""

    target: Annotated[str, msgspec.Meta(min_length=1, max_length=param.MAX_PATH, pattern=r"^[^\x00]*\Z")]
    path: Path


class ChmodArgs(Args):
    path: Path
    mode: Mode


class TruncateArgs(Args):
    path: Path
    size: Size


class FtruncateArgs(Args):
    fd: Fd
    size: Size


class Dup2Args(Args):
    fd: Fd
    new_fd: Fd


class WatchArgs(Args):
    """``watch`` (kernel/syswatch.py): changes at ``path`` (and below it with ``recursive``) after ``since``."""

    path: Path
    since: Annotated[int, msgspec.Meta(ge=0, le=2**62)] | None = None  # None: from now
    recursive: bool = False
    timeout: Annotated[float, msgspec.Meta(ge=0, le=param.MAX_SLEEP_SECONDS)] | None = None  # None: forever
    limit: Annotated[int, msgspec.Meta(ge=1, le=param.WATCH_MAX_CHANGES)] = param.WATCH_MAX_CHANGES


# fs_transaction's ops (kernel/systxn.py): a list of maps tagged by "op"


class TxnWrite(Args, tag_field="op", tag="write"):
    """Replace the file's content with ``data`` (``append``: add it at the end), creating the file."""

    path: Path
    data: Annotated[bytes, msgspec.Meta(max_length=param.MAX_ARG_BYTES)]
    append: bool = False
    mode: Mode = 0o644  # of a file it creates


class TxnMkdir(Args, tag_field="op", tag="mkdir"):
    path: Path
    mode: Mode = 0o755


class TxnUnlink(Args, tag_field="op", tag="unlink"):
    path: Path


class TxnRmdir(Args, tag_field="op", tag="rmdir"):
    path: Path


class TxnRename(Args, tag_field="op", tag="rename"):
    src: Path
    dst: Path


TxnOp = TxnWrite | TxnMkdir | TxnUnlink | TxnRmdir | TxnRename


class FsTransactionArgs(Args):
    ops: Annotated[list[TxnOp], msgspec.Meta(max_length=param.TXN_MAX_OPS)]


# versions, restore and undo (kernel/sysversion.py)


class ProcArgs(Args):
    pid: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


_converters: dict[type, Any] = {}


def decode_args(schema: type[Args], raw: Any) -> Args:
    """Validate untrusted syscall arguments into their schema, or raise InvalidArgument."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"syscall arguments must be a map, not {type(raw).__name__}")
    try:
        args = msgspec.convert(raw, schema, strict=True)
        _check_text(args)  # events hold strings as UTF-8 JSON: no lone surrogates (only agents can send one)
    except msgspec.ValidationError as exc:  # its text may quote a field name: keep it valid Unicode
        raise InvalidArgument(str(exc).encode("utf-8", "backslashreplace").decode()) from None
    except UnicodeEncodeError:  # from either line: convert encodes field names to look them up
        raise InvalidArgument("strings must be valid Unicode (no lone surrogates)") from None
    return args


def _check_text(args: Args) -> None:
    """JSON-encode each field of ``args`` but a top-level bytes one (UnicodeEncodeError for a lone
    surrogate): encoding a write's data would base64 it, ~1.5 ms per 512 KiB, to check no text."""
    for name in args.__struct_fields__:
        value = getattr(args, name)
        if value is not None and not isinstance(value, bytes | int | float):
            _json_encode(value)


_json_encode = msgspec.json.Encoder().encode
