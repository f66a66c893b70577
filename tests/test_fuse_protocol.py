"""The FUSE view's wire protocol, without a mount (no root needed): requests go to ``FuseView``
over a SOCK_SEQPACKET socketpair standing in for /dev/fuse (one read, one request; one write, one
reply). The kernel runs on its own loop thread, as it does when it serves a real mount.

Whatever arrives — here, random opcodes and bodies — the view answers each request exactly once
with 0 or a negative errno, and keeps serving.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.kernel.calls import Caller
from agentos.runtime import fuseproto as fp
from agentos.runtime.fusefs import FuseView
from agentos.testing.kernelrig import KernelRig

WRITEBACK_CACHE = 1 << 16


class Wire:
    """A booted kernel on a loop thread, a view served as an agent, and our end of its 'device'."""

    def __init__(self, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.rig = KernelRig(root)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.settimeout(10)
        self.sock, self.unique = ours, 0

        async def start() -> FuseView:
            self.rig.boot()
            agent = self.rig.agent()
            self.rig(self.rig.person, "mkdir", path="/shared/work", mode=0o777)
            return FuseView(self.rig.k, agent, theirs.detach(), "/shared/work")

        self.view = self.on_loop(start())
        self.agent: Caller = self.view.caller

    def on_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def ask(
        self, opcode: int, body: bytes = b"", nodeid: int = fp.ROOT_ID, uid: int = 1234
    ) -> tuple[int, bytes]:
        self.unique += 2
        head = fp.HEADER.pack(fp.HEADER.size + len(body), opcode, self.unique, nodeid, uid, 99, 1, 0, 0)
        self.sock.send(head + body)
        if opcode in fp.NO_REPLY:
            return 0, b""
        frame = self.sock.recv(fp.BUFSIZE + 4096)
        length, error, unique = fp.OUT_HEADER.unpack_from(frame)
        assert (length, unique) == (len(frame), self.unique)
        return error, frame[fp.OUT_HEADER.size :]

    def close(self) -> None:
        async def stop() -> None:
            self.view.stop()
            await self.rig.k.close(clean=False)

        self.on_loop(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.sock.close()


def _wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    w = Wire(tmp_path_factory.mktemp("fusewire"))
    err, body = w.ask(fp.INIT, fp.INIT_IN.pack(7, 40, 65536, 0xFFFFFFFF) + bytes(48))
    assert err == 0
    yield w
    w.close()


wire = pytest.fixture(scope="module")(_wire)
fuzz_wire = pytest.fixture(scope="module")(_wire)  # its own kernel: the fuzz may chmod or empty the root


def test_init_asks_for_no_writeback_cache_and_answers_as_7_31(wire: Wire) -> None:
    err, body = wire.ask(fp.INIT, fp.INIT_IN.pack(7, 40, 65536, 0xFFFFFFFF) + bytes(48))
    major, minor, _, flags = struct.unpack_from("<IIII", body)
    assert (err, major, minor) == (0, 7, 31)
    assert not flags & WRITEBACK_CACHE and flags & fp.AUTO_INVAL_DATA and flags & fp.ATOMIC_O_TRUNC
    assert wire.ask(fp.INIT, fp.INIT_IN.pack(8, 0, 0, 0))[0] == -errno.EINVAL  # another major


def test_create_write_flush_cuts_a_version_owned_by_the_asker(wire: Wire) -> None:
    err, out = wire.ask(fp.CREATE, fp.CREATE_IN.pack(os.O_WRONLY | os.O_CREAT, 0o100640, 0, 0) + b"w.txt\0")
    assert err == 0
    nodeid = fp.ENTRY.unpack_from(out)[0]
    attr = fp.ATTR.unpack_from(out, fp.ENTRY.size)
    assert (attr[9] & 0o7777, attr[11], attr[12]) == (0o640, 1234, 99)  # mode; uid, gid: the asker's
    (fh,) = struct.unpack_from("<Q", out, fp.ENTRY.size + fp.ATTR.size)
    err, out = wire.ask(fp.WRITE, fp.WRITE_IN.pack(fh, 0, 5, 0, 0, 0, 0) + b"hello", nodeid)
    assert (err, struct.unpack_from("<I", out)[0]) == (0, 5)
    assert wire.ask(fp.FLUSH, fp.FH_IN.pack(fh) + bytes(16), nodeid)[0] == 0
    rows = wire.on_loop(wire.rig.call(wire.rig.person, "fs_history", path="/shared/work/w.txt"))["versions"]
    assert [(r["op"], r["pid"]) for r in rows if r["op"] == "version"] == [("version", wire.agent.pid)]
    err, out = wire.ask(fp.READ, fp.READ_IN.pack(fh, 1, 100, 0, 0, 0, 0), nodeid)
    assert err == -errno.EBADF  # opened write-only: the fd's mode holds
    assert wire.ask(fp.RELEASE, fp.FH_IN.pack(fh) + bytes(16), nodeid)[0] == 0
    assert wire.ask(fp.LOOKUP, b"missing\0")[0] == -errno.ENOENT
    assert wire.ask(fp.LOOKUP, b"\xff\xfe\0")[0] == -errno.EINVAL  # not UTF-8: no such VFS name
    assert wire.ask(22, b"user.x\0")[0] == -errno.ENOSYS  # GETXATTR: none here, so never asked again


OPCODES = st.sampled_from(sorted({*range(1, 53)} - {fp.INIT, fp.DESTROY}))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opcode=OPCODES, body=st.binary(max_size=200), nodeid=st.sampled_from([1, 2, 3, 7, 2**40]))
def test_any_request_gets_one_answer_and_the_view_keeps_serving(
    fuzz_wire: Wire, opcode: int, body: bytes, nodeid: int
) -> None:
    err, _ = fuzz_wire.ask(opcode, body, nodeid)
    assert err == 0 or -err in errno.errorcode
    err, out = fuzz_wire.ask(fp.GETATTR, fp.GETATTR_IN.pack(0, 0, 0))
    assert err == 0 and len(out) == fp.ATTR_OUT.size + fp.ATTR.size
