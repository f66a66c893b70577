"""agentos-call end to end: against a real kernel through its socket (a session), through a
pre-opened fd (``AGENTOS_FD``) served by an in-test peer speaking the frames, and inside a real
sandboxed process agent, where a shell script makes its calls on the agent's own channel."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agentos.abi.frames import FrameDecoder, encode_frame
from agentos.runtime.sandbox import cgroupfs
from agentos.runtime.sandbox.cgrouphome import CgroupManager, home_cgroup_id
from agentos.runtime.sandbox.probe import probe
from agentos.testing.kernelproc import KernelProcess
from agentos.user import agentos_call

SCRIPT = Path(agentos_call.__file__)


def call(*argv: str, home: Path | None = None, stdin: bytes = b"", env: dict[str, str] | None = None,
         **kw: Any) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """Run ``agentos-call ARGV`` (the file, as a sandbox would) and capture what it prints."""
    base = {k: v for k, v in os.environ.items() if k not in ("AGENTOS_HOME", "AGENTOS_FD")}
    where = ["--home", str(home)] if home is not None else []
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv, *where],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=base | (env or {}),
        **kw,
    )


def lines(done: subprocess.CompletedProcess[bytes]) -> list[Any]:
    assert done.returncode == 0, done.stderr.decode()
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


# -- through the kernel's socket ----------------------------------------------------------------


def test_getpid_is_a_session_of_its_own_whose_parent_is_init(kernel: KernelProcess) -> None:
    pid = lines(call("getpid", home=kernel.home))[0]
    assert isinstance(pid, int) and pid > 1
    assert lines(call("getppid", home=kernel.home)) == [1]
    assert lines(call("getpid", home=kernel.home))[0] > pid  # each run is a new session


def test_a_file_written_with_open_write_close_reads_back(kernel: KernelProcess) -> None:
    data = bytes(range(256)) * 3  # not UTF-8: bytes travel as msgpack bin
    batch = [
        {"call": "open", "args": {"path": "/shared/f.bin", "flags": ["write", "create"]}},
        ["write", {"fd": {"$ref": 1}, "data": {"$b64": base64.b64encode(data).decode()}}],
        ["close", {"fd": {"$ref": 1}}],
    ]
    wrote = lines(call("--batch", home=kernel.home, stdin="\n".join(map(json.dumps, batch)).encode()))
    assert [r["ok"] for r in wrote[1:]] == [len(data), None]
    read = "\n".join(['["open", {"path": "/shared/f.bin"}]', '["read", {"fd": {"$ref": 1}, "n": 4096}]'])
    got = lines(call("--batch", home=kernel.home, stdin=read.encode()))[1]["ok"]
    assert base64.b64decode(got["$b64"]) == data
    assert lines(call("stat", "path=/shared/f.bin", home=kernel.home))[0]["size"] == len(data)
    with kernel.client() as c:  # the same file, as any other client sees it
        fd = c.call("open", path="/shared/f.bin")
        assert c.call("read", fd=fd, n=4096) == data


def test_key_value_arguments_stdin_bytes_and_raw_output(kernel: KernelProcess) -> None:
    secret = b"\x00\xffhunter2\n"
    made = lines(call("secret_set", "name=k", "value=-", home=kernel.home, stdin=secret))[0]
    assert made["size"] == len(secret)
    assert call("secret_get", "name=k", "--raw", home=kernel.home).stdout == secret
    assert lines(call("secret_get", "name=k", home=kernel.home)) == [
        {"$b64": base64.b64encode(secret).decode()}
    ]
    # `value=text` is the text's bytes (a bytes argument); `name=true` is JSON's true, `name:s=` a string
    assert call("secret_set", "name=true", "value=5", home=kernel.home).returncode == 6
    assert lines(call("secret_set", "name:s=true", "value=5", home=kernel.home))[0]["size"] == 1
    assert call("secret_get", "name:s=true", "--raw", home=kernel.home).stdout == b"5"
    # JSON values: an int, a list; --json merges under the pairs
    rows = lines(call("events", "--json", '{"limit": 99, "kind": "vfs.mkfs"}', "limit=1", home=kernel.home))
    assert len(rows) == 1 and rows[0]["kind"] == "vfs.mkfs"
    names = lines(call("readdir", "path=/", "--lines", home=kernel.home))
    assert "shared" in names and "tmp" in names


ERRORS = [
    (["stat", "path=/no/such"], 4, "ENOENT"),  # not-found
    (["kill", "pid=1"], 5, "EPERM"),  # denied
    (["getpid", "x=1"], 6, "EINVAL"),  # invalid: an unknown argument
    (["no_such_call"], 6, "ENOSYS"),
    (["mkdir", "path=/shared"], 7, "EEXIST"),  # conflict
    (["getpid", "oops"], 2, "EUSAGE"),  # not key=value: never sent
    (["--batch", "getpid"], 2, "EUSAGE"),
    (["sleep", "seconds=5", "--timeout", "0.3"], 3, "ETIMEDOUT"),  # the client gave up
]


def test_a_typed_error_is_its_code_on_stderr_and_a_stable_exit_status(kernel: KernelProcess) -> None:
    for argv, status, code in ERRORS:
        done = call(*argv, home=kernel.home)
        assert (done.returncode, done.stdout) == (status, b""), (argv, done.stderr)
        assert done.stderr.decode().startswith(f"agentos-call: {code}: "), (argv, done.stderr)
        assert len(done.stderr.decode().splitlines()) == 1


def test_events_print_one_json_line_per_item_and_follow_streams(kernel: KernelProcess) -> None:
    rows = lines(call("events", "limit=5", home=kernel.home))
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    # follow answers in {id, more} frames and never ends: read lines as they come, then stop it
    follower = subprocess.Popen(
        [sys.executable, str(SCRIPT), "events", "follow=true", "--home", str(kernel.home)],
        stdout=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "AGENTOS_FD"},
    )
    try:
        assert follower.stdout is not None
        assert [json.loads(follower.stdout.readline())["seq"] for _ in range(3)] == [1, 2, 3]
        lines(call("mkdir", "path=/shared/new", home=kernel.home))
        while (row := json.loads(follower.stdout.readline()))["payload"].get("name") != "new":
            pass  # every event since boot, then the new ones as they commit
        assert (row["kind"], row["payload"]["kind"]) == ("vfs.created", "dir")
    finally:
        follower.kill()
        follower.wait()


# -- through a pre-opened fd (AGENTOS_FD), the peer a test double ------------------------------


class Peer:
    """The kernel's end of a socketpair: answers hello, getpid, a stream and an error, and first
    sends a stale reply (another id) that the client must skip. Records every request."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.requests = sock, []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        decoder = FrameDecoder()
        while chunk := self.sock.recv(65536):
            for msg in decoder.feed(chunk):
                self.requests.append(msg)
                self.answer(msg["id"], msg["call"], msg["args"])

    def answer(self, rid: Any, name: str, args: dict[str, Any]) -> None:
        send = self.sock.sendall
        send(encode_frame({"id": "stale:1", "ok": "not yours"}))
        if name == "hello":
            send(encode_frame({"id": rid, "ok": {"abi": args["abi"], "pid": 42, "version": "t"}, "seq": 1}))
        elif name == "getpid":
            send(encode_frame({"id": rid, "ok": 42, "seq": 1}))
        elif name == "events":
            for seq in (7, 8):
                send(encode_frame({"id": rid, "more": {"seq": seq, "blob": b"\x01"}}))
            send(encode_frame({"id": rid, "ok": None}))
        else:
            err = {"code": "EACCES", "category": "denied", "message": f"{name} refused", "retryable": False}
            send(encode_frame({"id": rid, "err": err}))


@pytest.fixture
def channel() -> Iterator[tuple[Peer, int]]:
    kernel_end, agent_end = socket.socketpair()
    peer = Peer(kernel_end)
    try:
        yield peer, agent_end.fileno()
    finally:
        agent_end.close()
        kernel_end.close()


def on_fd(fd: int, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return call(*argv, env={"AGENTOS_FD": str(fd)}, pass_fds=(fd,))


def test_the_channel_fd_carries_hello_calls_streams_and_errors(channel: tuple[Peer, int]) -> None:
    peer, fd = channel
    assert lines(on_fd(fd, "getpid")) == [42]
    hello, getpid = peer.requests
    assert hello["call"] == "hello" and hello["args"] == {"abi": agentos_call.ABI_VERSION}
    assert (getpid["call"], getpid["args"]) == ("getpid", {}) and "cap" not in getpid
    assert lines(on_fd(fd, "events", "--cap", "9")) == [
        {"seq": 7, "blob": {"$b64": "AQ=="}},
        {"seq": 8, "blob": {"$b64": "AQ=="}},
    ]
    assert peer.requests[-1]["cap"] == 9
    denied = on_fd(fd, "status")
    assert denied.returncode == 5 and denied.stderr == b"agentos-call: EACCES: status refused\n"
    # the exact frame on the wire: msgpack-python reads what the stdlib codec wrote
    assert msgpack.packb(peer.requests[-1], use_bin_type=True) == agentos_call.packb(peer.requests[-1])


def test_a_bad_agentos_fd_is_a_connection_error(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as f:
        done = on_fd(f.fileno(), "getpid")
    assert done.returncode == 3 and done.stderr.startswith(b"agentos-call: EBADF: AGENTOS_FD=")


# -- inside a real process agent ------------------------------------------------------------------

_found = probe()
CGROUPS = cgroupfs.probe()
SHELL_SCRIPT = r"""
printf '%s' "$1" > /tmp/agentos-call && chmod +x /tmp/agentos-call
ac=/tmp/agentos-call
echo "pid $($ac getpid)"
fd=$($ac open path=/shared/from-sh.txt flags='["write","create"]')
printf 'written by sh\n' | $ac write fd="$fd" data=-
$ac close fd="$fd"
$ac status 2>/dev/null; echo "status exit $?"
$ac getppid & $ac getppid & wait
"""


@pytest.mark.skipif(
    bool(_found.missing(("bwrap", "userns", "seccomp", "stage"))),
    reason=f"the minimal sandbox profile cannot run here: {_found.summary()}",
)
def test_a_shell_script_in_a_process_agent_calls_on_its_own_channel(kernel: KernelProcess) -> None:
    try:
        pid = kernel.call(
            "spawn", target="sh", argv=["-c", SHELL_SCRIPT, "sh", SCRIPT.read_text()], kind="process"
        )
        status = kernel.call("wait", pid=pid, timeout=60)
        with kernel.client() as c:
            out = "".join(i["data"] for i in c.stream("logs", pid=pid) if i["stream"] == "stdout")
            fd = c.call("open", path="/shared/from-sh.txt")
            content = c.call("read", fd=fd, n=100)
        assert status["status"] == 0, out
        # its own pid; an fd kept between runs (the channel is the process); its own authority;
        # two runs at once take turns on the one channel
        assert out.splitlines() == [f"pid {pid}", "14", "null", "status exit 5", "1", "1"]
        assert content == b"written by sh\n"
    finally:
        if CGROUPS.usable:
            CgroupManager(home_cgroup_id(kernel.home), CGROUPS).teardown()
