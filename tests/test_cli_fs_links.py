"""``agentos fs ln [-s]``, ``readlink``, ``chmod``, ``truncate``: the CLI over the link, symlink,
readlink, chmod and truncate syscalls, against one real kernel process (each test in its own
directory; setup through a plain client, so only the command under test is a CLI run)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_vfs_syscalls import agentos, ok

from agentos.testing.kernelproc import KernelProcess


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelProcess]:
    with tempfile.TemporaryDirectory(prefix="aos-") as d:  # short: Unix socket paths are limited
        k = KernelProcess(Path(d) / "home").boot()
        try:
            yield k
        finally:
            k.kill9()


def put(kernel: KernelProcess, path: str, data: bytes) -> None:
    with kernel.client() as c:
        fd = c.call("open", path=path, flags=["write", "create", "truncate"])
        c.call("write", fd=fd, data=data)
        c.call("close", fd=fd)


def test_fs_ln_makes_a_hard_link_and_ln_s_a_symlink(kernel: KernelProcess) -> None:
    home = kernel.home
    kernel.call("mkdir", path="/shared/ln")
    put(kernel, "/shared/ln/f", b"one file\n")
    ok(home, "fs", "ln", "/shared/ln/f", "/shared/ln/g")
    put(kernel, "/shared/ln/g", b"changed through g\n")
    assert ok(home, "fs", "cat", "/shared/ln/f") == b"changed through g\n", "two names, one file"
    assert kernel.call("stat", path="/shared/ln/f")["nlink"] == 2
    ok(home, "fs", "ln", "-s", "f", "/shared/ln/s")
    assert kernel.call("readlink", path="/shared/ln/s") == "f"
    assert ok(home, "fs", "cat", "/shared/ln/s") == b"changed through g\n", "a relative symlink"
    r = agentos(home, "fs", "ln", "/shared/ln", "/shared/ln/d")
    assert r.returncode == 1 and b"EPERM" in r.stderr, "no hard link to a directory"


def test_fs_readlink_prints_the_target_unresolved(kernel: KernelProcess) -> None:
    kernel.call("mkdir", path="/shared/rl")
    kernel.call("symlink", target="../nowhere/x", path="/shared/rl/dangling")
    assert ok(kernel.home, "fs", "readlink", "/shared/rl/dangling") == b"../nowhere/x\n"
    put(kernel, "/shared/rl/plain", b"x")
    r = agentos(kernel.home, "fs", "readlink", "/shared/rl/plain")
    assert r.returncode == 1 and b"EINVAL" in r.stderr, "not a symlink"


def test_fs_chmod_sets_octal_mode_bits(kernel: KernelProcess) -> None:
    put(kernel, "/shared/chmod", b"x")
    ok(kernel.home, "fs", "chmod", "0604", "/shared/chmod")
    assert kernel.call("stat", path="/shared/chmod")["mode"] == 0o604
    r = agentos(kernel.home, "fs", "chmod", "rw", "/shared/chmod")
    assert r.returncode == 2 and b"octal" in r.stderr
    assert kernel.call("stat", path="/shared/chmod")["mode"] == 0o604


def test_fs_truncate_shrinks_and_grows_with_zeros_as_a_new_version(kernel: KernelProcess) -> None:
    put(kernel, "/shared/trunc", b"0123456789")
    before = kernel.call("stat", path="/shared/trunc")["version_seq"]
    ok(kernel.home, "fs", "truncate", "/shared/trunc", "4")
    assert kernel.call("stat", path="/shared/trunc")["version_seq"] > before, "a version at once"
    ok(kernel.home, "fs", "truncate", "/shared/trunc", "6")
    assert ok(kernel.home, "fs", "cat", "/shared/trunc") == b"0123\0\0"
    r = agentos(kernel.home, "fs", "truncate", "/shared", "0")
    assert r.returncode == 1 and b"EISDIR" in r.stderr
