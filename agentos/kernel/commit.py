"""Group commit and the durability barrier of the output-commit rule (ARCHITECTURE.md §4.3).

Events are applied to live state as soon as they are stamped; this writer commits everything
pending in one transaction — on its own thread (apsw releases the GIL while SQLite works), so
while one batch is being written the next accumulates; a small batch under synchronous=NORMAL
(no fsync) commits on the loop thread instead, which is cheaper than the hop to a thread. ``durable(seq)`` resolves once the log
is durable up to ``seq``: every output — a socket reply, a console line, an event stream —
waits on it. A failed commit is fatal: live state is ahead of the log and must not be served.
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
INLINE_COMMIT_MAX = (
    32  # smaller batches commit on the loop thread; larger ones (and FULL) on the writer thread
)


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
        self.batches = 0
        self.failed: BaseException | None = None
        self._on_committed = on_committed
        self._on_failure = on_failure
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._wake = asyncio.Event()
        self._store_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="agentos-commit")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
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

    async def run_in_writer(self, fn: Callable[..., object], *args: object) -> object:
        """Run a store write (a snapshot) on the writer thread, never at once with a commit."""
        async with self._store_lock:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                # Everything pending, never a part: the loop only gets here between synchronous
                # steps, so the events of one step (a call's effects and its sys.done, an exit
                # and its reaping) always share a transaction — a crash keeps all or none.
                batch, blobs = self.pending, self.pending_blobs
                self.pending, self.pending_blobs = [], {}
                try:
                    async with self._store_lock:
                        if len(batch) <= INLINE_COMMIT_MAX and self.store.durability == "normal":
                            self.store.append(
                                batch, blobs
                            )  # no fsync in WAL+NORMAL: cheaper than a thread hop
                        else:
                            await loop.run_in_executor(self._executor, self.store.append, batch, blobs)
                except BaseException as exc:  # noqa: BLE001 - any failure here is fatal by design
                    self._fail(exc)
                    return
                self.batches += 1
                self.durable_seq = batch[-1].seq
                self._release()
                self._on_committed(batch)

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

    async def close(self, head_seq: int) -> None:
        """Commit everything up to ``head_seq``, then stop the writer."""
        if self.failed is None:
            await self.durable(head_seq)
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)
