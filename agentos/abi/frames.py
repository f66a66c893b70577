"""Length-prefixed msgpack frames: the wire format of the socket ABI (docs/abi.md).

A frame is a 4-byte big-endian length followed by that many bytes of msgpack. Requests are
``{id, call, args}``; replies ``{id, ok, seq}`` or ``{id, err}``; streams send ``{id, more}``
frames before their final reply. A frame longer than ``MAX_FRAME_BYTES`` is refused.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from agentos.errors import InvalidArgument
from agentos.param import MAX_FRAME_BYTES

_LEN = struct.Struct(">I")


class FrameTooLarge(InvalidArgument):
    default_code = "E2BIG"


class MalformedFrame(InvalidArgument):
    default_code = "EBADMSG"


def encode_frame(message: Any) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {len(body)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _LEN.pack(len(body)) + body


def decode_body(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MalformedFrame(f"frame body is not valid msgpack: {type(exc).__name__}") from None


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, take whole messages out."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[Any]:
        """Return the messages completed by ``data``; raise FrameTooLarge/MalformedFrame."""
        self._buf += data
        out: list[Any] = []
        while len(self._buf) >= 4:
            (length,) = _LEN.unpack_from(self._buf)
            if length > self._max:
                raise FrameTooLarge(f"frame of {length} bytes exceeds the {self._max}-byte limit")
            if len(self._buf) < 4 + length:
                break
            body = bytes(self._buf[4 : 4 + length])
            del self._buf[: 4 + length]
            out.append(decode_body(body))
        return out


def read_frame(sock: Any) -> Any:
    """Blocking read of one message from a socket; None at a clean EOF."""
    header = _recv_exact(sock, 4)
    if header is None:
        return None
    (length,) = _LEN.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    body = _recv_exact(sock, length)
    if body is None:
        raise MalformedFrame("connection closed in the middle of a frame")
    return decode_body(body)


def _recv_exact(sock: Any, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            if not chunks:
                return None
            raise MalformedFrame("connection closed in the middle of a frame")
        chunks += chunk
    return bytes(chunks)
