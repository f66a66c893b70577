"""The FUSE view of the VFS (agentos/runtime/fusefs.py): real programs, run on the host against a
mounted view, change the VFS as the agent's pid — versioned, attributed, undoable.

The kernel runs in-process (KernelRig) and serves the mount from its loop; every program touching
the mount runs off the loop (a thread or a subprocess), as a sandboxed agent would.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agentos.kernel.calls import Caller
from agentos.runtime import fuseproto as fp
from agentos.runtime.fusefs import FuseView, serve
from agentos.testing.kernelrig import KernelRig, run_rig

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or os.geteuid() != 0,
    reason="needs /dev/fuse and root to mount (Debian: apt-get install fuse3)",
)

WORK = "/shared/work"
Body = Callable[[KernelRig, Caller, FuseView, Path], Awaitable[None]]


def mounted(tmp_path: Path, body: Body, *, root: str = WORK) -> None:
    """Boot a kernel, spawn an agent, serve ``root`` as the agent at ``tmp_path/mnt``, run ``body``."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    async def main(rig: KernelRig) -> None:
        agent = rig.agent()
        rig(rig.person, "mkdir", path=WORK, mode=0o777)
        view = serve(rig.k, agent.pid, str(mnt), root=root)
        # a test that touched the mount from the loop would wait on itself forever: abort it instead
        guard = threading.Timer(90, view.abort)
        guard.start()
        try:
            await body(rig, agent, view, mnt)
        finally:
            guard.cancel()
            view.stop()
        assert f" {mnt} " not in Path("/proc/self/mountinfo").read_text()  # stop() unmounted it

    run_rig(KernelRig(tmp_path / "rig"), main)


async def sh(cmd: str, cwd: Path, timeout: float = 60) -> str:
    """Run a shell command off the loop; its stdout (fails the test on a non-zero exit)."""
    r = await asyncio.to_thread(
        subprocess.run, ["sh", "-ec", cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r.stdout


async def history(rig: KernelRig, path: str) -> list[dict]:
    return (await rig.call(rig.person, "fs_history", path=path))["versions"]


def test_files_made_through_the_mount_are_versioned_changes_of_the_agent(tmp_path: Path) -> None:
    async def body(rig: KernelRig, agent: Caller, view: FuseView, mnt: Path) -> None:
        def work() -> None:
            (mnt / "a.txt").write_text("one\n")
            with open(mnt / "a.txt", "a") as f:
                f.write("two\n")
            (mnt / "d").mkdir()
            os.rename(mnt / "a.txt", mnt / "d" / "b.txt")
            (mnt / "gone.txt").write_text("x")
            os.unlink(mnt / "gone.txt")
            os.symlink("d/b.txt", mnt / "link")
            os.link(mnt / "d" / "b.txt", mnt / "hard")
            os.chmod(mnt / "d" / "b.txt", 0o600)
            with open(mnt / "sized", "wb") as f:
                f.write(b"0123456789")
                f.truncate(4)

        def look() -> tuple[str, os.stat_result]:
            return (mnt / "link").read_text(), os.stat(mnt / "d" / "b.txt")

        await asyncio.to_thread(work)
        assert rig.cat(f"{WORK}/d/b.txt") == b"one\ntwo\n"
        assert sorted(rig(rig.person, "readdir", path=WORK)) == ["d", "hard", "link", "sized"]
        assert rig(rig.person, "readlink", path=f"{WORK}/link") == "d/b.txt"
        assert rig(rig.person, "stat", path=f"{WORK}/d/b.txt")["mode"] == 0o600
        assert rig(rig.person, "stat", path=f"{WORK}/d/b.txt")["nlink"] == 2
        assert rig.cat(f"{WORK}/sized") == b"0123"
        # through the mount, the same: read back, listed, owned by the caller
        text, st = await asyncio.to_thread(look)
        assert text == "one\ntwo\n"
        assert (st.st_uid, st.st_gid, st.st_size, st.st_mode & 0o777) == (os.getuid(), os.getgid(), 8, 0o600)
        # each close cut a version, attributed to the agent's pid
        rows = [r for r in await history(rig, f"{WORK}/d/b.txt") if r["op"] == "version"]
        assert len(rows) == 2 and {r["pid"] for r in rows} == {agent.pid}

    mounted(tmp_path, body)


def test_git_init_add_commit_log_in_the_view(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git")

    async def body(rig: KernelRig, agent: Caller, view: FuseView, mnt: Path) -> None:
        out = await sh(
            "git init -q . && git config user.email a@example.com && git config user.name agent\n"
            "printf 'hello\\n' > README && mkdir src && echo 'print(1)' > src/m.py\n"
            "git add -A && git commit -qm first && echo more >> README && git commit -qam second\n"
            "git log --format=%s && git status --porcelain && git fsck --no-progress 2>&1",
            mnt,
        )
        assert out.splitlines()[:2] == ["second", "first"]
        head = rig.cat(f"{WORK}/.git/HEAD")
        assert head.startswith(b"ref: refs/heads/")
        ref = rig.cat(f"{WORK}/.git/{head.decode().split(': ')[1].strip()}").decode().strip()
        assert len(ref) == 40
        assert [r["pid"] for r in await history(rig, f"{WORK}/README") if r["op"] == "version"] == [
            agent.pid
        ] * 2

    mounted(tmp_path, body)


def test_python3_and_make_with_gcc_build_in_the_view(tmp_path: Path) -> None:
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("needs gcc and make")

    async def body(rig: KernelRig, agent: Caller, view: FuseView, mnt: Path) -> None:
        script = (
            "import pathlib\nfor i in range(3):\n    pathlib.Path(f'out{i}.txt').write_text(str(i) * 1000)\n"
        )
        await sh(f'{sys.executable} -c "{script}"', mnt)
        assert rig.cat(f"{WORK}/out2.txt") == b"2" * 1000
        (tmp_path / "Makefile").write_text(
            "hello: hello.o\n\tgcc -o hello hello.o\nhello.o: hello.c\n\tgcc -c hello.c\n"
        )
        (tmp_path / "hello.c").write_text(
            '#include <stdio.h>\nint main(void) { puts("built here"); return 0; }\n'
        )
        out = await sh(f"cp {tmp_path}/Makefile {tmp_path}/hello.c . && make -s && ./hello && make", mnt)
        assert out.splitlines()[0] == "built here" and "up to date" in out
        binary = rig.cat(f"{WORK}/hello")
        assert binary[:4] == b"\x7fELF" and rig(rig.person, "stat", path=f"{WORK}/hello")["mode"] & 0o111

    mounted(tmp_path, body)


def test_fs_undo_of_the_pid_rolls_back_what_the_programs_did(tmp_path: Path) -> None:
    async def body(rig: KernelRig, agent: Caller, view: FuseView, mnt: Path) -> None:
        rig.put(rig.person, f"{WORK}/kept.txt", b"the person's\n")
        await sh("echo mine > new.txt && echo changed > kept.txt && mkdir sub && echo y > sub/f", mnt)
        assert rig.cat(f"{WORK}/kept.txt") == b"changed\n"
        await rig.call(rig.person, "fs_undo", pid=agent.pid)
        assert rig(rig.person, "readdir", path=WORK) == ["kept.txt"]
        assert rig.cat(f"{WORK}/kept.txt") == b"the person's\n"
        assert await sh("ls; cat kept.txt", mnt) == "kept.txt\nthe person's\n"  # the view shows it at once

    mounted(tmp_path, body)


def test_a_change_by_another_route_is_seen_fresh_through_the_mount(tmp_path: Path) -> None:
    async def body(rig: KernelRig, agent: Caller, view: FuseView, mnt: Path) -> None:
        rig.put(rig.person, f"{WORK}/f.txt", b"old contents")
        fd = await asyncio.to_thread(os.open, mnt / "f.txt", os.O_RDONLY)
        try:
            assert await asyncio.to_thread(os.pread, fd, 100, 0) == b"old contents"  # now in the page cache
            rig.put(rig.person, f"{WORK}/f.txt", b"new contents!")
            for _ in range(100):  # the invalidation is written by the notifier thread
                if await asyncio.to_thread(os.pread, fd, 100, 0) == b"new contents!":
                    break
                await asyncio.sleep(0.01)
            assert await asyncio.to_thread(os.pread, fd, 100, 0) == b"new contents!"
        finally:
            await asyncio.to_thread(os.close, fd)  # a close is a FLUSH: never on the loop
        rig(rig.person, "rename", src=f"{WORK}/f.txt", dst=f"{WORK}/g.txt")
        assert await sh("ls; cat g.txt", mnt) == "g.txt\nnew contents!"

    mounted(tmp_path, body)


def test_what_the_agent_may_not_do_is_refused_with_its_errno(tmp_path: Path) -> None:
    async def body(rig: KernelRig, agent: Caller, view: FuseView, mnt: Path) -> None:
        def attempts() -> dict[str, int]:
            out = {}
            for name, fn in {
                "write outside its grant": lambda: (mnt / "etc-file").write_text("x"),
                "mkdir outside": lambda: (mnt / "newdir").mkdir(),
                "list /": lambda: os.listdir(mnt),
            }.items():
                try:
                    fn()
                    out[name] = 0
                except OSError as e:
                    out[name] = e.errno
            return out

        got = await asyncio.to_thread(attempts)
        assert got["write outside its grant"] == errno.EACCES and got["mkdir outside"] == errno.EACCES
        assert got["list /"] == errno.EACCES
        assert (await asyncio.to_thread((mnt / "shared" / "work").is_dir)) is True  # its grant: reachable
        assert not any(n.startswith("etc-file") for n in rig(rig.person, "readdir", path="/"))

    mounted(tmp_path, body, root="/")


SERVER = """
import asyncio, sys
from agentos.testing.kernelrig import KernelRig
from agentos.runtime.fusefs import serve
async def main():
    rig = KernelRig(__import__("pathlib").Path(sys.argv[1])); rig.boot()
    agent = rig.agent()
    rig(rig.person, "mkdir", path="/shared/work", mode=0o777)
    serve(rig.k, agent.pid, sys.argv[2], root="/shared/work")
    print(agent.pid, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def test_killing_the_kernel_aborts_the_mount_and_nothing_hangs(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "rig"), str(mnt)], stdout=subprocess.PIPE, text=True
    )
    try:
        pid = int(server.stdout.readline())  # type: ignore[union-attr]
        (mnt / "kept.txt").write_text("acknowledged before the kill\n")
        reader = subprocess.Popen(["sh", "-c", f"while cat {mnt}/kept.txt >/dev/null; do :; done; exit 3"])
        time.sleep(0.3)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        assert reader.wait(10) == 3  # its next read failed: no process hangs on a dead server
        with pytest.raises(OSError) as e:
            os.listdir(mnt)
        assert e.value.errno == errno.ENOTCONN
    finally:
        if server.poll() is None:
            server.kill()
        fp.unmount(str(mnt))

    async def after(rig: KernelRig) -> None:  # what was acknowledged is in the log
        assert rig.cat("/shared/work/kept.txt") == b"acknowledged before the kill\n"
        assert {r["pid"] for r in await history(rig, "/shared/work/kept.txt") if r["op"] == "version"} == {
            pid
        }

    run_rig(KernelRig(tmp_path / "rig"), after)


INSIDE = """
set -e
mount -i -t fuse.agentos -o "$OPTS" agentos "$DIR"
eval "exec $FD<&-"  # only the kernel holds the connection now: it dies with the kernel
exec bwrap --unshare-user --unshare-pid --dev-bind / / --bind "$DIR" /work --chdir /work -- sh -ec '
  git init -q . && git config user.email a@b.c && git config user.name n
  echo inside > f && git add f && git commit -qm in && git log --format=%s
  grep fuse.agentos /proc/self/mountinfo | grep -c " /work "
  read go'
"""


def test_the_mount_exists_only_in_the_agents_mount_namespace(tmp_path: Path) -> None:
    """The plan of docs/sandbox.md, with util-linux tools standing in for the stage: the kernel opens
    /dev/fuse and serves the fd; a new mount namespace mounts it and bwrap binds it at /work."""
    if shutil.which("unshare") is None or shutil.which("bwrap") is None:
        pytest.skip("needs unshare and bwrap")
    where = tmp_path / "view"
    where.mkdir()

    async def main(rig: KernelRig) -> None:
        agent = rig.agent()
        rig(rig.person, "mkdir", path=WORK, mode=0o777)
        fd = fp.open_dev()
        view = serve(rig.k, agent.pid, fd, root=WORK)
        child = await asyncio.create_subprocess_exec(
            "unshare", "--mount", "--propagation", "private", "bash", "-c", INSIDE,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,),
            env={**os.environ, "OPTS": fp.mount_options(fd), "DIR": str(where), "FD": str(fd)},
        )  # fmt: skip
        try:
            lines = [(await asyncio.wait_for(child.stdout.readline(), 60)).decode().strip() for _ in range(2)]  # type: ignore[union-attr]
            assert lines == ["in", "1"]  # git worked in /work, which is the mount, inside
            assert f" {where} " not in Path("/proc/self/mountinfo").read_text()  # and not out here
            assert os.listdir(where) == []
            assert rig.cat(f"{WORK}/f") == b"inside\n"
            child.stdin.write(b"go\n")  # type: ignore[union-attr]
            assert await asyncio.wait_for(child.wait(), 30) == 0
        finally:
            if child.returncode is None:
                child.kill()
            view.stop()

    run_rig(KernelRig(tmp_path / "rig"), main)


def test_a_view_needs_its_root_to_exist(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    async def main(rig: KernelRig) -> None:
        agent = rig.agent()
        with pytest.raises(Exception) as e:
            serve(rig.k, agent.pid, str(mnt), root="/shared/missing")
        assert getattr(e.value, "code", "") == "ENOENT"
        assert f" {mnt} " not in Path("/proc/self/mountinfo").read_text()

    run_rig(KernelRig(tmp_path / "rig"), main)


def test_a_process_agent_is_bound_by_its_modes_and_each_change_names_the_request(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    async def main(rig: KernelRig) -> None:
        pid = rig(rig.person, "spawn", target="/bin/sh", argv=["-c", "true"], kind="process")
        rig(rig.person, "mkdir", path=WORK, mode=0o777)
        view = serve(rig.k, pid, str(mnt), root=WORK)
        try:
            assert view.caller.kind == "process"  # the process's own kind: confined like an agent
            r = await asyncio.to_thread(
                subprocess.run,
                "echo hi > x; chmod 400 x; echo again >> x",
                shell=True,
                cwd=mnt,
                capture_output=True,
            )
            assert r.returncode != 0 and b"Permission denied" in r.stderr
        finally:
            view.stop()
        assert rig.cat(f"{WORK}/x") == b"hi\n"
        rows = await history(rig, f"{WORK}/x")
        assert {r["pid"] for r in rows} == {pid} and all(
            r["correlation"].startswith(f"s{pid}:fuse:") for r in rows
        )

    run_rig(KernelRig(tmp_path / "rig"), main)
