"""Mounted files with a real kernel process: an in-kernel agent's fds on /dev, /proc and its private
/tmp across kill -9 of the kernel and its resumption by replay (the same /dev/urandom bytes, the same
fds; the private /tmp lost, EBADF), and ``agentos fs`` on /proc, /dev and a session's own /tmp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess


def agentos(home: Path, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "agentos", *argv[:2], "--home", str(home), *argv[2:]],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
    )


def ok(home: Path, *argv: str, stdin: bytes = b"") -> bytes:
    r = agentos(home, *argv, stdin=stdin)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout


def logs(kernel: KernelProcess, pid: int) -> str:
    with kernel.client() as c:
        return "".join(item["data"] for item in c.stream("logs", pid=pid))


MOUNTED = """
from agentos import sdk
from agentos.errors import AgentOSError

async def main():
    null = await sdk.open("/dev/null", ["write"])
    rnd = await sdk.open("/dev/urandom")
    status = await sdk.open("/proc/self/status")
    tmp = await sdk.open("/tmp/scratch", ["read", "write", "create"])
    await sdk.write(tmp, b"before the crash")
    first = await sdk.read(rnd, 16)
    head = await sdk.read(status, 5)
    tty = await sdk.open("/dev/tty", ["write"])
    await sdk.write(tty, f"fds {null} {rnd} {status} {tmp} {tty} random {first.hex()}\\n".encode())
    await sdk.sleep(3)  # the kernel is killed here; after the reboot, replay brings it back to this point
    wrote = await sdk.write(null, b"after")
    rest = await sdk.read(status, 100_000)
    try:
        await sdk.read(tmp, 1)
        lost = "readable"
    except AgentOSError as e:
        lost = e.code
    again = await sdk.read(rnd, 16)
    await sdk.close(tmp)
    fresh = len(await sdk.readdir("/tmp"))
    out = await sdk.open("/shared/result", ["write", "create"])
    pid = await sdk.getpid()
    words = [wrote, first.hex(), again.hex(), lost, head.decode(), f"pid: {pid}" in rest.decode(), fresh]
    await sdk.write(out, " ".join(map(str, words)).encode())
    await sdk.close(out)
"""


def test_mounted_fds_survive_kill_9_and_replay_answers_the_same_random_bytes(
    kernel: KernelProcess, agent_file: Any
) -> None:
    pid = int(kernel.call("spawn", target=agent_file(MOUNTED)))
    line = poll(lambda: next((ln for ln in logs(kernel, pid).splitlines() if ln.startswith("fds ")), None))
    kernel.kill9()
    kernel.boot()
    with kernel.client() as c:
        assert c.call("wait", pid=pid, timeout=30)["status"] == 0, logs(kernel, pid)
    fds, _, random_hex = line.partition(" random ")
    assert fds == "fds 3 4 5 6 7"
    wrote, first, again, lost, head, saw_pid, fresh = (
        ok(kernel.home, "fs", "cat", "/shared/result").decode().split()
    )
    assert first == random_hex, "the replayed read was answered with the bytes journaled before the crash"
    assert again != first and len(again) == 32, "a live read after the replay: new bytes"
    assert (wrote, lost, head, saw_pid) == ("5", "EBADF", "name:", "True"), "fds on /dev and /proc still work"
    assert fresh == "0", "its /tmp went with the kernel: a new, empty one"
    assert logs(kernel, pid).count("fds ") == 1, "the /dev/tty write was not redone by the replay"


def test_fs_cli_on_proc_dev_and_a_sessions_own_tmp(kernel: KernelProcess) -> None:
    home = kernel.home
    listing = ok(home, "fs", "ls", "/").decode().splitlines()[1:]
    assert [(line[0], line.split()[-1]) for line in listing] == [
        ("d", "dev"),
        ("d", "proc"),
        ("d", "shared"),
        ("d", "tmp"),
    ]
    assert ok(home, "fs", "ls", "/dev").decode().splitlines()[1].startswith("c0666")
    status = dict(
        line.split(": ", 1) for line in ok(home, "fs", "cat", "/proc/1/status").decode().splitlines()
    )
    assert (status["name"], status["kind"], status["pid"]) == ("init", "init", "1")
    assert ok(home, "fs", "cat", "/dev/null") == b""
    assert b"/tmp\ttmp" in ok(home, "fs", "cat", "/proc/mounts")
    ok(home, "fs", "put", "-", "/tmp/mine", stdin=b"one session's")
    r = agentos(home, "fs", "cat", "/tmp/mine")
    assert r.returncode == 1 and b"ENOENT" in r.stderr, "each command is a session with its own /tmp"
    r = agentos(home, "fs", "mkdir", "/proc/x")
    assert r.returncode == 1 and b"EROFS" in r.stderr
