"""Host mounts in the kernel (``kernel/vfs/hostmount.py``, ``hostwriter.py``, ``hostundo.py``).

In-process first: the mount table and its errors, reads, writes published at close (never before
their record is durable), names, capabilities, escapes refused through the syscalls, history and
undo (with conflicts, never clobbering), and recovery of a change recorded but not made when the
kernel died. Then a real kernel process: ``agentos mount``/``mounts``/``umount``, an SDK agent
writing through a mount, its pending writes surviving kill -9, ``agentos fs history`` and
``agentos undo``. The escape battery of the resolver itself (openat2 and the walk, the symlink-swap
race) is ``test_hostfs.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostfs import FLIPPER
from test_vfs_syscalls import Rig, ok

from agentos.errors import AgentOSError
from agentos.kernel.calls import Block, Caller
from agentos.kernel.vfs import hostwriter
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess


async def fails(rig: Rig, who: Caller, code: str, name: str, **args: Any) -> AgentOSError:
    with pytest.raises(AgentOSError) as info:
        await rig.call(who, name, **args)
    assert info.value.code == code, (name, args, info.value)
    return info.value


def run(tmp_path: Path, body: Callable[[Rig, Path], Awaitable[None]]) -> None:
    host = tmp_path / "host"
    host.mkdir()

    async def main() -> None:
        rig = Rig(tmp_path)
        rig.boot()
        try:
            await body(rig, host)
        finally:
            await rig.k.close(clean=False)

    asyncio.run(main())


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): "<dir>" if p.is_dir() else p.read_text()
        for p in sorted(root.rglob("*"))
        if not p.is_symlink()
    }


async def agent_on_mount(rig: Rig, rights: list[str]) -> Caller:
    a = rig.agent()
    for resource in ("fs:/mnt", "fs:/mnt/*"):
        await rig.call(rig.person, "cap_delegate", to=a.pid, spec={"resource": resource, "rights": rights})
    return a


async def write(rig: Rig, who: Caller, path: str, data: bytes, flags: list[str] | None = None) -> None:
    fd = await rig.call(who, "open", path=path, flags=flags or ["write", "create", "truncate"])
    await rig.call(who, "write", fd=fd, data=data)
    await rig.call(who, "close", fd=fd)


# -- the mount table -------------------------------------------------------------------------------------


def test_mount_umount_and_their_errors(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        (host / "a.txt").write_text("A")
        got = await rig.call(p, "mount", source=str(host), path="/mnt")
        assert got == {"path": "/mnt", "source": str(host.resolve()), "readonly": False, "kind": "host"}
        assert "mnt" in await rig.call(p, "readdir", path="/")
        assert await rig.call(p, "readdir", path="/mnt") == ["a.txt"]
        rows = {r["path"]: r for r in await rig.call(p, "mounts")}
        assert set(rows) == {"/dev", "/proc", "/tmp", "/mnt"} and rows["/mnt"]["source"] == str(
            host.resolve()
        )
        await fails(rig, p, "EBUSY", "mount", source=str(host), path="/mnt")
        await fails(rig, p, "EBUSY", "mount", source=str(host), path="/mnt/inner")
        await fails(rig, p, "EBUSY", "mount", source=str(host), path="/proc/x")
        await fails(rig, p, "EBUSY", "mount", source=str(host), path="/")
        await fails(rig, p, "ENOENT", "mount", source=str(host / "missing"), path="/m2")
        await fails(rig, p, "ENOENT", "mount", source=str(host), path="/no/such/parent")
        await rig.call(p, "mkdir", path="/full")
        rig.put(p, "/full/f", b"x")
        await fails(rig, p, "ENOTEMPTY", "mount", source=str(host), path="/full")
        await fails(rig, p, "ENOTDIR", "mount", source=str(host), path="/full/f")
        fd = await rig.call(p, "open", path="/mnt/a.txt")
        await fails(rig, p, "EBUSY", "umount", path="/mnt")
        await rig.call(p, "close", fd=fd)
        await rig.call(p, "umount", path="/mnt")
        await fails(rig, p, "EINVAL", "umount", path="/mnt")
        await fails(rig, p, "EBUSY", "umount", path="/dev")
        assert "mnt" not in await rig.call(p, "readdir", path="/")
        await fails(rig, p, "ENOENT", "stat", path="/mnt/a.txt")

    run(tmp_path, body)


def test_a_read_only_mount_refuses_every_write(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        (host / "a.txt").write_text("A")
        (host / "d").mkdir()
        await rig.call(p, "mount", source=str(host), path="/ro", readonly=True)
        fd = await rig.call(p, "open", path="/ro/a.txt")
        assert await rig.call(p, "read", fd=fd, n=10) == b"A"
        await fails(rig, p, "EROFS", "open", path="/ro/a.txt", flags=["write"])
        await fails(rig, p, "EROFS", "open", path="/ro/new", flags=["write", "create"])
        await fails(rig, p, "EROFS", "mkdir", path="/ro/x")
        await fails(rig, p, "EROFS", "unlink", path="/ro/a.txt")
        await fails(rig, p, "EROFS", "rmdir", path="/ro/d")
        await fails(rig, p, "EROFS", "rename", src="/ro/a.txt", dst="/ro/b.txt")
        assert tree(host) == {"a.txt": "A", "d": "<dir>"}

    run(tmp_path, body)


# -- writes: journaled, published at close, made only once their record is durable ----------------------


def test_writes_land_on_the_host_at_close_after_their_record_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_at: list[tuple[int, int]] = []

    async def body(rig: Rig, host: Path) -> None:
        real = hostwriter.HostWriter._do

        def spy(self: hostwriter.HostWriter, i: Any) -> str:
            seq = max(s for s, v in self.k.state.world.vfs.host_unmade.items() if v == i)
            made_at.append((seq, self.k.committer.durable_seq))
            return real(self, i)

        monkeypatch.setattr(hostwriter.HostWriter, "_do", spy)
        p = rig.person
        (host / "a.txt").write_text("hello\n")
        await rig.call(p, "mount", source=str(host), path="/mnt")
        fd = await rig.call(p, "open", path="/mnt/a.txt", flags=["read", "write", "append"])
        await rig.call(p, "write", fd=fd, data=b"world\n")
        assert (host / "a.txt").read_text() == "hello\n", "nothing reaches the host before close"
        await rig.call(p, "seek", fd=fd, offset=0, whence="set")
        assert await rig.call(p, "read", fd=fd, n=100) == b"hello\nworld\n", "the fd reads its own writes"
        assert (await rig.call(p, "stat", path="/mnt/a.txt"))["size"] == 6
        await rig.call(p, "fsync", fd=fd)
        assert (host / "a.txt").read_text() == "hello\nworld\n", "fsync publishes"
        await rig.call(p, "write", fd=fd, data=b"more\n")
        await rig.call(p, "close", fd=fd)
        assert (host / "a.txt").read_text() == "hello\nworld\nmore\n"
        fd = await rig.call(p, "open", path="/mnt/new.txt", flags=["write", "create", "exclusive"])
        await rig.call(p, "write", fd=fd, data=b"new")
        assert not (host / "new.txt").exists(), "a new file appears whole, at its publish"
        await rig.call(p, "close", fd=fd)
        assert (host / "new.txt").read_bytes() == b"new"
        await fails(rig, p, "EEXIST", "open", path="/mnt/new.txt", flags=["write", "create", "exclusive"])
        fd = await rig.call(p, "open", path="/mnt/new.txt", flags=["write", "truncate"])
        await rig.call(p, "close", fd=fd)
        assert (host / "new.txt").read_bytes() == b"", "O_TRUNC with no write: an empty file"
        assert made_at and all(seq <= durable for seq, durable in made_at), made_at
        assert rig.k.state.world.vfs.host_unmade == {}

    run(tmp_path, body)


def test_names_change_on_the_host_and_errors_are_posix(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        (host / "a.txt").write_text("A")
        (host / "full").mkdir()
        (host / "full" / "x").write_text("x")
        await rig.call(p, "mount", source=str(host), path="/mnt")
        await rig.call(p, "mkdir", path="/mnt/d")
        await fails(rig, p, "EEXIST", "mkdir", path="/mnt/d")
        await rig.call(p, "rename", src="/mnt/a.txt", dst="/mnt/d/b.txt")
        await fails(rig, p, "ENOENT", "rename", src="/mnt/a.txt", dst="/mnt/c")
        await fails(rig, p, "ENOTEMPTY", "rmdir", path="/mnt/full")
        await fails(rig, p, "EISDIR", "unlink", path="/mnt/full")
        await fails(rig, p, "ENOTDIR", "rmdir", path="/mnt/d/b.txt")
        await fails(rig, p, "EXDEV", "rename", src="/mnt/d/b.txt", dst="/shared/b.txt")
        await rig.call(p, "unlink", path="/mnt/full/x")
        await rig.call(p, "rmdir", path="/mnt/full")
        assert tree(host) == {"d": "<dir>", "d/b.txt": "A"}

    run(tmp_path, body)


def test_agents_need_capabilities_and_cannot_escape_the_mount(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        outside = tmp_path / "secret.txt"
        outside.write_text("SECRET")
        (host / "out").symlink_to(outside)
        (host / "outdir").symlink_to(tmp_path)
        os.link(outside, host / "hard")
        await rig.call(p, "mount", source=str(host), path="/mnt")
        stranger = rig.agent()
        await fails(rig, stranger, "EACCES", "readdir", path="/mnt")
        await fails(rig, stranger, "EACCES", "open", path="/mnt/new", flags=["write", "create"])
        reader = await agent_on_mount(rig, ["read", "list"])
        assert set(await rig.call(reader, "readdir", path="/mnt")) == {"out", "outdir", "hard"}
        await fails(rig, reader, "EACCES", "open", path="/mnt/x", flags=["write", "create"])
        for path in ("/mnt/out", "/mnt/outdir/secret.txt", "/mnt/hard"):
            with pytest.raises(AgentOSError) as info:
                await rig.call(p, "open", path=path)
            assert info.value.code in ("EXDEV", "EACCES", "ELOOP"), (path, info.value)
        with pytest.raises(AgentOSError):
            await rig.call(p, "open", path="/mnt/outdir/new", flags=["write", "create"])
        assert outside.read_text() == "SECRET" and not (tmp_path / "new").exists()

    run(tmp_path, body)


# -- history and undo -------------------------------------------------------------------------------------


def test_history_and_undo_of_an_agents_host_changes(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        (host / "keep.txt").write_text("original\n")
        (host / "gone.txt").write_text("bye\n")
        (host / "link").symlink_to("keep.txt")
        await rig.call(p, "mount", source=str(host), path="/mnt")
        a = await agent_on_mount(rig, ["read", "write", "list"])
        await write(rig, a, "/mnt/keep.txt", b"clobbered\n")
        await write(rig, a, "/mnt/made.txt", b"made\n")
        await rig.call(a, "unlink", path="/mnt/gone.txt")
        await rig.call(a, "unlink", path="/mnt/link")
        await rig.call(a, "mkdir", path="/mnt/sub")
        await rig.call(a, "rename", src="/mnt/made.txt", dst="/mnt/sub/made.txt")
        assert tree(host) == {"keep.txt": "clobbered\n", "sub": "<dir>", "sub/made.txt": "made\n"}
        h = await rig.call(p, "fs_history", path="/mnt/keep.txt")
        assert [(r["op"], r["cut"], r["size"], r["pid"], r["made"]) for r in h["versions"]] == [
            ("version", "close", 10, a.pid, True)
        ]
        h = await rig.call(p, "fs_history", path="/mnt/gone.txt")
        assert [r["op"] for r in h["versions"]] == ["unlink"] and not h["exists"]
        dry = await rig.call(p, "fs_undo", pid=a.pid, dry_run=True)
        assert dry["reverted_count"] == 6 and dry["events"] == 0 and tree(host)["keep.txt"] == "clobbered\n"
        out = await rig.call(p, "fs_undo", pid=a.pid)
        assert (out["reverted_count"], out["conflicts"], out["denied"]) == (6, [], [])
        assert tree(host) == {"gone.txt": "bye\n", "keep.txt": "original\n"}
        assert os.readlink(host / "link") == "keep.txt"
        again = await rig.call(p, "fs_undo", pid=p.pid)  # the undo was the person's: undoable too
        assert (again["reverted_count"], again["conflicts"]) == (6, [])
        assert tree(host) == {"keep.txt": "clobbered\n", "sub": "<dir>", "sub/made.txt": "made\n"}

    run(tmp_path, body)


def test_undo_reports_conflicts_and_never_clobbers(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        await rig.call(p, "mount", source=str(host), path="/mnt")
        a = await agent_on_mount(rig, ["read", "write", "list"])
        b = await agent_on_mount(rig, ["read", "write", "list"])
        await write(rig, a, "/mnt/shared.txt", b"from a\n")
        await write(rig, b, "/mnt/shared.txt", b"from b\n")  # a later change by someone else
        await write(rig, a, "/mnt/own.txt", b"a's own\n")
        (host / "own.txt").write_text("edited on the host by a person\n")  # outside AgentOS
        out = await rig.call(p, "fs_undo", pid=a.pid)
        assert out["reverted_count"] == 0 and out["conflicts_count"] == 2, out
        reasons = " ".join(c["reason"] for c in out["conflicts"])
        assert f"process {b.pid}" in reasons and "changed since" in reasons
        assert tree(host) == {"shared.txt": "from b\n", "own.txt": "edited on the host by a person\n"}
        # the writer refuses, too, a recorded change whose file moved under it (ESTALE)
        fd = await rig.call(a, "open", path="/mnt/shared.txt", flags=["write", "append"])
        await rig.call(a, "write", fd=fd, data=b"appended\n")
        block = rig.k.call(a, "close", {"fd": fd})
        assert isinstance(block, Block)
        (host / "shared.txt").write_text("raced by the host\n")  # between the record and its making
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        rig.k.park(object(), a, block, lambda r, e: fut.set_exception(e) if e else fut.set_result(r))
        with pytest.raises(AgentOSError) as info:
            await asyncio.wait_for(fut, 10)
        assert info.value.code == "ESTALE"
        assert (host / "shared.txt").read_text() == "raced by the host\n"

    run(tmp_path, body)


# -- recovery: a change recorded, not made, when the kernel died ------------------------------------------


def test_a_recorded_change_is_made_at_the_next_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "a.txt").write_text("old\n")

    async def first() -> None:
        rig = Rig(tmp_path)
        rig.boot()
        p = rig.person
        await rig.call(p, "mount", source=str(host), path="/mnt")
        monkeypatch.setattr(hostwriter.HostWriter, "run", lambda self: None)  # the kernel dies first
        fd = await rig.call(p, "open", path="/mnt/a.txt", flags=["write", "truncate"])
        await rig.call(p, "write", fd=fd, data=b"new\n")
        block = rig.k.call(p, "close", {"fd": fd})
        assert isinstance(block, Block)
        await rig.k.committer.durable(rig.k.head_seq)
        assert (host / "a.txt").read_text() == "old\n" and rig.k.state.world.vfs.host_unmade
        await rig.k.close(clean=False)
        monkeypatch.undo()

    async def second() -> None:
        rig = Rig(tmp_path)
        rig.boot()
        await asyncio.sleep(0.05)
        for _ in range(100):
            if not rig.k.state.world.vfs.host_unmade:
                break
            await asyncio.sleep(0.02)
        assert (host / "a.txt").read_text() == "new\n"
        done = [e for e in rig.k.log.read(0, kinds=["vfs.host_done"])]
        assert len(done) == 1 and json.loads(done[0].payload).get("error", "") == ""
        await rig.k.close(clean=False)

    asyncio.run(first())
    asyncio.run(second())


# -- a real kernel process --------------------------------------------------------------------------------

HOST_WRITER = """
from agentos import sdk

async def main(path):
    fd = await sdk.open(path, ["write", "create"])
    await sdk.write(fd, b"first line\\n")
    await sdk.write_console("wrote\\n")
    await sdk.sleep(float(60))
    await sdk.write(fd, b"second line\\n")
    await sdk.close(fd)
    return 0
"""


def test_cli_mount_an_agent_writes_through_kill_9_history_and_undo(
    kernel: KernelProcess, agent_file: Any, tmp_path: Path
) -> None:
    host = tmp_path / "project"
    host.mkdir()
    (host / "README").write_text("mine\n")
    home = kernel.home
    assert b"mounted" in ok(home, "mount", str(host), "/mnt/project")
    rows = json.loads(ok(home, "mounts", "--json"))
    assert {"path": "/mnt/project", "kind": "host"}.items() <= rows[-1].items()
    assert "README" in ok(home, "fs", "ls", "/mnt/project").decode()
    assert ok(home, "fs", "cat", "/mnt/project/README") == b"mine\n"
    mount_caps = ["--cap", "fs:/mnt/project=list", "--cap", "fs:/mnt/project/*=read,write,list"]
    pid = int(ok(home, "run", "-d", *mount_caps, agent_file(HOST_WRITER), "/mnt/project/notes.txt"))

    def wrote() -> bool:
        with kernel.client() as c:
            return "wrote" in "".join(item["data"] for item in c.stream("logs", pid=pid))

    poll(wrote)
    assert not (host / "notes.txt").exists()
    kernel.kill9()
    kernel.boot()
    with kernel.client() as c:
        c.call("kill", pid=pid, sig="KILL")  # its exit publishes what it wrote, acknowledged before the crash
        c.call("wait", pid=pid, timeout=20)
    poll(lambda: (host / "notes.txt").exists())
    assert (host / "notes.txt").read_text() == "first line\n"
    history = json.loads(ok(home, "fs", "history", "/mnt/project/notes.txt", "--json"))
    assert [(v["pid"], v["cut"]) for v in history["versions"]] == [(pid, "exit")]
    out = json.loads(ok(home, "undo", "--json", "--pid", str(pid)))
    assert (out["reverted_count"], out["conflicts_count"]) == (1, 0)
    assert not (host / "notes.txt").exists() and (host / "README").read_text() == "mine\n"
    assert b"unmounted" in ok(home, "umount", "/mnt/project")
    assert [r["path"] for r in json.loads(ok(home, "mounts", "--json"))] == ["/dev", "/proc", "/tmp"]


# -- mount's arguments, fuzzed (the socket fuzz leaves mount out: its source is a host path) --------------

MOUNT_POINTS = st.text(alphabet="/ab.\x00-_", min_size=1, max_size=24).map(lambda s: "/" + s)


def test_mount_arguments_get_typed_errors_and_leave_the_kernel_running(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        (host / "f").write_text("x")

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            point=MOUNT_POINTS,
            source=st.sampled_from(["", "/f", "/nope", "/../..", "/f/x"]),
            ro=st.booleans(),
        )
        def one(point: str, source: str, ro: bool) -> None:
            try:
                got = rig.k.call(p, "mount", {"source": str(host) + source, "path": point, "readonly": ro})
            except AgentOSError:
                return
            assert got.result["source"].startswith(str(host)) or source == "/../.."
            rig.k.call(p, "umount", {"path": got.result["path"]})

        one()
        assert len(await rig.call(p, "mounts")) == 3 and rig.k.state.world.vfs.mounts == {}
        await rig.call(p, "mount", source=str(host), path="/mnt")
        assert await rig.call(p, "readdir", path="/mnt") == ["f"]

    run(tmp_path, body)


def test_read_and_restore_a_host_files_version_and_its_bytes_are_charged(tmp_path: Path) -> None:
    async def body(rig: Rig, host: Path) -> None:
        p = rig.person
        (host / "f.txt").write_text("as found\n")
        await rig.call(p, "mount", source=str(host), path="/mnt")
        a = await agent_on_mount(rig, ["read", "write", "list"])
        group = rig.k.state.world.procs.get(a.pid).group
        await write(rig, a, "/mnt/f.txt", b"one\n")
        await write(rig, a, "/mnt/f.txt", b"two\n")
        seqs = [r["seq"] for r in (await rig.call(p, "fs_history", path="/mnt/f.txt"))["versions"]]
        assert len(seqs) == 2
        got = await rig.call(p, "fs_read_version", path="/mnt/f.txt", seq=seqs[0])
        assert (got["data"], got["seq"], got["size"]) == (b"one\n", seqs[0], 4)
        assert (await rig.call(p, "fs_read_version", path="/mnt/f.txt", seq=seqs[1] + 1))["data"] == b"two\n"
        err = await fails(rig, p, "ENOENT", "fs_read_version", path="/mnt/f.txt", seq=seqs[0] - 1)
        assert "not changed through AgentOS" in err.message
        await fails(rig, p, "ENOENT", "fs_read_version", path="/mnt/f.txt", seq=seqs[1] + 1, exact=True)
        out = await rig.call(p, "fs_restore", path="/mnt/f.txt", seq=seqs[0])
        assert out["changed"] and (host / "f.txt").read_text() == "one\n"
        assert not (await rig.call(p, "fs_restore", path="/mnt/f.txt", seq=seqs[0]))["changed"]
        await fails(rig, p, "EINVAL", "fs_restore", path="/dev/null", seq=1)
        usage = {g["name"]: g["usage"] for g in await rig.call(p, "groups") if g["name"] == group}[group]
        assert usage["file_bytes"] == 8 and usage["stored_bytes"] >= 8 + len("as found\n"), usage

    run(tmp_path, body)


# -- the swap race, through the syscalls -------------------------------------------------------------------


def test_a_symlink_swap_race_through_the_syscalls_never_reaches_outside(tmp_path: Path) -> None:
    """An agent reads, lists and writes beneath /mnt/d while a host process swaps ``d`` with a
    symlink out, 2,000 times (the resolver itself: 10,000 per run in test_hostfs.py)."""
    secret, inside = b"TOP SECRET\n", b"inside\n"

    async def body(rig: Rig, host: Path) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_bytes(secret)
        (outside / "only-outside.txt").write_text("x")
        (host / "d").mkdir()
        (host / "d" / "secret.txt").write_bytes(inside)
        (host / "d_alt").symlink_to("../outside")
        await rig.call(rig.person, "mount", source=str(host), path="/mnt")
        a = await agent_on_mount(rig, ["read", "write", "list"])
        flipper = subprocess.Popen(
            [sys.executable, "-c", FLIPPER, str(host)], stdout=subprocess.PIPE, text=True
        )
        counts = {"read": 0, "refused": 0, "written": 0}
        try:
            assert flipper.stdout is not None and flipper.stdout.readline().strip() == "ready"
            for i in range(2000):
                try:
                    fd = await rig.call(a, "open", path="/mnt/d/secret.txt")
                    data = await rig.call(a, "read", fd=fd, n=100)
                    await rig.call(a, "close", fd=fd)
                except AgentOSError as err:
                    assert err.code in ("EXDEV", "ENOENT", "EAGAIN", "EBADF", "ESTALE"), err
                    counts["refused"] += 1
                else:
                    assert data == inside, data
                    counts["read"] += 1
                if i % 8 == 1:
                    try:
                        names = await rig.call(a, "readdir", path="/mnt/d")
                    except AgentOSError:
                        pass
                    else:
                        assert "only-outside.txt" not in names
                if i % 40 == 3:
                    try:
                        await write(rig, a, "/mnt/d/new.txt", b"new")
                    except AgentOSError:
                        pass
                    else:
                        counts["written"] += 1
        finally:
            flipper.send_signal(signal.SIGTERM)
            flipper.communicate(timeout=30)
        assert counts["read"] > 0 and counts["refused"] > 0, counts
        assert sorted(os.listdir(outside)) == ["only-outside.txt", "secret.txt"], "nothing made outside"
        assert (outside / "secret.txt").read_bytes() == secret

    run(tmp_path, body)
