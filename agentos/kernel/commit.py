"""Group commit and the durability barrier of the output-commit rule (ARCHITECTURE.md §4.3).

Events are applied to live state as soon as they are stamped; the committer writes everything
pending in one transaction. The rows are bound on the loop thread: binding needs the GIL anyway,
and apsw releases the GIL around each row's step, so a writer thread inserting rows while the
loop is busy waits up to a switch interval (5 ms) per row — a convoy that made a busy kernel's
commits hundreds of times slower. Only the COMMIT goes to the writer thread, and only under
synchronous=FULL, where it is the fsync (one GIL release); under NORMAL a WAL commit does no I/O
wait worth a thread hop. WAL checkpoints are taken over from SQLite (which would run them inside
some COMMIT) and run on a thread of their own, on their own connection, once the WAL passes
``CHECKPOINT_PAGES``; one that frames committed meanwhile kept from completing is finished there
too, between commits. ``durable(seq)`` resolves once the log is durable up to ``seq``: every
output — a socket reply, a console line, an event stream — waits on it. A failed commit is fatal:
live state is ahead of the log and must not be served.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from agentos.store.events import EventRecord
from agentos.store.log import EventLog

log = logging.getLogger("agentos.commit")
CHECKPOINT_PAGES = 1000  # SQLite's own auto-checkpoint threshold (~4 MiB of WAL)


class GroupCommitter:
    def __init__(
        self,
        store: EventLog,
        durable_seq: int,
        on_committed: Callable[[list[EventRecord]], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.store = store
        self.durable_seq = durable_seq
        self.pending: list[EventRecord] = []
        self.pending_blobs: dict[str, bytes] = {}
        self.inflight_blobs: dict[str, bytes] = {}
        self.inflight: list[EventRecord] = []  # the batch being written: readable until committed
        self.batches = 0
        self.failed: BaseException | None = None
        self._on_committed = on_committed
        self._on_failure = on_failure
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._wake = asyncio.Event()
        self._store_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="agentos-commit")
        self._checkpoint_executor = ThreadPoolExecutor(1, thread_name_prefix="agentos-checkpoint")
        self._checkpoint: asyncio.Future[tuple[int, int]] | None = None
        self.checkpoints = 0
        self._checkpoint_floor = 0  # WAL pages when the last checkpoint was started
        self._finishing: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.store.take_over_checkpoints()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    def add(self, record: EventRecord, blobs: dict[str, bytes] | None = None) -> None:
        self.pending.append(record)
        if blobs:
            self.pending_blobs.update(blobs)
        if not self._wake.is_set():
            self._wake.set()

    async def durable(self, seq: int) -> None:
        """Return once every event up to ``seq`` is committed (raise if commits failed)."""
        if self.failed is not None:
            raise self.failed
        if seq <= self.durable_seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tiebreak), fut))
        self._wake.set()
        await fut

    async def write(self, fn: Callable[..., object], *args: object) -> None:
        """One store transaction: ``fn(*args)`` writes its rows here on the loop thread, between
        ``begin()`` and a ``commit()`` that runs on the writer thread under FULL (its fsync)."""
        async with self._store_lock:
            self.store.begin()
            try:
                fn(*args)
            except BaseException:
                self.store.rollback()
                raise
            if self.store.durability == "normal":
                self.store.commit()
            else:
                await asyncio.get_running_loop().run_in_executor(self._executor, self.store.commit)
        self._maybe_checkpoint()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                # Everything pending, never a part: the loop only gets here between synchronous
                # steps, so the events of one step (a call's effects and its sys.done, an exit
                # and its reaping) always share a transaction — a crash keeps all or none.
                batch, blobs = self.pending, self.pending_blobs
                self.pending, self.pending_blobs = [], {}
                self.inflight_blobs = blobs  # readable until committed (a FULL commit awaits its fsync)
                self.inflight = batch
                try:
                    await self.write(self.store.write_events, batch, blobs)
                except BaseException as exc:  # noqa: BLE001 - any failure here is fatal by design
                    self._fail(exc)
                    return
                finally:
                    self.inflight_blobs, self.inflight = {}, []
                self.batches += 1
                self.durable_seq = batch[-1].seq
                self._release()
                self._on_committed(batch)

    def _maybe_checkpoint(self) -> None:
        pages = self.store.wal_pages
        if pages < self._checkpoint_floor:
            self._checkpoint_floor = 0  # the WAL restarted from its start
        if pages - self._checkpoint_floor < CHECKPOINT_PAGES or self._checkpoint is not None:
            return
        self._checkpoint_floor = pages  # one try per CHECKPOINT_PAGES written, never one per commit
        loop = asyncio.get_running_loop()
        self._checkpoint = loop.run_in_executor(self._checkpoint_executor, self.store.checkpoint)
        self._checkpoint.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, fut: asyncio.Future[tuple[int, int]]) -> None:
        self._checkpoint = None
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:  # the WAL only grows; the next CHECKPOINT_PAGES written try again
            log.warning("WAL checkpoint failed: %s", exc)
            return
        self.checkpoints += 1
        if fut.result()[1] >= self.store.wal_pages:
            return  # nothing was committed meanwhile: complete already, the next commit restarts the WAL
        if self.failed is None:
            self._finishing = asyncio.get_running_loop().create_task(self._finish_checkpoint())

    async def _finish_checkpoint(self) -> None:
        async with self._store_lock:  # between commits: nothing can be appended meanwhile
            try:  # on the checkpoint thread: the loop goes on stamping and applying events meanwhile
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._checkpoint_executor, self.store.finish_checkpoint)
            except Exception as exc:  # noqa: BLE001 - a checkpoint is an optimisation: log and go on
                log.warning("WAL checkpoint could not finish: %s", exc)

    def _release(self) -> None:
        while self._waiters and self._waiters[0][0] <= self.durable_seq:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        log.critical("commit failed; the kernel must stop: %s", exc)
        self.failed = exc
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiters.clear()
        self._on_failure(exc)

    async def close(self, head_seq: int | None) -> None:
        """Commit everything up to ``head_seq`` (None: nothing more), then stop the writer threads."""
        if self.failed is None and head_seq is not None:
            await self.durable(head_seq)
        if self._task is not None:
            self._task.cancel()
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        if self._finishing is not None:
            await asyncio.wait([self._finishing])
        self._executor.shutdown(wait=True)
        self._checkpoint_executor.shutdown(wait=True)
