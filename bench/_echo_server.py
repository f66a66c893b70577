"""Unix-socket echo servers for the socket baselines: an asyncio ``Protocol`` one and a raw blocking one.

Both speak the same framing: a 4-byte big-endian length, then that many payload bytes; each frame is
parsed and written back whole. Run as a script (``python _echo_server.py asyncio|raw PATH``) a server
binds ``PATH``, prints ``ready`` on stdout, and exits when its stdin reaches EOF (so it dies with its
parent) or after ``MAX_LIFETIME_S``. ``serve_in_thread`` runs the same servers in a background thread.

This module imports only the standard library: it runs as a plain script in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20
MAX_LIFETIME_S = 900.0
MAX_FRAMES_PER_CONNECTION = 10_000_000
ACCEPT_POLL_S = 0.2


class EchoProtocol(asyncio.Protocol):
    """Parses length-prefixed frames from the stream and writes each one back."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(buf)
            if length > MAX_FRAME:
                assert self.transport is not None
                self.transport.close()
                return
            end = HEADER.size + length
            if len(buf) < end:
                return
            assert self.transport is not None
            self.transport.write(bytes(buf[:end]))
            del buf[:end]


async def _serve_asyncio(path: str, ready: Callable[[], None], stop: asyncio.Event) -> None:
    server = await asyncio.get_running_loop().create_unix_server(EchoProtocol, path)
    async with server:
        ready()
        try:
            await asyncio.wait_for(stop.wait(), timeout=MAX_LIFETIME_S)
        except TimeoutError:
            pass


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = conn.recv(n - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _handle_raw(conn: socket.socket) -> None:
    with conn:
        for _ in range(MAX_FRAMES_PER_CONNECTION):
            header = _recv_exact(conn, HEADER.size)
            if header is None:
                return
            (length,) = HEADER.unpack(header)
            if length > MAX_FRAME:
                return
            payload = _recv_exact(conn, length)
            if payload is None:
                return
            conn.sendall(header + payload)


def _serve_raw(path: str, ready: Callable[[], None], stop: threading.Event) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(16)
        listener.settimeout(ACCEPT_POLL_S)
        ready()
        for _ in range(int(MAX_LIFETIME_S / ACCEPT_POLL_S)):
            if stop.is_set():
                return
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=_handle_raw, args=(conn,), daemon=True).start()


class ThreadServer:
    """An echo server running in a daemon thread of this process; ``close()`` stops it."""

    def __init__(self, mode: str, path: str) -> None:
        self.mode = mode
        self.path = path
        self._ready = threading.Event()
        self._stop_raw = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name=f"echo-{mode}", daemon=True)

    def start(self, timeout: float = 10.0) -> ThreadServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{self.mode} echo server thread did not start in {timeout}s")
        return self

    def _main(self) -> None:
        if self.mode == "raw":
            _serve_raw(self.path, self._ready.set, self._stop_raw)
            return
        self._loop = asyncio.new_event_loop()
        self._stop_async = asyncio.Event()
        try:
            self._loop.run_until_complete(_serve_asyncio(self.path, self._ready.set, self._stop_async))
        finally:
            self._loop.close()

    def close(self) -> None:
        self._stop_raw.set()
        if self._loop is not None and self._stop_async is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop_async.set)
            except RuntimeError:
                pass  # the loop closed in between
        self._thread.join(timeout=5.0)


def serve_in_thread(mode: str, path: str) -> ThreadServer:
    """Start an ``asyncio`` or ``raw`` echo server on ``path`` in a background thread."""
    if mode not in ("asyncio", "raw"):
        raise ValueError(f"mode must be 'asyncio' or 'raw', not {mode!r}")
    return ThreadServer(mode, path).start()


def _exit_on_stdin_eof() -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("asyncio", "raw"):
        print("usage: _echo_server.py asyncio|raw PATH", file=sys.stderr)
        return 2
    mode, path = argv

    def ready() -> None:
        print("ready", flush=True)

    threading.Thread(target=_exit_on_stdin_eof, daemon=True).start()
    if mode == "raw":
        _serve_raw(path, ready, threading.Event())
    else:
        asyncio.run(_serve_asyncio(path, ready, asyncio.Event()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
