"""The kernel: boot, the event pipeline, syscall dispatch and parked callers. It stays small.

Principles (after curio's kernel.py):

* **State changes only through events.** ``emit`` stamps a payload with its sequence number
  and chain digest, applies it to live state, hands it to the group committer and tells the
  instruments (the agent runner, the socket server). Nothing else mutates state.
* **Handlers decide, the kernel applies.** ``call`` validates untrusted arguments against the
  table's schema, asks the authority whether the caller holds a capability for the resource and
  right the row names (deny by default; ``authz.py``), runs the handler, and emits the events it
  returned. A handler that needs to wait returns ``Block``; the kernel parks the caller and
  re-polls it when processes change or its deadline passes.
* **Nothing leaves before it is durable.** Runtimes await ``committer.durable(seq)`` before
  any reply or console line goes out; instruments that stream see only committed batches.

Discussion: the kernel does not import the runtimes (they sit above it). The agent runner and
the socket server attach themselves as instruments and receive every applied event through
``on_event``; that is how a KILL emitted here closes a coroutine there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agentos import __version__, param
from agentos.abi.syscalls import decode_args
from agentos.caps.policy import Policy, default_policy, load_policy
from agentos.errors import AgentOSError, InternalError, InvalidArgument, SecurityViolation
from agentos.kernel import authz, quota, sysproc, syswatch
from agentos.kernel.authz import ROOT_RESOURCE, ROOT_RIGHTS, Authority
from agentos.kernel.blobcache import BlobCache
from agentos.kernel.boot import load_state
from agentos.kernel.calls import Block, Caller, Done, Stream
from agentos.kernel.commit import GroupCommitter
from agentos.kernel.fsaccess import FsPath
from agentos.kernel.past import Past
from agentos.kernel.quota import Quotas
from agentos.kernel.syscall import SYSCALLS, Syscall
from agentos.kernel.vfs import mounts, view
from agentos.kernel.vfs.hostwriter import HostWriter
from agentos.state import events as ev
from agentos.state.caps import Capability
from agentos.state.groups import ROOT as ROOT_GROUP
from agentos.state.snapshot import to_pieces
from agentos.state.world import PROJECTION_VERSION, apply
from agentos.store.events import EventRecord, Sequencer
from agentos.store.home import Home
from agentos.store.log import EventLog
from agentos.store.secrets import SecretStore

log = logging.getLogger("agentos.kernel")

_WAKING_KINDS = frozenset({"proc.exited", "proc.reaped", "proc.reparented", "approval.decided"})
_encode = ev.encode


class Instrument(Protocol):
    def on_event(self, seq: int, payload: ev.Payload) -> None: ...

    def on_committed(self, batch: list[EventRecord]) -> None: ...


@dataclass(slots=True)
class Parked:
    caller: Caller
    block: Block
    reply: Callable[[Any, BaseException | None], None]
    timer: asyncio.TimerHandle | None = None


class Kernel:
    def __init__(self, home: Home, *, durability: str | None = None, policy: str | None = None) -> None:
        self.home = home
        self.durability = durability
        self.policy_path = policy
        self.instruments: list[Instrument] = []
        self.parked: dict[object, Parked] = {}
        self.sessions_cwd: dict[int, str] = {}
        self.resumed_at_boot: list[int] = []
        self.boot_ms = 0.0
        self.started_monotonic = time.monotonic()
        self.shutdown_requested = asyncio.Event()
        self.shutdown_kill = False
        self.fatal: BaseException | None = None
        self._waits_dirty = False
        self.blob_cache = BlobCache(self)  # emitted blobs, recent chunks, decoded manifests
        self._last_snapshot_seq = 0
        self.snapshot_every = param.SNAPSHOT_EVERY_EVENTS
        self._snapshotting = False
        self._snapshot_task: asyncio.Task[int] | None = None
        self.authority = Authority(self)
        self.quotas = Quotas(self)
        # they care about a few kinds only: called for those, not for every event (the hot path)
        self._watchers: dict[type, list[Callable[[int, Any], None]]] = {}
        self.watch(authz.INVALIDATING, self.authority.on_event)
        self.watch(quota.RESHAPING, self.quotas.on_event)
        self.mounts = mounts.Mounts(self)  # /dev, /proc, the private /tmps, the handles of their open files
        self.host = HostWriter(self)  # host-mount changes, made once their records are durable
        self.past = Past(self)  # states at past points, for `agentos at POINT ...`
        self.policy: Policy = default_policy()

    # -- boot (one step a line, as xv6's main.c) ---------------------------------------------

    def boot(self) -> None:
        t0 = time.perf_counter()
        self.policy = self._load_policy()  # before anything: a malformed policy never boots
        self.home.create()
        self.home.acquire_lock()
        try:
            self._open_store()
        except BaseException:
            self.home.release_lock()  # a refused boot leaves no kernel.pid behind
            raise
        self.committer = GroupCommitter(self.log, self.head_seq, self._on_committed, self._on_commit_failure)
        syswatch.feed_of(self)  # file changes are kept for watchers from here on
        self.log.ensure_branch(param.MAIN_BRANCH, None, None, time.time_ns(), "main")
        self.boot_number = self.state.ledger.boots + 1
        self.emit(
            ev.KernelBooted(
                boot=self.boot_number,
                version=__version__,
                os_pid=os.getpid(),
                hash_seed=self.home.hash_seed(),
                durability=self.log.durability,
            )
        )
        self.secrets = SecretStore(self.home.path / "secrets")
        self._ensure_init()
        self._end_lost_sessions()
        self.emit_all(sysproc.orphaned_requests(self))  # a home from before exits withdrew them
        self.boot_ms = (time.perf_counter() - t0) * 1000

    def _load_policy(self) -> Policy:
        """``--policy FILE``, else the home's ``policy.toml``, else the built-in default."""
        if self.policy_path is not None:
            return load_policy(self.policy_path)
        home_policy = self.home.path / "policy.toml"
        if home_policy.exists():
            return load_policy(home_policy)
        return default_policy()

    def _open_store(self) -> None:
        """Open the log, check its integrity, and rebuild the state (snapshot + verified tail)."""
        config = self.home.config()
        self.log = EventLog(
            self.home.log_db,
            durability=self.durability or config.get("durability", "normal"),
            hmac_key=self.home.hmac_key(),
        )
        self.reader = self.log.reader()
        ok, detail = self.log.check_head()
        if not ok:
            raise SecurityViolation(f"refusing to boot {self.home.log_db}: {detail}")
        self.state, self._last_snapshot_seq = load_state(self.log)
        head_seq, head_digest = self.log.head()
        self.sequencer = Sequencer(head_seq + 1, head_digest)

    def start(self) -> None:
        """Start the async machinery (call from inside the running loop, after boot)."""
        self.committer.start()
        self.host.committed()  # changes recorded before a restart and never made
        self._expiry_timer = asyncio.get_running_loop().call_soon(self._sweep_expiries)

    def _sweep_expiries(self) -> None:
        """Record expiries as they fall due (checks never needed the event: they read the clock)."""
        if self.fatal is None:
            self.authority.expire_due()
        nxt = self.authority.next_expiry_ns()
        delay = param.EXPIRY_SWEEP_SECONDS
        if nxt is not None:
            delay = min(delay, max(0.0, (nxt - time.time_ns()) / 1e9) + 0.001)
        self._expiry_timer = asyncio.get_running_loop().call_later(delay, self._sweep_expiries)

    def _ensure_init(self) -> None:
        if self.state.world.groups.get(ROOT_GROUP) is None:
            self.emit(ev.GroupCreated(name=ROOT_GROUP, parent=None, by=param.KERNEL_PID))
        self.emit_all(mounts.first_tree(self))  # "/" and the shared scratch "/shared" (older homes: at boot)
        if self.state.world.procs.get(param.INIT_PID) is None:
            self.emit(ev.ProcSpawned(pid=param.INIT_PID, ppid=0, name="init", kind="init"))
            self.emit(ev.ProcStarted(pid=param.INIT_PID))
        if not self.state.world.caps.held_by(param.INIT_PID):
            # init holds the one root capability; everything else is derived from it
            self.emit(
                ev.CapGranted(
                    cap=self.state.ledger.next_cap,
                    holder=param.INIT_PID,
                    resource=ROOT_RESOURCE,
                    rights=ROOT_RIGHTS,
                    parent=None,
                    chain=[],
                    origin="boot",
                    by=param.KERNEL_PID,
                    depth=param.MAX_DELEGATION_DEPTH,
                )
            )
            self._grant_policy_to_capless_agents()

    def _grant_policy_to_capless_agents(self) -> None:
        """A home from before capabilities: its live agents get the policy's, as if started now."""
        for p in self.state.world.procs.alive():
            if p.kind == "agent" and not self.state.world.caps.held_by(p.pid):
                self.emit_all(self.authority.policy_grants(p.pid, param.INIT_PID, origin="upgrade"))

    def root_cap(self) -> Capability:
        return self.state.world.caps.held_by(param.INIT_PID)[0]

    def _end_lost_sessions(self) -> None:
        for p in self.state.world.procs.alive():
            if p.kind == "session":
                events, blobs = sysproc.exit_events(self, p, 1, reason="session lost: the kernel restarted")
                self.emit_all(events, blobs=blobs)

    # -- the event pipeline ------------------------------------------------------------------

    @property
    def head_seq(self) -> int:
        return self.sequencer.next_seq - 1

    def emit(
        self,
        payload: ev.Payload,
        pid: int = param.KERNEL_PID,
        *,
        syscall: str | None = None,
        correlation: str | None = None,
        blobs: dict[str, bytes] | None = None,
    ) -> int:
        if self.fatal is not None:
            raise InternalError("the kernel has stopped after a failed commit", code="ESTORE")
        # the hot path of the whole kernel: keep it to stamp, apply, queue, notify
        ts = time.time_ns()
        kind = payload.KIND
        record = self.sequencer.stamp(
            self.state.world.branch, kind, payload.VERSION, pid, syscall, correlation, ts, _encode(payload)
        )
        seq = record.seq
        apply(self.state, seq, ts, payload)
        self.committer.add(record, blobs)
        if blobs:
            self.blob_cache.remember(blobs)
        if kind in _WAKING_KINDS:
            self._schedule_wait_recheck()
        for inst in self.instruments:
            inst.on_event(seq, payload)
        watchers = self._watchers.get(type(payload))
        if watchers is not None:
            for fn in watchers:
                fn(seq, payload)
        if seq - self._last_snapshot_seq >= self.snapshot_every and not self._snapshotting:
            self._snapshot_soon()
        return seq

    def watch(self, kinds: frozenset[type], fn: Callable[[int, Any], None]) -> None:
        """Call ``fn(seq, payload)`` for every applied event of these payload types."""
        for kind in kinds:
            self._watchers.setdefault(kind, []).append(fn)

    def emit_all(
        self,
        payloads: list[ev.Payload],
        pid: int = param.KERNEL_PID,
        *,
        syscall: str | None = None,
        blobs: dict[str, bytes] | None = None,
        correlation: str | None = None,
    ) -> int:
        seq = self.head_seq
        for i, payload in enumerate(payloads):
            seq = self.emit(
                payload, pid, syscall=syscall, blobs=blobs if i == 0 else None, correlation=correlation
            )
        return seq

    def _on_committed(self, batch: list[EventRecord]) -> None:
        for inst in self.instruments:
            inst.on_committed(batch)
        self.host.committed()

    def _on_commit_failure(self, exc: BaseException) -> None:
        self.fatal = exc
        self.shutdown_requested.set()

    def blob(self, h: str) -> bytes | None:
        """A blob by hash: one emitted and not yet committed (never evicted before its commit), a
        recent one, else from the log."""
        return self.blob_cache.get(h)

    def has_blob(self, h: str) -> bool:
        """Whether a blob is stored (or emitted, to be committed with its event)."""
        return self.blob_cache.has(h)

    def get_blobs(self, hashes: list[str]) -> dict[str, bytes]:
        """Those of ``hashes`` found, verified, in one query for the ones not in memory (``chunks.GetBlobs``)."""
        return self.blob_cache.get_many(hashes)

    def stored_blobs(self, hashes: list[str]) -> set[str]:
        """Which of ``hashes`` are stored or emitted (``has_blob`` for many, in one query)."""
        return self.blob_cache.stored_many(hashes)

    # -- syscalls ----------------------------------------------------------------------------

    def call(self, caller: Caller, name: Any, raw_args: Any) -> Done | Block | Stream:
        """Validate, authorise and decide one syscall; emit the events of a Done outcome. Every
        typed error it raises carries the call's correlation id."""
        try:
            return self._call(caller, name, raw_args)
        except AgentOSError as err:
            err.correlation = err.correlation or caller.correlation
            raise

    def check_call(self, caller: Caller, row: Syscall, args: Any) -> None:
        """Authorise a call (a capability for the row's resource and right) and check its quotas."""
        res = row.resource
        if isinstance(res, FsPath):  # a path's capability: on the physical path (kernel/fsaccess.py)
            resource = res.resolved(self, args)
        else:
            resource = res if isinstance(res, str) else res(args)
        right = row.right if row.right_for is None else row.right_for(args)
        caller.cap = self.authority.authorise(caller, row.name, resource, right)
        if caller.confined:
            self.quotas.check_call(caller.pid)

    def _call(self, caller: Caller, name: Any, raw_args: Any) -> Done | Block | Stream:
        row = SYSCALLS.get(name) if isinstance(name, str) else None
        if row is None:  # echo an untrusted name short
            raise InvalidArgument(f"unknown syscall {repr(name)[:64]}", code="ENOSYS")
        args = view.rebase(self, caller, decode_args(row.schema, raw_args))  # a rooted agent's paths
        if caller.kind != "kernel":  # the kernel acting for itself (grace-period KILLs) holds everything
            self.check_call(caller, row, args)
        outcome = row.handler(self, caller, args)
        if isinstance(outcome, Block | Done) and outcome.events:
            seq = self.emit_all(
                outcome.events,
                caller.pid,
                syscall=caller.syscall_id,
                blobs=outcome.blobs,
                correlation=caller.correlation,
            )
            if isinstance(outcome, Block):
                outcome.emitted = seq  # its poll may wait for exactly these (a host change)
        return outcome

    def park(
        self, token: object, caller: Caller, block: Block, reply: Callable[[Any, BaseException | None], None]
    ) -> None:
        """Hold a blocked caller until its poll succeeds or its deadline passes."""
        parked = Parked(caller, block, reply)
        if block.deadline_ns is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, (block.deadline_ns - time.time_ns()) / 1e9)
            parked.timer = loop.call_later(delay, self._deadline, token)
        self.parked[token] = parked

    def unpark(self, token: object) -> Parked | None:
        parked = self.parked.pop(token, None)
        if parked is not None and parked.timer is not None:
            parked.timer.cancel()
        return parked

    def _deadline(self, token: object) -> None:
        parked = self.unpark(token)
        if parked is None:
            return
        on_deadline = parked.block.on_deadline or (lambda: Done(None))
        self._finish(parked, on_deadline)

    def _finish(self, parked: Parked, decide: Callable[[], Done | None]) -> bool:
        try:
            done = decide()
        except AgentOSError as exc:
            exc.correlation = exc.correlation or parked.caller.correlation
            parked.reply(None, exc)
            return True
        if done is None:
            return False
        if done.events:
            self.emit_all(
                done.events,
                parked.caller.pid,
                syscall=parked.caller.syscall_id,
                blobs=done.blobs,
                correlation=parked.caller.correlation,
            )
        parked.reply(done.result, None)
        return True

    def _schedule_wait_recheck(self) -> None:
        if not self._waits_dirty:
            self._waits_dirty = True
            asyncio.get_running_loop().call_soon(self._recheck_waits)

    def _recheck_waits(self) -> None:
        self._waits_dirty = False
        for token, parked in list(self.parked.items()):
            if parked.block.poll is None or token not in self.parked:
                continue
            if self._finish(parked, parked.block.poll):
                self.unpark(token)

    def session_cwd(self, pid: int) -> str | None:
        return self.sessions_cwd.get(pid)

    # -- snapshots and shutdown ----------------------------------------------------------------

    def _snapshot_soon(self) -> None:
        self._snapshotting = True
        self._snapshot_task = asyncio.get_running_loop().create_task(self.snapshot())

    async def snapshot(self) -> int:
        """Write a snapshot of the state as of now, once the log is durable up to it."""
        try:
            # encoded now, synchronously: the pieces are the state as of this very seq
            manifest, pieces = to_pieces(self.state, self.sequencer.prev_digest)
            seq = self.state.seq
            await self.committer.durable(seq)
            await self.committer.write(
                self.log.write_snapshot, self.state.world.branch, seq, PROJECTION_VERSION, manifest, pieces
            )
            self._last_snapshot_seq = seq
            return seq
        finally:
            self._snapshotting = False

    def request_shutdown(self, *, kill: bool) -> None:
        self.shutdown_kill = kill
        self.shutdown_requested.set()

    async def close(self, *, clean: bool) -> None:
        if getattr(self, "_expiry_timer", None) is not None:
            self._expiry_timer.cancel()
        if self._snapshot_task is not None and not self._snapshot_task.done():
            with contextlib.suppress(Exception):  # a periodic snapshot still being written: let it finish
                await self._snapshot_task
        if self.fatal is None:
            if clean:
                self.emit(ev.KernelShutdown(boot=self.boot_number, killed_agents=self.shutdown_kill))
                await self.snapshot()
        await self.committer.close(self.head_seq if self.fatal is None else None)
        self.reader.close()
        self.log.close()
        self.home.release_lock()
