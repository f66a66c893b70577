"""Mount points in the file system namespace (``agentos/kernel/vfs/mounts.py``): ``/dev``, ``/proc``, a
private ``/tmp`` per process, the shared ``/shared``, and per-process roots.

In-process: a kernel booted on a fresh home and driven through ``Kernel.call`` as the runtime drives
it — each device, each /proc file for an agent and a session, /proc/self, the private /tmp (one per
agent, not in the event log, gone at exit, counted against ``memory_bytes``), fds on mounted files
sharing the fd table and surviving a restart (a private /tmp's then EBADF), EXDEV, EROFS, EBUSY,
capability denials, and the state rebuilt from the log equal to the live one.
(``test_vfs_mounts_live.py`` does the same across a real kill -9 with an agent resumed by replay.)
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos import param
from agentos.errors import AgentOSError
from agentos.kernel import sysfile
from agentos.kernel.boot import rebuild_state
from agentos.kernel.calls import Caller
from agentos.kernel.vfs.view import own_mount, physical
from agentos.state import events as ev
from agentos.state.world import state_hash
from agentos.testing.kernelrig import KernelRig, run_rig


class Rig(KernelRig):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.seen: list[ev.Payload] = []

    def boot(self) -> None:
        super().boot()
        self.k.watch(frozenset({ev.ConsoleWrite, ev.AccessDenied}), lambda seq, e: self.seen.append(e))

    def cat(self, who: Caller, path: str) -> bytes:  # type: ignore[override] - who reads it matters here
        fd = self(who, "open", path=path)
        data = self(who, "read", fd=fd, n=param.MAX_ARG_BYTES)
        self(who, "close", fd=fd)
        return bytes(data)

    def text(self, who: Caller, path: str) -> dict[str, str]:
        """A ``key: value`` /proc file, parsed."""
        return dict(line.split(": ", 1) for line in self.cat(who, path).decode().splitlines())

    def table(self, who: Caller, path: str) -> list[dict[str, str]]:
        """A tab-separated /proc file under its header line, parsed."""
        header, *rows = self.cat(who, path).decode().splitlines()
        return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]

    def events(self, kind: str) -> list[Any]:
        """The committed events of a kind, decoded (await ``committer.durable`` first)."""
        return [
            ev.decode(rec.kind, rec.version, rec.payload)
            for rec in self.k.log.read(kinds=[kind], conn=self.k.reader)
        ]


def run(tmp_path: Path, body: Callable[[Rig], Awaitable[None] | None]) -> None:
    run_rig(Rig(tmp_path), body)


# -- the namespace --------------------------------------------------------------------------------------


def test_mount_points_are_routed_by_path_components(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        assert r(p, "readdir", path="/") == ["dev", "proc", "shared", "tmp"]
        r(p, "mkdir", path="/procx")  # not /proc: a world directory
        r(p, "mkdir", path="/devices")
        assert r(p, "readdir", path="/") == ["dev", "devices", "proc", "procx", "shared", "tmp"]
        assert "ino" in r(p, "stat", path="/procx") and "mount" not in r(p, "stat", path="/procx")
        assert r(p, "stat", path="/proc")["mount"] == "/proc"
        assert r(p, "stat", path="/shared/../dev/./null")["kind"] == "chardev", "normalised, then routed"
        r.fails(p, "EEXIST", "mkdir", path="/proc")
        r.fails(p, "EEXIST", "mkdir", path="/tmp")
        for point in ("/proc", "/dev", "/tmp"):
            r.fails(p, "EBUSY", "rmdir", path=point)
        r.fails(p, "EXDEV", "rename", src="/tmp", dst="/elsewhere")
        r.fails(p, "EXDEV", "rename", src="/procx", dst="/proc/x")

    run(tmp_path, body)


def test_a_world_symlink_into_a_mount_is_routed_where_it_leads(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        r(a, "symlink", target="/proc/self", path="/shared/me")
        r(a, "symlink", target="/dev/null", path="/shared/null")
        assert r.text(a, "/shared/me/status")["pid"] == str(a.pid), "checked and routed as /proc/<pid>/status"
        assert r(a, "stat", path="/shared/null")["kind"] == "chardev"
        assert r(a, "stat", path="/shared/null", follow=False)["kind"] == "symlink"
        r(a, "unlink", path="/shared/null")  # the link itself, not /dev/null (EROFS)
        assert r(a, "readdir", path="/shared") == ["me"]
        assert r(a, "stat", path="/dev/null")["kind"] == "chardev"

    run(tmp_path, body)


# -- /dev -------------------------------------------------------------------------------------------------


def test_dev_null_zero_random_and_their_stat_and_readdir(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()  # the default policy's device capabilities
        assert r(a, "readdir", path="/dev") == ["console", "null", "random", "tty", "urandom", "zero"]
        st = r(a, "stat", path="/dev/zero")
        assert (st["kind"], st["mode"], st["size"], st["mount"]) == ("chardev", 0o666, 0, "/dev")
        assert r(a, "stat", path="/dev")["kind"] == "dir"
        null = r(a, "open", path="/dev/null", flags=["read", "write"])
        assert r(a, "write", fd=null, data=b"gone") == 4
        assert r(a, "read", fd=null, n=100) == b"", "EOF"
        zero = r(a, "open", path="/dev/zero")
        assert r(a, "read", fd=zero, n=5) == b"\0" * 5
        assert r(a, "seek", fd=zero, offset=100) == 0, "a device does not seek"
        for name in ("random", "urandom"):
            fd = r(a, "open", path=f"/dev/{name}")
            one, two = r(a, "read", fd=fd, n=32), r(a, "read", fd=fd, n=32)
            assert len(one) == len(two) == 32 and one != two
            assert len(r(a, "read", fd=fd, n=param.MAX_ARG_BYTES)) == param.MAX_RANDOM_BYTES, "a short read"
        fs = r.k.state.world.vfs
        assert {fs.open_file(a.pid, fd).offset for fd in fs.fds[a.pid]} == {0}, "device offsets stay 0"
        no_fd_events = {"vfs.offset", "vfs.wrote", "vfs.created", "vfs.version"}
        assert not [e for kind in no_fd_events for e in r.events(kind)], "devices leave no file events"

    run(tmp_path, body)


def test_dev_console_and_tty_write_to_the_console_and_read_eof(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        for name in ("console", "tty"):
            fd = r(a, "open", path=f"/dev/{name}", flags=["read", "write"])
            assert r(a, "write", fd=fd, data=f"to {name}\n".encode()) == len(name) + 4
            assert r(a, "read", fd=fd, n=10) == b"", "the console has no input: EOF"
        lines = [r.k.blob(e.blob) for e in r.seen if isinstance(e, ev.ConsoleWrite)]
        assert lines == [b"to console\n", b"to tty\n"], "what agentos logs shows"
        assert all(e.pid == a.pid and e.stream == "stdout" for e in r.seen if isinstance(e, ev.ConsoleWrite))
        fd = r(a, "open", path="/dev/tty", flags=["write"])
        big = b"x" * (param.MAX_CONSOLE_WRITE + 10)
        assert r(a, "write", fd=fd, data=big) == param.MAX_CONSOLE_WRITE, "a short write"
        group = r.k.state.world.procs.get(a.pid).group
        r(r.person, "group_limit", group=group, limits={"console_bytes": 10})
        assert r.fails(a, "EDQUOT", "write", fd=fd, data=b"over the console quota")

    run(tmp_path, body)


def test_dev_is_fixed_eexist_erofs_enoent_enotdir_eisdir(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person  # even the root capability cannot change /dev
        r.fails(p, "EROFS", "open", path="/dev/new", flags=["write", "create"])
        r.fails(p, "EROFS", "mkdir", path="/dev/d")
        r.fails(p, "EROFS", "unlink", path="/dev/null")
        r.fails(p, "EROFS", "rename", src="/dev/null", dst="/dev/nothing")
        r.fails(p, "EEXIST", "mkdir", path="/dev/null")
        r.fails(p, "EEXIST", "open", path="/dev/null", flags=["write", "create", "exclusive"])
        r.fails(p, "ENOENT", "open", path="/dev/nope")
        r.fails(p, "ENOENT", "stat", path="/dev/nope")
        r.fails(p, "ENOTDIR", "stat", path="/dev/null/x")
        r.fails(p, "ENOTDIR", "readdir", path="/dev/null")
        r.fails(p, "EISDIR", "open", path="/dev")
        r.fails(p, "EXDEV", "rename", src="/dev/null", dst="/shared/null")
        fd = r(p, "open", path="/dev/null", flags=["write", "create", "truncate"])  # both mean nothing here
        r.fails(p, "EBADF", "read", fd=fd, n=1)
        assert {"new", "d", "nothing"}.isdisjoint(r(p, "readdir", path="/dev")), "nothing was made in /dev"

    run(tmp_path, body)


def test_device_capabilities_are_paths_like_any_other(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent(caps=[{"resource": "fs:/dev/null", "rights": ["write"]}, {"resource": "sys:fd"}])
        fd = r(a, "open", path="/dev/null", flags=["write"])
        assert r(a, "write", fd=fd, data=b"x") == 1
        for call, args in [
            ("open", {"path": "/dev/null"}),  # read: not granted
            ("open", {"path": "/dev/urandom"}),
            ("open", {"path": "/dev/tty", "flags": ["write"]}),
            ("readdir", {"path": "/dev"}),
        ]:
            r.fails(a, "EACCES", call, **args)
        denied = [e.resource for e in r.seen if isinstance(e, ev.AccessDenied)]
        assert denied == ["fs:/dev/null", "fs:/dev/urandom", "fs:/dev/tty", "fs:/dev"], "each refusal audited"

    run(tmp_path, body)


# -- /proc ------------------------------------------------------------------------------------------------


def test_proc_files_of_a_running_agent(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent(argv=["one", "two words"], name="worker")
        r.put(a, "/shared/out", b"x")
        held = r(a, "open", path="/shared/out")
        r(a, "seek", fd=held, offset=1)
        status = r.text(a, f"/proc/{a.pid}/status")
        assert (status["name"], status["pid"], status["ppid"], status["kind"]) == (
            "worker",
            str(a.pid),
            str(r.person.pid),
            "agent",
        )
        p = r.k.state.world.procs.get(a.pid)
        assert status["group"] == p.group and status["root"] == "/" and status["opaque"] == "no"
        assert int(status["syscalls"]) >= 0 and float(status["cpu_ms"]) >= 0 and status["fds"] == "2"
        assert r.cat(a, f"/proc/{a.pid}/cmdline") == f"{r.target}\0one\0two words\0".encode()
        caps = r.table(a, f"/proc/{a.pid}/caps")
        listed = r(a, "cap_list")
        assert [(int(c["cap"]), c["resource"]) for c in caps] == [(c["cap"], c["resource"]) for c in listed]
        assert {c["status"] for c in caps} == {"live"} and caps[0]["rights"] == ",".join(listed[0]["rights"])
        fds = r.table(a, "/proc/self/fds")
        assert [(f["fd"], f["flags"], f["offset"], f["path"]) for f in fds] == [
            ("3", "read", "1", "/shared/out"),
            ("4", "read", "0", f"/proc/{a.pid}/fds"),
        ], "an fd of its own, and the one reading this"
        limits = {row["limit"]: row for row in r.table(a, "/proc/self/limits") if row["group"] == p.group}
        assert limits["memory_bytes"]["max"] == str(1 << 30) and limits["spawns"]["max"] == "10000"
        assert limits["live_processes"]["used"] == "1"
        r.fails(a, "ENOENT", "stat", path="/proc/self/nothing")

    run(tmp_path, body)


def test_proc_self_meminfo_uptime_mounts_and_readdir(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        a = r.agent()
        assert r(p, "readdir", path="/proc") == [
            "meminfo",
            "mounts",
            "self",
            "uptime",
            "1",
            str(p.pid),
            str(a.pid),
        ]
        assert r(p, "readdir", path=f"/proc/{a.pid}") == ["caps", "cmdline", "fds", "limits", "status"]
        assert r(p, "readdir", path="/proc/self") == r(p, "readdir", path=f"/proc/{p.pid}")
        assert r.text(p, "/proc/self/status")["pid"] == str(p.pid), "a session's own"
        assert r.text(a, "/proc/self/status")["pid"] == str(a.pid), "an agent's own"
        assert r.text(p, "/proc/self/status")["kind"] == "session"
        assert r.cat(p, "/proc/self/cmdline") == b""
        session_caps = r.table(p, "/proc/self/caps")
        assert [c["resource"] for c in session_caps] == ["*"], "a session acts with init's root capability"
        st = r(p, "stat", path=f"/proc/{a.pid}/status")
        assert (st["kind"], st["mode"], st["mount"]) == ("file", 0o444, "/proc")
        assert r(p, "stat", path="/proc/self")["kind"] == "dir"
        mem = r.text(a, "/proc/meminfo")
        assert int(mem["processes"]) == 3 and int(mem["host_total_bytes"]) > 0
        assert int(mem["tmp_max_bytes"]) == param.TMP_MAX_BYTES
        up = r.text(a, "/proc/uptime")
        assert float(up["uptime_seconds"]) >= 0 and up["boot"] == "1" and int(up["seq"]) > 0
        mounts = r.table(a, "/proc/mounts")
        assert [(m["point"], m["kind"], m["options"]) for m in mounts] == [
            ("/dev", "dev", "rw"),
            ("/proc", "proc", "ro"),
            ("/tmp", "tmp", "rw"),
        ]
        r(a, "exit", status=0)
        assert r.text(p, f"/proc/{a.pid}/status")["state"] == "zombie", "shown until it is reaped"
        r(p, "wait", pid=a.pid)
        r.fails(p, "ENOENT", "stat", path=f"/proc/{a.pid}")
        assert str(a.pid) not in r(p, "readdir", path="/proc")

    run(tmp_path, body)


def test_a_proc_file_is_made_at_its_open(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        fd = r(a, "open", path="/proc/self/status")
        first = r(a, "read", fd=fd, n=20)
        for _ in range(5):
            r(a, "getppid")  # journaled calls the status counts (in-process: no journal, so open files)
            r(a, "open", path="/dev/null")
        rest = r(a, "read", fd=fd, n=10_000)
        assert r(a, "seek", fd=fd, offset=0, whence="set") == 0
        assert r(a, "read", fd=fd, n=10_000) == first + rest, "one consistent text, read in pieces"
        assert r(a, "seek", fd=fd, offset=0, whence="end") == len(first + rest)
        again = r.text(a, "/proc/self/status")
        assert again["fds"] == "7" and b"fds: 1\n" in first + rest, "a new open sees now"

    run(tmp_path, body)


def test_proc_is_read_only(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r.fails(p, "EROFS", "open", path="/proc/self/status", flags=["write"])
        r.fails(p, "EROFS", "open", path="/proc/uptime", flags=["read", "append"])
        r.fails(p, "EROFS", "open", path="/proc/new", flags=["write", "create"])
        r.fails(p, "EROFS", "open", path="/proc/new", flags=["read", "create"])
        r.fails(p, "EROFS", "mkdir", path="/proc/d")
        r.fails(p, "EROFS", "unlink", path="/proc/uptime")
        r.fails(p, "EROFS", "rmdir", path="/proc/self")
        r.fails(p, "EROFS", "rename", src="/proc/uptime", dst="/proc/up")
        r.fails(p, "ENOENT", "open", path="/proc/999999/status")
        assert {"new", "d", "up"}.isdisjoint(r(p, "readdir", path="/proc")), "nothing was made in /proc"
        r.fails(p, "ENOENT", "open", path="/proc/01/status")  # one name per process
        r.fails(p, "ENOTDIR", "stat", path="/proc/uptime/x")
        r.fails(p, "ENOTDIR", "open", path="/proc/self/status/")
        r.fails(p, "EISDIR", "open", path="/proc/self")

    run(tmp_path, body)


def test_proc_shows_no_more_than_ps_and_cap_list_would(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a, b = r.agent(), r.agent()
        assert r.text(a, f"/proc/{b.pid}/status")["pid"] == str(b.pid), "what ps shows (sys:proc list)"
        assert r.cat(a, f"/proc/{b.pid}/cmdline").startswith(r.target.encode())
        for name in ("caps", "fds", "limits"):
            r.fails(a, "EACCES", "open", path=f"/proc/{b.pid}/{name}")
        assert [e.resource for e in r.seen if isinstance(e, ev.AccessDenied)] == ["admin", "admin", "admin"]
        assert r.table(r.person, f"/proc/{b.pid}/caps"), "an administrator sees them, as with `agentos caps`"
        quiet = r.agent(caps=[{"resource": "fs:/proc", "rights": ["read"]}, {"resource": "sys:fd"}])
        assert r.text(quiet, "/proc/self/status")["pid"] == str(quiet.pid), "its own: always"
        r.fails(quiet, "EACCES", "open", path=f"/proc/{b.pid}/status")  # no sys:proc list: no one else's
        r.fails(quiet, "EACCES", "readdir", path="/proc")  # no list right on /proc
        opaque = r.agent(opaque=True)
        r.fails(opaque, "EACCES", "cap_list")
        err = r.fails(opaque, "EACCES", "open", path="/proc/self/caps")
        assert "opaque" in str(err)
        assert r.text(opaque, "/proc/self/status")["opaque"] == "yes"
        bare = r.agent(caps=[{"resource": "sys:fd"}])
        r.fails(bare, "EACCES", "open", path="/proc/self/status")  # fs:/proc is a path capability

    run(tmp_path, body)


# -- the private /tmp -------------------------------------------------------------------------------------


def test_each_agent_has_its_own_tmp(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a, b = r.agent(), r.agent()
        r.put(a, "/tmp/out", b"from a")
        r.put(b, "/tmp/out", b"from b, longer")
        assert r.cat(a, "/tmp/out") == b"from a" and r.cat(b, "/tmp/out") == b"from b, longer"
        assert r(r.person, "readdir", path="/tmp") == [], "the session's own /tmp is empty"
        st = r(a, "stat", path="/tmp/out")
        assert (st["kind"], st["size"], st["mode"], st["mount"]) == ("file", 6, 0o644, "/tmp")
        assert r(a, "stat", path="/tmp")["mode"] == 0o1777
        r(a, "mkdir", path="/tmp/d")
        r(a, "rename", src="/tmp/out", dst="/tmp/d/moved")
        assert r(a, "readdir", path="/tmp") == ["d"] and r(a, "readdir", path="/tmp/d") == ["moved"]
        assert r.cat(a, "/tmp/d/moved") == b"from a"
        r.fails(a, "ENOTEMPTY", "rmdir", path="/tmp/d")
        r.fails(a, "EISDIR", "unlink", path="/tmp/d")
        r.fails(a, "EXDEV", "rename", src="/tmp/d/moved", dst="/shared/moved")
        r.fails(b, "EXDEV", "rename", src="/shared", dst="/tmp/shared")
        r(a, "unlink", path="/tmp/d/moved")
        r(a, "rmdir", path="/tmp/d")
        assert r(a, "readdir", path="/tmp") == [] and r.cat(b, "/tmp/out") == b"from b, longer"

    run(tmp_path, body)


def test_tmp_follows_posix_like_the_versioned_tree(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        fd = r(a, "open", path="/tmp/f", flags=["read", "write", "create"], mode=0o600)
        assert r(a, "write", fd=fd, data=b"hello") == 5
        assert r(a, "read", fd=fd, n=10) == b"", "the offset is at the end"
        assert r(a, "seek", fd=fd, offset=-2, whence="end") == 3
        assert r(a, "write", fd=fd, data=b"LO!") == 3
        assert r(a, "seek", fd=fd, offset=8) == 8
        r(a, "write", fd=fd, data=b"z")
        r(a, "seek", fd=fd, offset=0)
        assert r(a, "read", fd=fd, n=100) == b"helLO!\0\0z", "a hole reads as zeros"
        assert r(a, "stat", path="/tmp/f")["mode"] == 0o600
        ap = r(a, "open", path="/tmp/f", flags=["append"])
        r(a, "write", fd=ap, data=b"+")
        r(a, "fsync", fd=ap)
        r(a, "unlink", path="/tmp/f")
        r.fails(a, "ENOENT", "stat", path="/tmp/f")
        r(a, "seek", fd=fd, offset=0)
        assert r(a, "read", fd=fd, n=100) == b"helLO!\0\0z+", "an unlinked file stays readable through its fd"
        r.fails(a, "EEXIST", "mkdir", path="/tmp")
        r(a, "mkdir", path="/tmp/d")
        r.fails(a, "EEXIST", "open", path="/tmp/d", flags=["write", "create", "exclusive"])
        r.fails(a, "EISDIR", "open", path="/tmp/d")
        r.fails(a, "EISDIR", "open", path="/tmp/new/", flags=["write", "create"])
        r.fails(a, "ENOENT", "open", path="/tmp/missing")
        r.fails(a, "ENOENT", "mkdir", path="/tmp/x/y")
        r.put(a, "/tmp/g", b"G")
        r.fails(a, "ENOTDIR", "mkdir", path="/tmp/g/h")
        r.fails(a, "ENOTDIR", "rmdir", path="/tmp/g")
        r.fails(a, "ENOTDIR", "stat", path="/tmp/g/")
        r.fails(a, "EISDIR", "rename", src="/tmp/g", dst="/tmp/d")
        r.fails(a, "EINVAL", "rename", src="/tmp/d", dst="/tmp/d/e")
        r.fails(a, "EBUSY", "rename", src="/tmp/d", dst="/tmp")
        r(a, "mkdir", path="/tmp/e")
        r(a, "rename", src="/tmp/e", dst="/tmp/d")  # a directory over an empty one
        r.put(a, "/tmp/h", b"H")
        r(a, "rename", src="/tmp/h", dst="/tmp/g")  # replaces a file
        assert r(a, "readdir", path="/tmp") == ["d", "g"] and r.cat(a, "/tmp/g") == b"H"
        fd = r(a, "open", path="/tmp/g", flags=["write", "truncate"])
        assert r(a, "stat", path="/tmp/g")["size"] == 0
        r.fails(a, "EBADF", "read", fd=fd, n=1)

    run(tmp_path, body)


def test_tmp_is_not_journaled_and_is_gone_at_exit(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        a = r.agent()
        r(a, "mkdir", path="/tmp/work")
        r.put(a, "/tmp/work/big", b"s3cr3t-scratch" * 1000)
        fd = r(a, "open", path="/tmp/work/big")
        assert r(a, "read", fd=fd, n=14) == b"s3cr3t-scratch"
        assert int(r.text(a, "/proc/self/status")["tmp_bytes"]) > 14_000
        held = r.k.quotas.held(r.k.state.world.procs.get(a.pid).group, "memory_bytes")
        assert held > 14_000, "counted against memory_bytes while it exists"
        await r.k.committer.durable(r.k.head_seq)
        tmp_events = [e for e in r.events("vfs.opened") if e.mount == "/tmp"]
        assert len(tmp_events) == 2 and all(e.ino == 0 for e in tmp_events), "only the fds are state"
        assert not [e for e in r.events("vfs.created") if e.name in ("work", "big")], "no inode events"
        assert not r.events("vfs.wrote"), "no data events"
        blobs = b"".join(bytes(row[0]) for row in r.k.reader.execute("SELECT data FROM blobs"))
        assert b"s3cr3t-scratch" not in blobs, "not one byte of it in the log's blobs"
        r(a, "exit", status=0)
        assert a.pid not in r.k.mounts.tmps and not r.k.mounts.handles
        assert r.k.quotas.held("/", "memory_bytes") == 0, "given back"

    run(tmp_path, body)


def test_tmp_memory_quota_edquot_and_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        group = r.k.state.world.procs.get(a.pid).group
        r(r.person, "group_limit", group=group, limits={"memory_bytes": 1000})
        fd = r(a, "open", path="/tmp/f", flags=["write", "create"])
        assert r(a, "write", fd=fd, data=b"x" * 800) == 800
        err = r.fails(a, "EDQUOT", "write", fd=fd, data=b"y" * 200)
        assert "memory_bytes" in str(err)
        assert r(a, "write", fd=fd, data=b"z" * 50) == 50, "room for this much"
        r.fails(a, "EDQUOT", "mkdir", path="/tmp/" + "d" * 200)
        used = next(g for g in r(r.person, "groups") if g["name"] == group)["usage"]["memory_bytes"]
        assert 850 < used <= 1000, "agentos groups shows it"
        r(a, "close", fd=fd)
        r(a, "unlink", path="/tmp/f")
        fd = r(a, "open", path="/tmp/g", flags=["write", "create"])
        assert r(a, "write", fd=fd, data=b"x" * 800) == 800, "an unlink gave the memory back"
        monkeypatch.setattr(param, "TMP_MAX_BYTES", 2000)
        r.put(r.person, "/tmp/s", b"x" * 1000)  # a session: no quota, but the per-process cap
        err = r.fails(
            r.person,
            "ENOSPC",
            "write",
            fd=r(r.person, "open", path="/tmp/s", flags=["append"]),
            data=b"x" * 1000,
        )
        assert "full" in str(err)

    run(tmp_path, body)


# -- fds on mounted files -------------------------------------------------------------------------------------


def test_mounted_fds_share_the_fd_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def body(r: Rig) -> None:
        a = r.agent()
        w = r(a, "open", path="/shared/w", flags=["write", "create"])
        r(a, "write", fd=w, data=b"pending until the exit")
        n = r(a, "open", path="/dev/null", flags=["write"])
        t = r(a, "open", path="/tmp/t", flags=["write", "create"])
        s = r(a, "open", path="/proc/self/status")
        assert (w, n, t, s) == (3, 4, 5, 6), "the lowest free fds, world and mounted alike"
        r(a, "close", fd=n)
        assert r(a, "open", path="/proc/uptime") == 4, "a closed fd is reused"
        r.fails(a, "EBADF", "close", fd=n + 100)
        r(a, "write", fd=t, data=b"0123456789")
        r(a, "seek", fd=t, offset=2)
        twin = r(a, "dup", fd=t)
        assert twin == 7 and r(a, "seek", fd=twin, offset=0, whence="cur") == 2, "dup shares the offset"
        r(a, "close", fd=t)
        assert r(a, "write", fd=twin, data=b"ab") == 2, "its twin still holds the open file"
        r(a, "close", fd=twin)
        r.fails(a, "EBADF", "write", fd=t, data=b"x")
        r.fails(a, "EBADF", "read", fd=w, n=1)
        monkeypatch.setattr(sysfile, "MAX_FDS", 5)
        assert [r(a, "open", path="/dev/zero") for _ in range(2)] == [5, 7]
        r.fails(a, "EMFILE", "open", path="/dev/zero")
        fs = r.k.state.world.vfs
        assert len(fs.fds[a.pid]) == 5 and len(r.k.mounts.handles) == 4
        r(a, "exit", status=0)
        assert a.pid not in fs.fds and not r.k.mounts.handles, "its exit closed them all"
        assert r.k.state.world.vfs.inodes[fs.resolve("/shared/w")].version_seq > 0

    run(tmp_path, body)


def test_mounted_fds_survive_a_restart_except_the_private_tmps(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        a = r.agent()
        null = r(a, "open", path="/dev/null", flags=["write"])
        proc = r(a, "open", path="/proc/self/cmdline")
        assert r(a, "read", fd=proc, n=3) == r.target.encode()[:3]
        tmp = r(a, "open", path="/tmp/t", flags=["read", "write", "create"])
        r(a, "write", fd=tmp, data=b"scratch")
        await r.k.committer.durable(r.k.head_seq)
        live = state_hash(r.k.state)
        assert state_hash(rebuild_state(r.k.log, until=r.k.state.seq, conn=r.k.reader)) == live
        await r.k.close(clean=False)  # as a crash
        r.boot()
        assert r(a, "write", fd=null, data=b"still works") == 11
        assert r(a, "read", fd=proc, n=1000) == (r.target + "\0").encode()[3:], "re-made, at the old offset"
        err = r.fails(a, "EBADF", "read", fd=tmp, n=1)
        assert "lost" in str(err) and "/tmp" in str(err)
        r.fails(a, "EBADF", "write", fd=tmp, data=b"x")
        r.fails(a, "EBADF", "fsync", fd=tmp)
        r(a, "close", fd=tmp)
        assert r(a, "readdir", path="/tmp") == [], "a new, empty /tmp"
        assert r(a, "open", path="/tmp/t", flags=["write", "create"]) == tmp

    run(tmp_path, body)


def test_state_rebuilt_from_the_log_equals_the_live_state(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        a, b = r.agent(), r.agent()
        for who in (a, b):
            r.put(who, "/tmp/x", b"x")
            r(who, "open", path="/tmp/x")
            fd = r(who, "open", path="/proc/self/status")
            r(who, "read", fd=fd, n=7)
            r(who, "open", path="/dev/urandom")
        r.put(a, "/shared/a", b"a")
        r(b, "exit", status=3)
        r.k.emit(ev.VfsMounted(path="/mnt/host", kind="host", source="/srv/x", readonly=True, pid=1))
        assert r(r.person, "readdir", path="/") == ["dev", "proc", "shared", "tmp"], "no /mnt: not shown"
        r(r.person, "mkdir", path="/mnt")
        assert r(r.person, "readdir", path="/mnt") == ["host"], "a world mount point is shown"
        assert r.table(r.person, "/proc/mounts")[1] == {
            "point": "/mnt/host",
            "kind": "host",
            "source": "/srv/x",
            "options": "ro",
        }
        err = r.fails(r.person, "EIO", "stat", path="/mnt/host/x")  # the host directory is not there
        assert "host directory unavailable" in err.message
        await r.k.committer.durable(r.k.head_seq)
        rebuilt = rebuild_state(r.k.log, until=r.k.state.seq, conn=r.k.reader)
        assert state_hash(rebuilt) == state_hash(r.k.state)
        assert "/mnt/host" in rebuilt.world.vfs.mounts
        r.k.emit(ev.VfsUnmounted(path="/mnt/host"))
        assert r(r.person, "readdir", path="/mnt") == []

    run(tmp_path, body)


def test_a_transaction_changes_the_versioned_tree_only(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        a = r.person
        for op in (
            {"op": "write", "path": "/tmp/x", "data": b"x"},
            {"op": "mkdir", "path": "/tmp/d"},
            {"op": "rename", "src": "/shared/a", "dst": "/proc/a"},
        ):
            r.fails(a, "EXDEV", "fs_transaction", ops=[op])
        assert r(a, "readdir", path="/tmp") == [], "nothing happened in its /tmp"

    run(tmp_path, body)


# -- a home from before mounts ------------------------------------------------------------------------------


def test_an_older_homes_shared_tmp_becomes_shared_at_boot(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        fs = r.k.state.world.vfs
        shared = fs.resolve("/shared")
        # the layout of a home from before: the shared, versioned scratch directory was /tmp
        r.k.emit(ev.VfsRenamed(parent=fs.root, name="shared", new_parent=fs.root, new_name="tmp", ino=shared))
        assert r(r.person, "readdir", path="/") == ["dev", "proc", "tmp"]
        r.k.emit_all(
            [
                ev.VfsCreated(
                    parent=shared, name="old", ino=r.k.state.ledger.next_ino, kind="file", mode=0o644, pid=1
                )
            ]
        )
        await r.k.close(clean=True)
        r.boot()
        assert r(r.person, "readdir", path="/") == ["dev", "proc", "shared", "tmp"]
        assert r(r.person, "readdir", path="/shared") == ["old"], "its files moved with it"
        assert r(r.person, "stat", path="/shared")["mode"] == 0o1777

    run(tmp_path, body)


# -- per-process roots ------------------------------------------------------------------------------------------


def test_a_rooted_agent_sees_its_subtree_as_root(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/shared/proj")
        r(p, "mkdir", path="/shared/proj/src")
        r.put(p, "/shared/proj/src/main.py", b"print(1)")
        r.put(p, "/shared/secret", b"s")
        a = r.agent(root="/shared/proj")
        assert r(a, "readdir", path="/") == ["dev", "proc", "src", "tmp"], "its root, with its own mounts"
        assert r.cat(a, "/src/main.py") == b"print(1)"
        assert r.cat(a, "/../../src/./main.py") == b"print(1)", ".. at its root stays there"
        r.fails(a, "ENOENT", "stat", path="/../secret")
        r.fails(a, "ENOENT", "stat", path="/shared/secret")  # nothing above its root is reachable
        r.put(a, "/out.txt", b"made inside")
        assert r.cat(p, "/shared/proj/out.txt") == b"made inside", "the real file"
        r.put(a, "/tmp/scratch", b"mine")
        assert (
            r.cat(a, "/tmp/scratch") == b"mine" and r.text(a, "/proc/self/status")["root"] == "/shared/proj"
        )
        assert r(a, "readdir", path="/dev")[0] == "console"
        caps = {c["resource"]: c["rights"] for c in r(a, "cap_list")}
        assert "fs:/shared" not in caps and caps["fs:/shared/proj"] == ["list", "read", "write"], "re-rooted"
        assert "fs:/tmp" in caps and "fs:/dev/null" in caps and "fs:/proc" in caps
        r(p, "mkdir", path="/shared/proj/src/sub")
        child = Caller(pid=r(a, "spawn", target=r.target, root="/src"), kind="agent")
        assert r.k.state.world.procs.get(child.pid).root == "/shared/proj/src", "roots nest"
        assert r(child, "readdir", path="/") == ["dev", "main.py", "proc", "sub", "tmp"]
        inherit = Caller(pid=r(a, "spawn", target=r.target), kind="agent")
        assert r(inherit, "readdir", path="/") == r(a, "readdir", path="/"), "a child keeps its parent's root"
        r.fails(a, "ENOENT", "spawn", target=r.target, root="/nope")
        r.fails(a, "ENOTDIR", "spawn", target=r.target, root="/out.txt")
        r.fails(a, "EXDEV", "spawn", target=r.target, root="/tmp")

    run(tmp_path, body)


def test_a_root_needs_a_capability_and_narrows_the_childs(tmp_path: Path) -> None:
    def body(r: Rig) -> None:
        p = r.person
        r(p, "mkdir", path="/data")
        r(p, "mkdir", path="/shared/proj")
        a = r.agent()  # the policy: fs:/shared, not fs:/data
        r.fails(a, "EACCES", "spawn", target=r.target, root="/data")
        b = Caller(pid=r(a, "spawn", target=r.target, root="/shared/proj"), kind="agent")
        resources = sorted(c["resource"] for c in r(b, "cap_list") if c["resource"].startswith("fs:"))
        assert resources == sorted(
            ["fs:/shared/proj", "fs:/tmp", "fs:/proc", "fs:/dev"]
            + [f"fs:/dev/{d}" for d in ("null", "zero", "random", "urandom", "console", "tty")]
        )
        wide = r.agent(
            root="/shared/proj",
            caps=[
                {"resource": "fs:/", "rights": ["read", "list"]},
                {"resource": "sys:fd"},
                {"resource": "sys:cap"},
            ],
        )
        assert [c["resource"] for c in r(wide, "cap_list")] == ["fs:/shared/proj", "sys:fd", "sys:cap"]
        r.fails(wide, "EACCES", "open", path="/tmp/x", flags=["write", "create"])  # fs:/ was all it had

    run(tmp_path, body)


# -- fuzzing: paths under the mounts, and rooted paths ------------------------------------------------------

PARTS = [
    "proc",
    "dev",
    "tmp",
    "shared",
    "self",
    "1",
    "2",
    "..",
    ".",
    "",
    "null",
    "tty",
    "status",
    "caps",
    "x",
]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.sampled_from(PARTS) | st.text(alphabet="/.ab", max_size=6), max_size=8),
    slash=st.booleans(),
)
def test_a_rooted_path_never_leaves_its_root(parts: list[str], slash: bool) -> None:
    path = "/" + "/".join(parts) + ("/" if slash else "")
    for root in ("/shared/proj", "/a"):
        out = physical(root, path).rstrip("/") or "/"
        assert own_mount(out) or out == root or out.startswith(root + "/"), (path, out)


def test_random_calls_on_mounted_paths_get_typed_errors(tmp_path: Path) -> None:
    calls = [
        "open",
        "stat",
        "readdir",
        "mkdir",
        "unlink",
        "rmdir",
        "rename",
        "read",
        "write",
        "seek",
        "close",
    ]
    flags = ["read", "write", "append", "create", "exclusive", "truncate"]

    async def body(r: Rig) -> None:
        rng = random.Random(5)
        r(r.person, "mkdir", path="/shared/proj")
        who = [r.person, r.agent(), r.agent(root="/shared/proj")]
        for _ in range(3000):
            c = rng.choice(who)
            path = "/" + "/".join(rng.choice(PARTS) for _ in range(rng.randint(0, 4)))
            call = rng.choice(calls)
            args: dict[str, Any] = {"path": path}
            if call == "open":
                args["flags"] = rng.sample(flags, rng.randint(1, 3))
            elif call == "rename":
                args = {
                    "src": path,
                    "dst": "/" + "/".join(rng.choice(PARTS) for _ in range(rng.randint(1, 3))),
                }
            elif call in ("read", "write", "seek", "close"):
                args = {"fd": rng.randint(0, 12)} | {
                    "read": {"n": 64},
                    "write": {"data": b"xy"},
                    "seek": {"offset": rng.randint(-3, 3), "whence": rng.choice(["set", "cur", "end"])},
                    "close": {},
                }[call]
            try:
                r.k.call(c, call, args)
            except AgentOSError as err:
                assert err.category != "internal", (call, args, err)
        await r.k.committer.durable(r.k.head_seq)
        assert state_hash(rebuild_state(r.k.log, until=r.k.state.seq, conn=r.k.reader)) == state_hash(
            r.k.state
        )

    run(tmp_path, body)
