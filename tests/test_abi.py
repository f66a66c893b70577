"""The socket ABI: frames, and a live kernel's answers to clients that get the protocol wrong.

After every misbehaving client the kernel must still serve a fresh one, and nothing it had
committed may be lost or altered (the chain verifies; the state rebuilt from the log up to the
old head hashes as the kernel said it did).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agentos import param
from agentos.abi.frames import FrameDecoder, FrameTooLarge, MalformedFrame, encode_frame, read_frame
from agentos.errors import InvalidArgument
from agentos.testing.live import LiveKernel, live_kernel

# -- frames ---------------------------------------------------------------------------------------

MESSAGES: list[Any] = [
    {"id": 1, "call": "hello", "args": {"abi": 1}},
    {"id": "x" * 64, "ok": [1, 2.5, None, True, b"\x00\xff", "ünïcödé", {"nested": {"deep": [2**63]}}]},
    [],
    "",
    -(2**63),
    {1: "int keys", b"b": "bytes keys"},
]


def test_frames_round_trip() -> None:
    for message in MESSAGES:
        frame = encode_frame(message)
        assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
        assert FrameDecoder().feed(frame) == [message]
    stream = b"".join(encode_frame(m) for m in MESSAGES)
    assert FrameDecoder().feed(stream) == MESSAGES


def test_frames_decode_incrementally_byte_by_byte() -> None:
    frames = [encode_frame(m) for m in MESSAGES]
    boundaries = {sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))}
    decoder = FrameDecoder()
    out: list[Any] = []
    for offset, byte in enumerate(b"".join(frames), 1):
        got = decoder.feed(bytes([byte]))
        assert bool(got) == (offset in boundaries), offset  # a message appears exactly when it completes
        out += got
    assert out == MESSAGES


def test_oversized_frames_are_typed_e2big() -> None:
    with pytest.raises(FrameTooLarge) as info:
        encode_frame(b"x" * (param.MAX_FRAME_BYTES + 1))
    err = info.value
    assert isinstance(err, InvalidArgument)
    assert (err.code, err.category) == ("E2BIG", "invalid")
    # the decoder refuses on the header alone, before any of the body arrives
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(struct.pack(">I", param.MAX_FRAME_BYTES + 1))
    assert FrameDecoder(max_frame=10).feed(encode_frame("x" * 9)) == ["x" * 9]  # a 10-byte body
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_frame=10).feed(encode_frame("x" * 10))
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\xff\xff\xff\xff")
        with pytest.raises(FrameTooLarge):
            read_frame(b)


@pytest.mark.parametrize(
    "body",
    [b"\xc1", b"\x93\x01", b"\x01\x02", b"\xa3ab", b"\xa2\xff\xfe", b"\xd4"],
    ids=["reserved-byte", "short-array", "trailing-data", "short-str", "bad-utf8", "short-ext"],
)
def test_garbage_bodies_are_typed_ebadmsg(body: bytes) -> None:
    with pytest.raises(MalformedFrame) as info:
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)
    assert (info.value.code, info.value.category) == ("EBADMSG", "invalid")


def test_read_frame_eof() -> None:
    a, b = socket.socketpair()
    with b:
        a.sendall(encode_frame({"id": 1}) + encode_frame({"id": 2})[:5])
        a.close()
        assert read_frame(b) == {"id": 1}
        with pytest.raises(MalformedFrame):  # closed in the middle of a frame
            read_frame(b)
    c, d = socket.socketpair()
    with d:
        c.close()
        assert read_frame(d) is None  # a clean EOF between frames


# -- a live kernel over a raw socket -----------------------------------------------------------------


class Raw:
    """A client that speaks bytes, so it can get everything wrong."""

    def __init__(self, home: Path, timeout: float = 10) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(home / "kernel.sock"))
        self.decoder = FrameDecoder()
        self.pending: list[Any] = []
        self.ids = 0

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: Any) -> None:
        self.send_bytes(encode_frame(message))

    def read(self) -> Any | None:
        """The next frame, or None once the kernel has closed the connection."""
        while not self.pending:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def request(self, call: Any, args: Any = None, **extra: Any) -> dict[str, Any]:
        self.ids += 1
        message = {"id": self.ids, "call": call, **extra}
        if args is not None:
            message["args"] = args
        self.send(message)
        reply = self.read()
        assert isinstance(reply, dict) and reply.get("id") == self.ids, reply
        return reply

    def hello(self) -> dict[str, Any]:
        reply = self.request("hello", {"abi": param.ABI_VERSION, "client": "raw"})
        assert reply["ok"]["abi"] == param.ABI_VERSION, reply
        return reply["ok"]

    def assert_closed(self) -> None:
        assert self.read() is None, "the kernel should have closed this connection"

    def close(self) -> None:
        self.sock.close()


def assert_typed(err: Any, code: str | None = None, category: str | None = None) -> None:
    assert isinstance(err, dict), err
    for field in ("code", "category", "message"):
        assert isinstance(err.get(field), str) and err[field], err
    assert err["category"] != "internal", err
    if code is not None:
        assert err["code"] == code, err
    if category is not None:
        assert err["category"] == category, err


Live = LiveKernel


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_kernel() as lv:
        yield lv


@pytest.fixture
def raw(live: Live) -> Iterator[Raw]:
    before = live.snapshot()
    conn = Raw(live.home)
    try:
        yield conn
    finally:
        conn.close()
    live.assert_serving(before)


def test_first_request_must_be_hello(raw: Raw) -> None:
    reply = raw.request("status", {})
    assert_typed(reply["err"], "EPROTO", "invalid")
    reply = raw.request("getpid", {})
    assert_typed(reply["err"], "EPROTO", "invalid")
    me = raw.hello()  # the connection is still usable once it says hello
    assert raw.request("getpid", {})["ok"] == me["pid"]
    assert isinstance(raw.request("status", {})["ok"]["seq"], int)


def test_hello_with_the_wrong_abi_version_is_refused_and_closed(raw: Raw) -> None:
    reply = raw.request("hello", {"abi": param.ABI_VERSION + 1})
    assert_typed(reply["err"], "EPROTONOSUPPORT", "invalid")
    raw.assert_closed()


def test_malformed_hello_is_einval(raw: Raw) -> None:
    for args in ({"abi": "1"}, {}, {"abi": 1, "shoe_size": 9}, {"abi": 1, "client": "x" * 300}, [1]):
        assert_typed(raw.request("hello", args)["err"], "EINVAL", "invalid")
    raw.hello()


def test_unknown_call_is_enosys(raw: Raw) -> None:
    raw.hello()
    for name in ("no_such_call", "", "hello\x00", "__init__", "SYSCALLS"):
        assert_typed(raw.request(name, {})["err"], "ENOSYS", "invalid")
    assert_typed(raw.request("hello", {"abi": 1})["err"], "ENOSYS", "invalid")  # only as the first call


BAD_ARGS: list[tuple[str, Any]] = [
    # wrong types (no coercion: strict)
    ("random", {"n": "3"}),
    ("random", {"n": 3.0}),
    ("sleep", {"seconds": "1"}),
    ("spawn", {"target": 7}),
    ("spawn", {"target": "agentos.examples.hello", "argv": "not-a-list"}),
    ("spawn", {"target": "agentos.examples.hello", "argv": [1]}),
    ("ps", {"all": 1}),
    ("kill", {"pid": 2, "sig": None}),
    ("wait", {"pid": "-1"}),
    ("events", {"since": b"\x00"}),
    ("status", [1]),
    ("status", "args"),
    # unknown fields
    ("status", {"verbose": True}),
    ("ps", {"all": True, "sort": "pid"}),
    ("random", {"n": 1, "seed": 4}),
    # missing required fields
    ("random", {}),
    ("logs", {}),
    # out of range
    ("random", {"n": -1}),
    ("random", {"n": param.MAX_RANDOM_BYTES + 1}),
    ("sleep", {"seconds": -0.5}),
    ("sleep", {"seconds": float("nan")}),
    ("sleep", {"seconds": float("inf")}),
    ("kill", {"pid": 0}),
    ("kill", {"pid": 2**63}),
    ("kill", {"pid": 2, "sig": 65}),
    ("wait", {"pid": -2}),
    ("spawn", {"target": ""}),
    ("spawn", {"target": "agentos.examples.hello", "argv": ["x"] * (param.MAX_ARGV + 1)}),
    ("write_console", {"data": "x" * (param.MAX_CONSOLE_WRITE + 1)}),
    ("write_console", {"data": "x", "stream": "stdin"}),
    ("write_console", {"data": "x", "stream": "stdout\n"}),
    ("events", {"limit": 0}),
    ("events", {"since": -1}),
    ("events", {"since": 2**63}),
    ("events", {"since": 2**64 - 1}),
    ("logs", {"pid": 0}),
]


@pytest.mark.parametrize(("call", "args"), BAD_ARGS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(BAD_ARGS)])
def test_bad_arguments_are_einval(raw: Raw, call: str, args: Any) -> None:
    raw.hello()
    reply = raw.request(call, args)
    assert "err" in reply, reply
    assert_typed(reply["err"], "EINVAL", "invalid")


def test_non_map_requests_are_ebadmsg(raw: Raw) -> None:
    for message in ([1, 2], "status", 42, None, {"id": 5}, {"id": 6, "call": 7}):
        raw.send(message)
        reply = raw.read()
        assert isinstance(reply, dict), reply
        assert_typed(reply["err"], "EBADMSG", "invalid")
    me = raw.hello()  # still a working connection
    for message in ([me["pid"]], {"call": b"status"}):
        raw.send(message)
        assert_typed(raw.read()["err"], "EBADMSG", "invalid")
    assert raw.request("getpid", {})["ok"] == me["pid"]


def test_a_garbage_body_gets_ebadmsg_and_a_close(raw: Raw) -> None:
    raw.hello()
    raw.send_bytes(struct.pack(">I", 2) + b"\xc1\xc1")
    reply = raw.read()
    assert reply is not None and reply["id"] is None
    assert_typed(reply["err"], "EBADMSG", "invalid")
    raw.assert_closed()


@pytest.mark.parametrize("after_hello", [False, True])
def test_an_oversized_length_header_gets_an_error_frame_then_a_close(
    live: Live, raw: Raw, after_hello: bool
) -> None:
    pid = raw.hello()["pid"] if after_hello else None
    raw.send_bytes(struct.pack(">I", param.MAX_FRAME_BYTES + 1) + b"\x80" * 100)
    reply = raw.read()
    assert reply is not None and reply["id"] is None
    assert_typed(reply["err"], "E2BIG", "invalid")
    raw.assert_closed()
    if pid is not None:  # its session process ended with the connection (and, reaped, left the table)
        assert live.kp.wait_for(lambda c: all(p["pid"] != pid for p in c.call("ps")))


def test_a_request_split_across_many_writes_is_served(raw: Raw) -> None:
    frame = encode_frame({"id": 1, "call": "hello", "args": {"abi": param.ABI_VERSION}})
    for i in range(len(frame)):
        raw.send_bytes(frame[i : i + 1])
    assert raw.read()["ok"]["abi"] == param.ABI_VERSION
    pipelined = b"".join(encode_frame({"id": i, "call": "getpid", "args": {}}) for i in range(2, 50))
    raw.send_bytes(pipelined)
    replies = [raw.read() for _ in range(2, 50)]
    assert [r["id"] for r in replies] == list(range(2, 50))  # in order, one each
    assert len({r["ok"] for r in replies}) == 1


def test_msgpack_extension_types_are_refused_not_crashing(raw: Raw) -> None:
    raw.hello()
    body = msgpack.packb({"id": 1, "call": "random", "args": {"n": msgpack.ExtType(5, b"zz")}})
    raw.send_bytes(struct.pack(">I", len(body)) + body)
    reply = raw.read()
    assert_typed(reply["err"], "EINVAL", "invalid")
