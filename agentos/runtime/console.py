"""``print()`` inside an in-kernel agent goes to that agent's console, through the kernel.

While the dispatcher steps an agent, the kernel thread's stdout/stderr writes are captured
into that agent's buffer; the stepper then journals them as console events (once: output that
was already recorded before a crash is suppressed during replay).
"""

from __future__ import annotations

import io
import sys
import threading
from typing import Any, TextIO


class _Router(io.TextIOBase):
    def __init__(self, capture: ConsoleCapture, stream: str, real: TextIO) -> None:
        self._capture, self._stream, self._real = capture, stream, real

    def write(self, s: str) -> int:
        buf = self._capture.buffer if threading.get_ident() == self._capture.thread else None
        if buf is None:
            return self._real.write(s)
        buf.append((self._stream, s))
        return len(s)

    def flush(self) -> None:
        if self._capture.buffer is None:
            self._real.flush()

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")

    def isatty(self) -> bool:
        return False


class ConsoleCapture:
    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.buffer: list[tuple[str, str]] | None = None
        self._saved: tuple[Any, Any] | None = None

    def install(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _Router(self, "stdout", sys.stdout)  # type: ignore[assignment]
        sys.stderr = _Router(self, "stderr", sys.stderr)  # type: ignore[assignment]

    def uninstall(self) -> None:
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None

    def begin(self) -> None:
        self.buffer = []

    def end(self) -> list[tuple[str, str]]:
        out, self.buffer = self.buffer or [], None
        return out
