"""Host mounts (``agentos.kernel.vfs.hostfs``): the escape battery, against openat2 and the forced walk.

Every test runs in a world of two sibling directories: ``mnt`` (the mount root, full of traps: symlinks
out, absolute and relative, chained and looping, a ``/proc`` magic link, dangling links out, a hard
link to the outside secret, a FIFO, a device when root) and ``outside`` (a secret file). After every
test the outside directory — listing, contents, modes, mtimes — and the directory holding both must be
exactly as before: nothing was created, changed or removed outside. The checks are run with each
resolver: openat2 (skipped where the kernel lacks it), the user-space walk, and the walk without
``/proc`` (files reopened by name instead of through ``/proc/self/fd``).

The swap race flips ``d`` between a real directory and a symlink out (``renameat2(RENAME_EXCHANGE)``)
from another *process* — a thread would share the GIL and interleave far less — while the test reads,
lists and writes beneath ``d``; the long version is ``-m soak``.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.errors import AgentOSError, Conflict, InvalidArgument, NotFound, PermissionDenied, WouldBlock
from agentos.kernel.vfs import openat2 as openat2_module
from agentos.kernel.vfs.hostfs import HostMount
from agentos.kernel.vfs.openat2 import (
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    openat2,
    openat2_available,
)

SECRET = b"TOP SECRET: this lies outside the mount\n"
INSIDE = b"inside the mount\n"
HELLO = b"hello\n"
REPO = Path(__file__).resolve().parent.parent

# -- the world ----------------------------------------------------------------------------------


def _fingerprint(path: Path) -> Any:
    st_ = os.lstat(path)
    if stat.S_ISDIR(st_.st_mode):
        names = sorted(os.listdir(path))
        return ("dir", st_.st_mode, st_.st_mtime_ns, {n: _fingerprint(path / n) for n in names})
    if stat.S_ISLNK(st_.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISREG(st_.st_mode):
        return ("file", st_.st_mode, st_.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return ("other", st_.st_mode, st_.st_mtime_ns)


@dataclass
class World:
    base: Path
    mnt: Path
    outside: Path
    has_device: bool

    def snapshot(self) -> Any:
        """Everything outside the mount root: the outside tree, and the listing of the directory above."""
        base = os.lstat(self.base)
        return (sorted(os.listdir(self.base)), base.st_mtime_ns, _fingerprint(self.outside))

    def outside_inodes(self) -> set[int]:
        """Inodes outside that nothing inside links to (the secret is hard-linked in as ``hl``)."""
        found = {os.lstat(self.outside).st_ino}
        for dirpath, dirnames, filenames in os.walk(self.outside):
            for name in dirnames + filenames:
                if name != "secret.txt":
                    found.add(os.lstat(os.path.join(dirpath, name)).st_ino)
        return found


def build_world(base: Path) -> World:
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "only-outside.txt").write_bytes(SECRET)
    (outside / "dir" / "secret.txt").write_bytes(SECRET)
    mnt = base / "mnt"
    (mnt / "sub" / "deep").mkdir(parents=True)
    (mnt / "hello.txt").write_bytes(HELLO)
    (mnt / "sub" / "deep" / "f.txt").write_bytes(b"deep\n")
    (mnt / "d").mkdir()
    (mnt / "d" / "secret.txt").write_bytes(INSIDE)
    (mnt / "d" / "only-inside.txt").write_bytes(INSIDE)
    links = {
        "abs": str(outside),  # absolute, to the outside directory
        "abs_secret": str(outside / "secret.txt"),
        "rel": "../outside",  # relative, climbing out
        "sub/deep/rel_secret": "../../../outside/secret.txt",
        "sub/up": "../../outside",  # used as an intermediate component: sub/up/secret.txt
        "c1": "sub/c2",  # a chain of three that ends outside
        "sub/c2": "deep/c3",
        "sub/deep/c3": "../../../outside/secret.txt",
        "i1": "sub/i2",  # a chain that stays inside
        "sub/i2": "../hello.txt",
        "in_dir": "sub/deep",
        "loop": "loop",
        "ping": "pong",
        "pong": "ping",
        "proc": "/proc/self/root/etc",  # a magic link on the way
        "dang": str(outside / "created.txt"),  # dangling, out
        "dang_rel": "../outside/created.txt",
        "dang_in": "made.txt",  # dangling, in
    }
    for name, target in links.items():
        os.symlink(target, mnt / name)
    os.link(outside / "secret.txt", mnt / "hl")
    os.mkfifo(mnt / "fifo")
    has_device = False
    if os.geteuid() == 0:
        try:
            os.mknod(mnt / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
            has_device = True
        except PermissionError:
            pass
    return World(base, mnt, outside, has_device)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build_world(tmp_path)
    before = w.snapshot()
    yield w
    assert w.snapshot() == before, "something outside the mount changed"


BACKENDS = ["openat2", "walk", "walk-noproc"]


def make_mount(root: Path, backend: str, **kw: Any) -> HostMount:
    if backend == "openat2" and not openat2_available():
        pytest.skip("this kernel has no openat2")
    m = HostMount(root, use_openat2=backend == "openat2", **kw)
    if backend == "walk-noproc":
        m._proc_reopen = False
    return m


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def mount(world: World, backend: str) -> Iterator[HostMount]:
    m = make_mount(world.mnt, backend)
    yield m
    m.close()


def expect_refused(
    fn: Callable[..., Any], *args: Any, code: str | None = "EXDEV", **kw: Any
) -> PermissionDenied:
    with pytest.raises(PermissionDenied) as info:
        fn(*args, **kw)
    if code is not None:
        assert info.value.code == code, info.value
    return info.value


# -- the syscall ----------------------------------------------------------------------------------


def test_resolve_constants_are_the_kernels() -> None:
    assert (
        RESOLVE_NO_XDEV,
        RESOLVE_NO_MAGICLINKS,
        RESOLVE_NO_SYMLINKS,
        RESOLVE_BENEATH,
        RESOLVE_IN_ROOT,
    ) == (
        0x01,
        0x02,
        0x04,
        0x08,
        0x10,
    )
    assert ctypes.sizeof(openat2_module._OpenHow) == 24


@pytest.mark.skipif(not openat2_available(), reason="this kernel has no openat2")
def test_openat2_itself(world: World) -> None:
    root = os.open(world.mnt, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = openat2(root, "hello.txt", os.O_RDONLY | os.O_CLOEXEC, 0, RESOLVE_BENEATH)
        assert os.read(fd, 100) == HELLO
        os.close(fd)
        fd = openat2(root, "/hello.txt", os.O_RDONLY | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)  # "/" is the root
        assert os.read(fd, 100) == HELLO
        os.close(fd)
        for path, resolve, code in [
            ("../outside/secret.txt", RESOLVE_BENEATH, errno.EXDEV),
            ("abs_secret", RESOLVE_BENEATH, errno.EXDEV),
            ("rel/secret.txt", RESOLVE_BENEATH, errno.EXDEV),
            ("i1", RESOLVE_NO_SYMLINKS, errno.ELOOP),
            ("proc/passwd", RESOLVE_NO_MAGICLINKS, errno.ELOOP),
        ]:
            with pytest.raises(OSError) as info:
                os.close(openat2(root, path, os.O_RDONLY | os.O_CLOEXEC, 0, resolve))
            assert info.value.errno == code, path
        with pytest.raises(ValueError):
            openat2(root, "hello.txt\0", os.O_RDONLY)
    finally:
        os.close(root)


def test_without_openat2_the_walk_is_used(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def enosys(*args: Any) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(openat2_module, "_syscall", lambda: enosys)
    openat2_available.cache_clear()
    try:
        assert not openat2_available()
        with pytest.raises(OSError) as info:
            openat2(-100, ".", os.O_PATH)
        assert info.value.errno == errno.ENOSYS
        with HostMount(world.mnt) as m:
            assert not m.uses_openat2
            assert m.read_file("i1") == HELLO
            expect_refused(m.read_file, "rel/secret.txt")
        with pytest.raises(InvalidArgument) as err:
            HostMount(world.mnt, use_openat2=True)
        assert err.value.code == "ENOSYS"
    finally:
        monkeypatch.undo()
        openat2_available.cache_clear()
    with HostMount(world.mnt) as m:
        assert m.uses_openat2 == openat2_available()


# -- paths ----------------------------------------------------------------------------------------


DOTDOT_ESCAPES = [
    "..",
    "../outside/secret.txt",
    "/../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "sub/deep/../../../outside/secret.txt",
    "sub/deep/../../sub/deep/../../../outside/secret.txt",
    "./sub/./deep/./../../../outside/secret.txt",
    "sub/deep/../../..",
    "in_dir/../../../outside/secret.txt",  # .. after a symlink is physical: in_dir is sub/deep
]


@pytest.mark.parametrize("path", DOTDOT_ESCAPES)
def test_dotdot_never_climbs_above_the_root(mount: HostMount, path: str) -> None:
    expect_refused(mount.read_file, path)
    expect_refused(mount.stat, path)
    expect_refused(mount.open, path)
    if not path.endswith(".."):
        expect_refused(mount.write_file, path, b"x")
        expect_refused(mount.open, path, os.O_WRONLY | os.O_CREAT)
        expect_refused(mount.unlink, path)
        expect_refused(mount.rename, "hello.txt", path)
    else:
        expect_refused(mount.listdir, path)


def test_dotdot_that_stays_inside_is_fine(mount: HostMount) -> None:
    assert mount.read_file("sub/deep/../../hello.txt") == HELLO
    assert mount.read_file("in_dir/../../hello.txt") == HELLO
    assert mount.listdir("sub/..") == mount.listdir("/")
    with pytest.raises(NotFound):
        mount.read_file("a/../../x")  # "a" is not there: the lookup stops before the climb
    with pytest.raises(Conflict) as info:
        mount.read_file("hello.txt/../hello.txt")
    assert info.value.code == "ENOTDIR"


def test_absolute_paths_are_mount_relative(world: World, mount: HostMount) -> None:
    assert mount.read_file("/hello.txt") == mount.read_file("hello.txt") == HELLO
    assert mount.read_file("//sub///deep/f.txt") == b"deep\n"
    assert mount.listdir("/") == mount.listdir(".") == sorted(os.listdir(world.mnt))
    with pytest.raises(NotFound):
        mount.read_file(str(world.outside / "secret.txt"))  # the host path means <mnt>/tmp/.../secret.txt
    with pytest.raises(NotFound):
        mount.read_file("/outside/secret.txt")


@pytest.mark.parametrize(
    "path, code",
    [
        ("hello.txt\x00", "EINVAL"),
        ("\x00", "EINVAL"),
        ("", "EINVAL"),
        ("\ud800", "EINVAL"),
        ("a" * 256, "ENAMETOOLONG"),
        ("a/" * 2100, "ENAMETOOLONG"),
        (b"hello.txt", "EINVAL"),
    ],
)
def test_bad_paths_are_invalid_arguments(mount: HostMount, path: Any, code: str) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: mount.read_file(path),
        lambda: mount.stat(path),
        lambda: mount.exists(path),
        lambda: mount.listdir(path),
        lambda: mount.open(path),
        lambda: mount.write_file(path, b"x"),
        lambda: mount.mkdir(path),
        lambda: mount.rmdir(path),
        lambda: mount.unlink(path),
        lambda: mount.rename(path, "x"),
        lambda: mount.rename("hello.txt", path),
        lambda: mount.readlink(path),
        lambda: mount.symlink("x", path),
        lambda: mount.symlink(path, "x"),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as info:
            call()
        assert info.value.code == code


def test_entry_operations_need_a_final_name(mount: HostMount) -> None:
    for path in ("/", ".", "sub/.", "sub/..", "sub/deep/.."):
        for call in (mount.mkdir, mount.rmdir, mount.unlink, mount.readlink):
            with pytest.raises(InvalidArgument):
                call(path)
    assert mount.exists("sub/")
    with pytest.raises(Conflict) as info:
        mount.stat("hello.txt/")
    assert info.value.code == "ENOTDIR"


# -- symlinks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "abs_secret",  # absolute, to the file
        "abs/secret.txt",  # absolute, as a directory
        "rel/secret.txt",  # relative, climbing out
        "sub/deep/rel_secret",
        "sub/up/secret.txt",  # a symlink in an intermediate component
        "sub/up/dir/secret.txt",
        "c1",  # a chain that ends outside
        "sub/c2",
        "proc/passwd",  # /proc/self/root/etc: absolute, through a magic link
    ],
)
def test_symlinks_out_are_refused(mount: HostMount, path: str) -> None:
    expect_refused(mount.read_file, path)
    expect_refused(mount.open, path)
    expect_refused(mount.stat, path)
    expect_refused(mount.write_file, path, b"overwritten")
    expect_refused(mount.open, path, os.O_WRONLY | os.O_TRUNC)
    expect_refused(mount.exists, path)


def test_symlink_targets_are_still_readable_as_strings(world: World, mount: HostMount) -> None:
    assert mount.readlink("abs") == str(world.outside)
    assert mount.readlink("rel") == "../outside"
    lst = mount.stat("abs", follow_symlinks=False)
    assert stat.S_ISLNK(lst.st_mode)
    expect_refused(mount.listdir, "abs")
    expect_refused(mount.listdir, "rel")
    expect_refused(mount.listdir, "sub/up")


def test_symlinks_that_stay_inside_are_followed(mount: HostMount) -> None:
    assert mount.read_file("i1") == HELLO
    assert mount.read_file("in_dir/f.txt") == b"deep\n"
    assert mount.listdir("in_dir") == sorted(["f.txt", "c3", "rel_secret"])
    assert mount.stat("i1").st_ino == mount.stat("hello.txt").st_ino
    assert mount.exists("i1") and not mount.exists("nothing") and not mount.exists("hello.txt/x")


def test_symlink_loops_are_eloop(mount: HostMount) -> None:
    for path in ("loop", "ping", "loop/x", "ping/x"):
        expect_refused(mount.read_file, path, code="ELOOP")
        expect_refused(mount.stat, path, code="ELOOP")
        expect_refused(mount.write_file, path, b"x", code="ELOOP")
    assert stat.S_ISLNK(mount.stat("loop", follow_symlinks=False).st_mode)


def test_o_nofollow_refuses_a_final_symlink(mount: HostMount) -> None:
    expect_refused(mount.open, "i1", os.O_RDONLY | os.O_NOFOLLOW, code="ELOOP")
    fd = mount.open("in_dir/../deep/f.txt", os.O_RDONLY | os.O_NOFOLLOW)  # only the final one counts
    assert os.read(fd, 100) == b"deep\n"
    os.close(fd)


def test_dangling_symlinks_out_create_nothing_outside(world: World, mount: HostMount) -> None:
    for path in ("dang", "dang_rel"):
        expect_refused(mount.open, path, os.O_WRONLY | os.O_CREAT)
        expect_refused(mount.open, path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        expect_refused(mount.write_file, path, b"planted")
        with pytest.raises(Conflict):
            mount.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)  # O_EXCL never follows: the link exists
    assert not (world.outside / "created.txt").exists()


def test_a_dangling_symlink_inside_creates_its_target_inside(world: World, mount: HostMount) -> None:
    assert mount.write_file("dang_in", b"made") is None
    assert (world.mnt / "made.txt").read_bytes() == b"made"
    assert os.path.islink(world.mnt / "dang_in")
    assert mount.write_file("dang_in", b"again") == b"made"
    assert mount.read_file("made.txt") == b"again"


def test_a_symlink_planted_through_the_mount_is_refused_too(world: World, mount: HostMount) -> None:
    mount.symlink("../outside/secret.txt", "planted")
    mount.symlink(str(world.outside), "planted_abs")
    mount.symlink("/proc/self/root", "planted_proc")
    assert mount.readlink("planted") == "../outside/secret.txt"
    expect_refused(mount.read_file, "planted")
    expect_refused(mount.read_file, "planted_abs/secret.txt")
    expect_refused(mount.read_file, f"planted_proc{world.outside}/secret.txt")
    expect_refused(mount.write_file, "planted", b"x")
    assert mount.unlink("planted") is None


def test_magic_links_of_a_proc_mount_are_refused(backend: str) -> None:
    with make_mount(Path("/proc/self"), backend) as m, open(__file__, "rb") as f:
        assert b"Name:" in m.read_file("status")
        for path in ("root/etc/passwd", "cwd", "exe", f"fd/{f.fileno()}", "root", "cwd/hello.txt"):
            with pytest.raises(PermissionDenied) as info:
                m.read_file(path)
            assert info.value.code in ("ELOOP", "EXDEV"), (path, info.value)


# -- hard links, devices, FIFOs, sockets, other filesystems ---------------------------------------


def test_a_hard_link_to_outside_is_refused(world: World, mount: HostMount) -> None:
    assert mount.stat("hl").st_nlink == 2  # metadata is not content
    expect_refused(mount.read_file, "hl", code="EACCES")
    expect_refused(mount.open, "hl", code="EACCES")
    expect_refused(mount.open, "hl", os.O_WRONLY | os.O_APPEND, code="EACCES")
    expect_refused(mount.write_file, "hl", b"overwritten", code="EACCES")
    expect_refused(mount.unlink, "hl", code="EACCES")  # its undo record would be the secret
    expect_refused(mount.rename, "hello.txt", "hl", code="EACCES")
    # made here, for this test: a fresh link counts the same
    os.link(world.outside / "only-outside.txt", world.mnt / "fresh")
    err = expect_refused(mount.read_file, "fresh", code="EACCES")
    assert "hard link" in err.message


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_blocking(mount: HostMount) -> None:
    start = time.monotonic()
    for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
        err = expect_refused(mount.open, "fifo", flags, code="EACCES")
        assert "FIFO" in err.message
    expect_refused(mount.read_file, "fifo", code="EACCES")
    expect_refused(mount.write_file, "fifo", b"x", code="EACCES")
    assert stat.S_ISFIFO(mount.stat("fifo").st_mode)
    assert time.monotonic() - start < 5


def test_a_device_is_refused(world: World, mount: HostMount) -> None:
    if not world.has_device:
        pytest.skip("mknod of a character device needs root with CAP_MKNOD")
    err = expect_refused(mount.open, "null", code="EACCES")
    assert "character device" in err.message
    expect_refused(mount.open, "null", os.O_WRONLY, code="EACCES")
    expect_refused(mount.read_file, "null", code="EACCES")
    expect_refused(mount.write_file, "null", b"x", code="EACCES")


def test_a_socket_is_refused(world: World, mount: HostMount) -> None:
    path = str(world.mnt / "sock")
    if len(path) >= 100:
        pytest.skip("the temporary path is too long for an AF_UNIX address")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        err = expect_refused(mount.open, "sock", code="EACCES")
        assert "socket" in err.message


XDEV = r"""
import os, subprocess, sys
from agentos.errors import PermissionDenied
from agentos.kernel.vfs.hostfs import HostMount
from agentos.kernel.vfs.openat2 import openat2_available

mnt, outside = sys.argv[1], sys.argv[2]
for name in ("tmpfs", "bound"):
    os.mkdir(os.path.join(mnt, name))
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(mnt, "tmpfs")], check=True)
subprocess.run(["mount", "--bind", outside, os.path.join(mnt, "bound")], check=True)
with open(os.path.join(mnt, "tmpfs", "t.txt"), "w") as f:
    f.write("on another filesystem")
for use in ([True] if openat2_available() else []) + [False]:
    with HostMount(mnt, use_openat2=use) as m:
        for path in ("tmpfs/t.txt", "bound/secret.txt", "bound/dir/secret.txt"):
            try:
                m.read_file(path)
            except PermissionDenied as err:
                assert err.code == "EXDEV", (use, path, err)
            else:
                sys.exit(f"{path} was read (openat2={use})")
        for path in ("tmpfs", "bound"):
            try:
                m.listdir(path)
            except PermissionDenied as err:
                assert err.code == "EXDEV", (use, path, err)
            else:
                sys.exit(f"{path} was listed (openat2={use})")
print("xdev ok")
"""


def test_other_filesystems_mounted_inside_are_not_entered(world: World) -> None:
    """A tmpfs and a bind mount of the outside directory (same filesystem) inside the mount root."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", XDEV]
    try:
        done = subprocess.run(
            [*cmd, str(world.mnt), str(world.outside)], capture_output=True, text=True, env=env, timeout=60
        )
    except FileNotFoundError:
        pytest.skip("no unshare(1)")
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"cannot make a mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "xdev ok" in done.stdout
    for name in ("tmpfs", "bound"):
        os.rmdir(world.mnt / name)


# -- the swap race --------------------------------------------------------------------------------


FLIPPER = r"""
import ctypes, os, signal, sys

fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
libc = ctypes.CDLL(None, use_errno=True)
exchange = getattr(libc, "renameat2", None)
stop = False

def halt(*_):
    global stop
    stop = True

signal.signal(signal.SIGTERM, halt)

def flip():
    if exchange is not None:  # atomic: "d" always exists, as a directory or as the symlink out
        if exchange(fd, b"d", fd, b"d_alt", 2) != 0:  # RENAME_EXCHANGE
            raise OSError(ctypes.get_errno(), "renameat2")
    else:
        os.rename("d", "d_tmp", src_dir_fd=fd, dst_dir_fd=fd)
        os.rename("d_alt", "d", src_dir_fd=fd, dst_dir_fd=fd)
        os.rename("d_tmp", "d_alt", src_dir_fd=fd, dst_dir_fd=fd)

print("ready", flush=True)
flips = 0
while not stop:
    flip()
    flips += 1
if flips % 2:
    flip()
    flips += 1
print(flips, flush=True)
"""


def swap_race(world: World, m: HostMount, iterations: int, link: str) -> dict[str, int]:
    """Read, list and write beneath ``d`` while another process swaps ``d`` with a symlink out."""
    os.symlink(str(world.outside) if link == "absolute" else "../outside", world.mnt / "d_alt")
    flipper = subprocess.Popen(
        [sys.executable, "-c", FLIPPER, str(world.mnt)], stdout=subprocess.PIPE, text=True
    )
    counts = {"read": 0, "refused": 0, "listed": 0, "written": 0}
    try:
        assert flipper.stdout is not None and flipper.stdout.readline().strip() == "ready"
        for i in range(iterations):
            try:
                data = m.read_file("d/secret.txt")
            except (PermissionDenied, NotFound, WouldBlock) as err:
                assert err.code in ("EXDEV", "ENOENT", "EAGAIN"), err
                counts["refused"] += 1
            else:
                assert data == INSIDE, data
                counts["read"] += 1
            if i % 4 == 1:
                try:
                    fd = m.open("d/secret.txt")
                except (PermissionDenied, NotFound, WouldBlock):
                    pass
                else:
                    try:
                        assert os.read(fd, 1000) == INSIDE
                    finally:
                        os.close(fd)
            if i % 4 == 2:
                try:
                    names = m.listdir("d")
                except (PermissionDenied, NotFound, WouldBlock):
                    pass
                else:
                    assert "only-outside.txt" not in names and "only-inside.txt" in names
                    counts["listed"] += 1
            if i % 32 == 3:
                try:
                    m.write_file("d/secret.txt", INSIDE)
                    m.write_file("d/new.txt", b"new")
                    m.unlink("d/new.txt")
                except (PermissionDenied, NotFound, WouldBlock, Conflict):
                    pass
                else:
                    counts["written"] += 1
    finally:
        flipper.send_signal(signal.SIGTERM)
        out, _ = flipper.communicate(timeout=30)
    counts["flips"] = int(out.strip())
    os.unlink(world.mnt / "d_alt")
    assert os.path.isdir(world.mnt / "d") and not os.path.islink(world.mnt / "d")
    assert (world.mnt / "d" / "secret.txt").read_bytes() == INSIDE
    assert not (world.outside / "new.txt").exists()
    return counts


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_a_symlink_swap_race_never_reads_outside(world: World, backend: str, link: str) -> None:
    with make_mount(world.mnt, backend) as m:
        counts = swap_race(world, m, 10_000, link)
    print(backend, link, counts)
    assert counts["flips"] > 0 and counts["read"] > 0 and counts["refused"] > 0, counts


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_a_symlink_swap_race_never_reads_outside_soak(world: World, backend: str, link: str) -> None:
    with make_mount(world.mnt, backend) as m:
        counts = swap_race(world, m, 100_000, link)
    print(backend, link, counts)
    assert counts["flips"] > 0 and counts["read"] > 0 and counts["refused"] > 0, counts


# -- writing and undo -----------------------------------------------------------------------------


def test_a_read_only_mount_refuses_every_write(world: World, backend: str) -> None:
    before = _fingerprint(world.mnt)
    with make_mount(world.mnt, backend, read_only=True) as m:
        writes: list[Callable[[], Any]] = [
            lambda: m.write_file("hello.txt", b"x"),
            lambda: m.write_file("new.txt", b"x"),
            lambda: m.mkdir("newdir"),
            lambda: m.rmdir("sub"),
            lambda: m.unlink("hello.txt"),
            lambda: m.rename("hello.txt", "moved.txt"),
            lambda: m.symlink("hello.txt", "link"),
            lambda: m.open("hello.txt", os.O_WRONLY),
            lambda: m.open("hello.txt", os.O_RDWR),
            lambda: m.open("hello.txt", os.O_RDONLY | os.O_TRUNC),
            lambda: m.open("new.txt", os.O_RDONLY | os.O_CREAT),
        ]
        for write in writes:
            with pytest.raises(PermissionDenied) as info:
                write()
            assert info.value.code == "EROFS"
        assert m.read_file("hello.txt") == HELLO
        assert m.listdir("sub") == ["c2", "deep", "i2", "up"]
        fd = m.open("sub")
        os.close(fd)
    assert _fingerprint(world.mnt) == before


def test_write_file_returns_what_it_replaced(world: World, mount: HostMount) -> None:
    assert mount.write_file("new.txt", b"one") is None
    assert mount.write_file("new.txt", b"two") == b"one"
    assert mount.write_file("/new.txt", bytearray(b"three")) == b"two"
    assert mount.read_file("new.txt") == b"three"
    assert mount.write_file("i1", b"via a link") == HELLO  # follows the link, keeps it
    assert os.path.islink(world.mnt / "i1") and mount.read_file("hello.txt") == b"via a link"
    os.chmod(world.mnt / "hello.txt", 0o640)
    mount.write_file("hello.txt", b"mode kept")
    assert stat.S_IMODE(os.stat(world.mnt / "hello.txt").st_mode) == 0o640
    assert not [n for n in os.listdir(world.mnt) if n.startswith(".agentos-")]
    with pytest.raises(NotFound):
        mount.write_file("absent.txt", b"x", create=False)
    with pytest.raises(NotFound):
        mount.write_file("no/such/dir.txt", b"x")
    with pytest.raises(Conflict) as info:
        mount.write_file("sub", b"x")
    assert info.value.code == "EISDIR"
    with pytest.raises(Conflict):
        mount.write_file("in_dir", b"x")
    with pytest.raises(InvalidArgument):
        mount.write_file("x.txt", "not bytes")  # type: ignore[arg-type]


def test_open_creates_truncates_and_excludes(world: World, mount: HostMount) -> None:
    fd = mount.open("made.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    assert not os.get_inheritable(fd)
    os.write(fd, b"abc")
    os.close(fd)
    assert stat.S_IMODE(os.stat(world.mnt / "made.txt").st_mode) == 0o600
    with pytest.raises(Conflict) as info:
        mount.open("made.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert info.value.code == "EEXIST"
    fd = mount.open("made.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0
    os.close(fd)
    fd = mount.open("i1", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"more\n")
    os.close(fd)
    assert mount.read_file("hello.txt") == HELLO + b"more\n"
    with pytest.raises(Conflict) as info:
        mount.open("sub", os.O_WRONLY)
    assert info.value.code == "EISDIR"
    with pytest.raises(Conflict) as info:
        mount.open("hello.txt", os.O_RDONLY | os.O_DIRECTORY)
    assert info.value.code == "ENOTDIR"
    with pytest.raises(InvalidArgument):
        mount.open("hello.txt", os.O_PATH)
    with pytest.raises(InvalidArgument):
        mount.open("hello.txt", os.O_RDONLY, 0o17777)
    with pytest.raises(InvalidArgument):
        mount.mkdir("newdir", "755")  # type: ignore[arg-type]


def test_rename_stays_inside_and_returns_what_it_replaced(world: World, mount: HostMount) -> None:
    mount.write_file("a.txt", b"A")
    mount.write_file("b.txt", b"B")
    assert mount.rename("a.txt", "b.txt") == b"B"
    assert mount.read_file("b.txt") == b"A" and not mount.exists("a.txt")
    assert mount.rename("b.txt", "sub/deep/c.txt") is None
    assert mount.read_file("in_dir/c.txt") == b"A"
    assert mount.rename("in_dir", "moved_link") is None  # the link moves, not its target
    assert os.path.islink(world.mnt / "moved_link") and mount.exists("sub/deep/c.txt")
    mount.rename("sub/deep", "deep2")
    assert mount.read_file("deep2/c.txt") == b"A"
    expect_refused(mount.rename, "deep2/c.txt", "../outside/c.txt")
    expect_refused(mount.rename, "rel/secret.txt", "stolen.txt")
    expect_refused(mount.rename, "abs/secret.txt", "stolen.txt")
    expect_refused(mount.rename, "hello.txt", "abs/secret.txt")
    with pytest.raises(NotFound):
        mount.rename("absent", "x")
    with pytest.raises(Conflict) as info:
        mount.rename("hello.txt", "sub")
    assert info.value.code == "EISDIR"


def test_listdir_is_sorted(world: World, mount: HostMount) -> None:
    mount.mkdir("many")
    names = ["zeta", "Alpha", "beta", "_x", "10", "9", "é"]
    for name in names:
        mount.write_file(f"many/{name}", b"")
    assert mount.listdir("many") == sorted(names)
    assert mount.listdir("/") == sorted(os.listdir(world.mnt))
    with pytest.raises(Conflict) as info:
        mount.listdir("hello.txt")
    assert info.value.code == "ENOTDIR"


def test_mkdir_rmdir_unlink_symlink(world: World, mount: HostMount) -> None:
    mount.mkdir("new")
    with pytest.raises(Conflict) as info:
        mount.mkdir("new")
    assert info.value.code == "EEXIST"
    with pytest.raises(Conflict):
        mount.mkdir("i1")  # an existing symlink, not followed
    with pytest.raises(NotFound):
        mount.mkdir("no/such")
    mount.write_file("new/f", b"content")
    with pytest.raises(Conflict) as info:
        mount.rmdir("new")
    assert info.value.code == "ENOTEMPTY"
    assert mount.unlink("new/f") == b"content"
    mount.rmdir("new")
    assert not mount.exists("new")
    with pytest.raises(Conflict) as info:
        mount.unlink("sub")
    assert info.value.code == "EISDIR"
    with pytest.raises(Conflict) as info:
        mount.rmdir("hello.txt")
    assert info.value.code == "ENOTDIR"
    mount.symlink("hello.txt", "to_hello")
    assert mount.read_file("to_hello") == HELLO
    assert mount.unlink("to_hello") is None  # the link, not the target
    assert mount.read_file("hello.txt") == HELLO
    assert mount.unlink("fifo") is None  # removing a FIFO opens nothing
    with pytest.raises(InvalidArgument):
        mount.readlink("hello.txt")
    expect_refused(mount.mkdir, "rel/newdir")
    expect_refused(mount.symlink, "x", "abs/planted")
    expect_refused(mount.rmdir, "sub/up/dir")
    expect_refused(mount.unlink, "sub/up/secret.txt")


def test_errors_name_the_mount_path_not_the_host_path(world: World, mount: HostMount) -> None:
    errors: list[AgentOSError] = []
    for call in (
        lambda: mount.read_file("missing/file.txt"),
        lambda: mount.read_file("rel/secret.txt"),
        lambda: mount.read_file("hl"),
        lambda: mount.mkdir("sub"),
        lambda: mount.read_file("loop"),
    ):
        with pytest.raises(AgentOSError) as info:
            call()
        errors.append(info.value)
    assert [type(e).__name__ for e in errors] == [
        "NotFound",
        "PermissionDenied",
        "PermissionDenied",
        "Conflict",
        "PermissionDenied",
    ]
    for err in errors:
        assert str(world.base) not in err.message, err.message
    assert "'/missing/file.txt'" in errors[0].message


def test_a_closed_mount_refuses_everything(world: World) -> None:
    m = HostMount(world.mnt)
    m.close()
    m.close()
    with pytest.raises(InvalidArgument) as info:
        m.read_file("hello.txt")
    assert info.value.code == "EBADF"
    with pytest.raises(NotFound):
        HostMount(world.base / "no-such-dir")
    with pytest.raises(Conflict):
        HostMount(world.mnt / "hello.txt")


# -- anything at all ------------------------------------------------------------------------------

NAMES = [
    "..", ".", "", "hello.txt", "sub", "deep", "f.txt", "d", "secret.txt", "only-outside.txt", "outside",
    "abs", "abs_secret", "rel", "up", "rel_secret", "c1", "c2", "c3", "i1", "i2", "in_dir", "loop",
    "ping", "proc", "etc", "passwd", "dang", "dang_rel", "dang_in", "made.txt", "hl", "fifo", "null",
    "new", "dir", "self", "root",
]  # fmt: skip
# a trap of the world, then what might lie beyond it outside: these find an escape if there is one
TRAPS = [
    "..", "rel", "abs", "sub/up", "sub/deep/rel_secret", "abs_secret", "c1", "sub/c2", "proc", "dang",
    "dang_rel", "dang_in", "hl", "fifo", "null", "loop", "ping", "in_dir/../..", "sub/../..", "d", "i1",
]  # fmt: skip
TAILS = ["", "secret.txt", "only-outside.txt", "dir", "dir/secret.txt", "..", "../outside", "passwd", "new"]
trap_paths = st.builds(
    lambda lead, trap, tail: ("/" if lead else "") + trap + ("/" + tail if tail else ""),
    st.booleans(),
    st.sampled_from(TRAPS),
    st.sampled_from(TAILS),
)
names = st.sampled_from(NAMES)
segments = st.one_of(names, names, names, st.text(min_size=1, max_size=5))
paths = st.one_of(
    trap_paths,
    trap_paths,
    st.builds(
        lambda lead, segs: ("/" if lead else "") + "/".join(segs),
        st.booleans(),
        st.lists(segments, max_size=5),
    ),
    st.text(max_size=20),
)
OPEN_FLAGS = [
    os.O_RDONLY,
    os.O_RDONLY | os.O_NOFOLLOW,
    os.O_RDONLY | os.O_DIRECTORY,
    os.O_WRONLY | os.O_CREAT,
    os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    os.O_WRONLY | os.O_APPEND,
]
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["read_file", "stat", "lstat", "exists", "listdir", "open", "write_file", "mkdir", "rmdir"]
            + ["unlink", "rename", "symlink", "readlink"]
        ),
        paths,
        paths,
        st.sampled_from(OPEN_FLAGS),
    ),
    min_size=1,
    max_size=12,
)


def run_op(m: HostMount, op: str, p: str, q: str, flags: int) -> Any:
    if op == "lstat":
        return m.stat(p, follow_symlinks=False)
    if op == "open":
        fd = m.open(p, flags)
        try:
            return os.read(fd, 1 << 16) if flags & os.O_ACCMODE != os.O_WRONLY else b""
        except OSError as err:
            assert err.errno == errno.EISDIR
            return b""
        finally:
            os.close(fd)
    if op == "write_file":
        return m.write_file(p, b"written")
    if op == "rename":
        return m.rename(p, q)
    if op == "symlink":
        return m.symlink(q, p)
    return getattr(m, op)(p)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(600)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_any_operation_stays_beneath_the_root_or_raises_a_typed_error(backend: str, ops: list[Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="aos-hostfs-") as tmp:
        world = build_world(Path(tmp))
        before = world.snapshot()
        foreign = world.outside_inodes()
        fds = open_fds()
        with make_mount(world.mnt, backend) as m:
            for op, p, q, flags in ops:
                try:
                    result = run_op(m, op, p, q, flags)
                except AgentOSError:
                    continue  # a typed refusal: fine; anything else fails the test
                if isinstance(result, bytes):
                    assert b"TOP SECRET" not in result, (op, p, q)
                elif isinstance(result, list):
                    assert "only-outside.txt" not in result, (op, p)
                elif isinstance(result, os.stat_result):
                    assert result.st_ino not in foreign, (op, p)
        assert open_fds() == fds, "a file descriptor leaked"
        assert world.snapshot() == before, "something outside the mount changed"
