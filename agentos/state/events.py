"""Typed, versioned event payloads, one struct per kind, and their (de)serialisation.

Each payload class names its ``kind`` and ``version``; ``encode`` gives the canonical JSON
text stored in the log, ``decode`` reads it back through the upcasters registered for older
versions (the log is never rewritten); an event newer than this code knows is refused. Kinds
are grouped by subsystem prefix: ``kernel.``, ``proc.``, ``sys.`` (the syscall journal),
``console.``, ``group.``, ``cap.``, ``vfs.`` (files: ``state/vfs.py``), and the ledger's ``ledger.``
and ``audit.``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from agentos.errors import InvalidArgument


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):  # no cycles
    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1


KINDS: dict[str, type[Payload]] = {}
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def event(kind: str, version: int = 1) -> Callable[[type[Payload]], type[Payload]]:
    def register(cls: type[Payload]) -> type[Payload]:
        cls.KIND, cls.VERSION = kind, version
        KINDS[kind] = cls
        return cls

    return register


# -- kernel ------------------------------------------------------------------------------


@event("kernel.booted")
class KernelBooted(Payload):
    boot: int
    version: str
    os_pid: int
    hash_seed: int
    durability: str


@event("kernel.shutdown")
class KernelShutdown(Payload):
    boot: int
    killed_agents: bool


# -- processes ---------------------------------------------------------------------------


@event("proc.spawned", 2)
class ProcSpawned(Payload):
    pid: int
    ppid: int
    name: str
    kind: str  # init | session | agent
    target: str = ""
    entry: str = ""
    argv: list[str] = []
    code: str = ""  # blob hash of the agent's source as read at spawn
    filename: str = ""
    package: str = ""
    caps_opaque: bool = False  # it may use its capabilities but not list them
    group: str = ""  # its resource group; "" = its parent's


UPCASTERS[("proc.spawned", 1)] = lambda raw: raw  # v1 had no caps_opaque: the default fills it


@event("proc.started")
class ProcStarted(Payload):
    pid: int


@event("proc.stopped")
class ProcStopped(Payload):
    pid: int
    reason: str = "SIGSTOP"


@event("proc.continued")
class ProcContinued(Payload):
    pid: int


@event("proc.signaled")
class ProcSignaled(Payload):
    pid: int
    sig: str
    sender: int
    kill_at_ns: int | None = None  # TERM/INT/HUP to an agent: KILL follows at this wall time


@event("proc.exited")
class ProcExited(Payload):
    pid: int
    status: int
    signal: str | None = None
    fault: str | None = None
    reason: str = ""


@event("proc.reparented")
class ProcReparented(Payload):
    pid: int
    ppid: int


@event("proc.reaped")
class ProcReaped(Payload):
    pid: int
    by: int


@event("proc.resume_started")
class ProcResumeStarted(Payload):
    pid: int


@event("proc.resumed")
class ProcResumed(Payload):
    pid: int
    replayed_calls: int


@event("proc.quarantined")
class ProcQuarantined(Payload):
    pid: int
    reason: str


@event("proc.continued_as_new")
class ProcContinuedAsNew(Payload):
    pid: int
    argv: list[str]
    epoch: int


# -- the syscall journal -----------------------------------------------------------------


@event("sys.blocked")
class SyscallBlocked(Payload):
    """A blocking call's intent, journaled on entry (a resumed sleep keeps its deadline)."""

    pid: int
    epoch: int
    task: int
    n: int
    call: str
    deadline_ns: int | None = None


@event("sys.done")
class SyscallDone(Payload):
    pid: int
    epoch: int
    task: int
    n: int
    call: str
    args_digest: str
    result: Any = None
    result_bytes: bool = False  # result is base64 of bytes
    error: dict[str, Any] | None = None
    cancelled: bool = False
    signal: str | None = None  # the signal that cancelled it


# -- console -----------------------------------------------------------------------------


@event("console.write")
class ConsoleWrite(Payload):
    pid: int
    console: int  # whose console: a child agent writes to its parent agent's, as Unix stdio
    stream: str
    blob: str
    size: int
    n: int = -1  # call counter at which print() output was produced, -1 for write_console
    epoch: int = 0


# -- files (state/vfs.py; docs/vfs.md) -------------------------------------------------------
# Inode numbers come from the ledger (``Ledger.next_ino``, bumped by mkfs and created). ``pid``
# is the process whose call it was (fd events: whose fd table). Content travels as the hash of
# an encoded ``store.chunks.Manifest`` blob, written with the event, as are its chunks.


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


@event("vfs.opened")
class VfsOpened(Payload):
    pid: int
    fd: int
    ino: int
    flags: int  # state.vfs.READ | WRITE | APPEND
    offset: int = 0


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


# -- resource groups ------------------------------------------------------------------------


@event("group.created")
class GroupCreated(Payload):
    name: str
    parent: str | None
    limits: dict[str, float] = {}
    by: int = 0


@event("group.limits")
class GroupLimitsSet(Payload):
    name: str
    limits: dict[str, float]
    by: int = 0


# -- capabilities (the world's grants; revocations and expiries are ledger events below) ----


@event("cap.granted")
class CapGranted(Payload):
    """A capability came to exist: derived from ``parent`` (None only for the boot's root), held by
    ``holder``. ``chain`` is its ancestry, root first; ``expires_ns`` and ``max_uses`` are its own
    limits (the check also applies every ancestor's); ``origin`` says how: boot, session, policy,
    spawn, delegate, approval."""

    cap: int
    holder: int
    resource: str
    rights: list[str]
    parent: int | None
    chain: list[int]
    origin: str
    by: int  # the pid that caused it
    depth: int = 0  # further delegations allowed
    expires_ns: int | None = None
    max_uses: int | None = None
    limits: list[list[int]] = []  # [cap id, max uses] of itself and every ancestor with a use limit
    note: str = ""


@event("cap.transferred")
class CapTransferred(Payload):
    """A capability given away whole: ``to`` holds it now, ``sender`` keeps nothing."""

    cap: int
    sender: int
    to: int


# -- ledger (global, monotone: never rewound) ---------------------------------------------


@event("audit.denied", 2)
class AccessDenied(Payload):
    """A call refused for lack of a capability (the audit trail lives in the ledger)."""

    pid: int
    call: str
    right: str
    resource: str = ""


UPCASTERS[("audit.denied", 1)] = lambda raw: raw  # v1 had no resource: the default fills it


@event("cap.revoked")
class CapRevoked(Payload):
    """Revoked with everything derived from it; in the ledger, so no rewind revives it."""

    cap: int
    by: int
    reason: str = ""


@event("cap.expired")
class CapExpired(Payload):
    """Noticed past its expiry (expiry itself needs no event: checks read the real clock)."""

    cap: int


@event("cap.used")
class CapUsed(Payload):
    """One authorised call charged to capabilities with a use limit (``caps``: the limited ones
    on the chain), so a rewind never refunds a use."""

    caps: list[int]


@event("secret.changed")
class SecretChanged(Payload):
    """A secret set or removed by a person: its name and size, never its bytes."""

    name: str
    size: int
    by: int
    removed: bool = False


@event("secret.read")
class SecretRead(Payload):
    """An agent read a secret (it held a capability for it): the audit trail, no value."""

    name: str
    pid: int


@event("approval.requested")
class ApprovalRequested(Payload):
    id: int
    pid: int
    resource: str
    rights: list[str]
    reason: str
    deadline_ns: int | None = None


@event("approval.decided")
class ApprovalDecided(Payload):
    """A person's answer (or the request's end: ``outcome`` approved, denied, expired, cancelled)."""

    id: int
    outcome: str
    by: int
    cap: int | None = None
    duration_s: float | None = None
    reason: str = ""


@event("ledger.cpu")
class CpuCharged(Payload):
    pid: int
    ns: int


_encoder = msgspec.json.Encoder(order="deterministic")


def encode(payload: Payload) -> bytes:
    return _encoder.encode(payload)


_decoders: dict[str, msgspec.json.Decoder] = {}


def decode(kind: str, version: int, text: bytes) -> Payload:
    cls = KINDS.get(kind)
    if cls is None:
        raise KeyError(f"unknown event kind {kind!r}")
    if version > cls.VERSION:
        raise InvalidArgument(
            f"event kind {kind!r} version {version} was written by a newer AgentOS (this one reads up to {cls.VERSION})",
            code="EPROTONOSUPPORT",
        )
    if version != cls.VERSION:
        raw = msgspec.json.decode(text)
        while version < cls.VERSION:
            raw = UPCASTERS[(kind, version)](raw)
            version += 1
        return msgspec.convert(raw, cls)
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(cls)
    return dec.decode(text)
