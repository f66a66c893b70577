"""Scheduling policy: which ready agent the dispatcher steps next.

One interface (``push``, ``pick``, ``discard``); round-robin is the policy for now — each
syscall is a preemption point and the picked agent runs until its next trap. Scheduling
transitions are not events (ARCHITECTURE.md §9).
"""

from __future__ import annotations

from collections import deque


class RoundRobin:
    name = "rr"

    def __init__(self) -> None:
        self._queue: deque[int] = deque()
        self._queued: set[int] = set()

    def push(self, pid: int) -> None:
        if pid not in self._queued:
            self._queued.add(pid)
            self._queue.append(pid)

    def pick(self) -> int | None:
        while self._queue:
            pid = self._queue.popleft()
            if pid in self._queued:
                self._queued.discard(pid)
                return pid
        return None

    def discard(self, pid: int) -> None:
        self._queued.discard(pid)

    def __len__(self) -> int:
        return len(self._queued)
