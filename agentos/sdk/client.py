"""A blocking client of the socket ABI: what the CLI (and any Python script) uses.

    with Client.connect(home) as c:
        print(c.call("ps"))

Each connection is a session process in the kernel. ``call`` returns the ``ok`` value or
raises the typed error; ``stream`` yields ``more`` items until the final reply (and the items of
a final reply that is a list, which is how an unfollowed ``events`` or ``logs`` answers).
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentos import param
from agentos.abi.frames import encode_frame, read_frame
from agentos.errors import InternalError, NetworkError, error_from_wire

SOCKET_NAME = "kernel.sock"


class Client:
    def __init__(self, sock: socket.socket, name: str = "client") -> None:
        self.sock = sock
        self._ids = itertools.count(1)
        hello = self.call("hello", abi=param.ABI_VERSION, client=name, cwd=os.getcwd())
        self.pid: int = hello["pid"]
        self.kernel_version: str = hello["version"]

    @classmethod
    def connect(cls, home: Path | str, name: str = "client", timeout: float | None = None) -> Client:
        path = Path(home) / SOCKET_NAME
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if timeout is not None:
            sock.settimeout(timeout)
        try:
            if len(str(path).encode()) < 100:
                sock.connect(str(path))
            else:  # long home paths: reach the socket through a directory fd
                fd = os.open(Path(home), os.O_PATH | os.O_DIRECTORY)
                try:
                    sock.connect(f"/proc/self/fd/{fd}/{SOCKET_NAME}")
                finally:
                    os.close(fd)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise NetworkError(
                f"no kernel is running on {home} ({exc.strerror}); start one with 'agentos boot'"
            ) from None
        return cls(sock, name)

    def send(self, call: str, **args: Any) -> int:
        req_id = next(self._ids)
        try:
            self.sock.sendall(encode_frame({"id": req_id, "call": call, "args": args}))
        except OSError as exc:  # the kernel is gone: a typed error, as for a read
            raise NetworkError(
                f"the kernel dropped the connection ({exc.strerror})", code="ECONNRESET"
            ) from None
        return req_id

    def _read(self) -> dict[str, Any]:
        try:
            msg = read_frame(self.sock)
        except TimeoutError:
            raise NetworkError("the kernel did not answer in time", code="ETIMEDOUT") from None
        except OSError as exc:  # the kernel died with our request unread: a typed error
            raise NetworkError(
                f"the kernel dropped the connection ({exc.strerror})", code="ECONNRESET"
            ) from None
        if msg is None:
            raise NetworkError("the kernel closed the connection", code="ECONNRESET")
        if not isinstance(msg, dict):
            raise InternalError(f"malformed reply from the kernel: {msg!r}")
        return msg

    def _replies(self, req_id: int) -> Iterator[dict[str, Any]]:
        """The frames answering ``req_id``: any ``more`` items, then the final reply (or its error)."""
        while True:
            msg = self._read()
            if msg.get("id") not in (req_id, None):
                continue
            if "err" in msg:
                raise error_from_wire(msg["err"])
            yield msg
            if "more" not in msg:
                return

    def call(self, call: str, **args: Any) -> Any:
        """The call's result; for a reply that streamed ``more`` items, the list of them all."""
        items: list[Any] = []
        streamed, result = False, None
        for msg in self._replies(self.send(call, **args)):
            if "more" in msg:
                streamed = True
                items.append(msg["more"])
            else:
                result = msg.get("ok")
        if streamed:
            return items + (result if isinstance(result, list) else [])
        return result

    def stream(self, call: str, **args: Any) -> Iterator[Any]:
        for msg in self._replies(self.send(call, **args)):
            if "more" in msg:
                yield msg["more"]
            elif isinstance(msg.get("ok"), list):  # not followed: the whole answer in the final reply
                yield from msg["ok"]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
