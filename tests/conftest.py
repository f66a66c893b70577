"""Shared fixtures: a fresh home per test and a real kernel process booted on it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentos.errors import NetworkError
from agentos.runtime.sandbox import cgroupfs
from agentos.runtime.sandbox.cgrouphome import CgroupManager, home_cgroup_id
from agentos.testing.kernelproc import KernelProcess

EXAMPLES = Path(__file__).resolve().parent.parent / "agentos" / "examples"


CGROUPS = cgroupfs.probe()


@pytest.fixture
def home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aos-") as d:  # short: Unix socket paths are limited
        yield Path(d) / "home"


@pytest.fixture
def kernel(home: Path) -> Iterator[KernelProcess]:
    """A kernel process, verified afterwards, then killed; every cgroup of its home is removed (a
    process agent's, left by the kill -9)."""
    k = KernelProcess(home).boot()
    try:
        yield k
        verified(k)
    finally:
        if k.os_pid is not None:
            try:
                k.kill9()
            except (ProcessLookupError, TimeoutError):
                pass
        if CGROUPS.usable:
            CgroupManager(home_cgroup_id(home), CGROUPS).teardown()


@pytest.fixture
def kp(kernel: KernelProcess) -> KernelProcess:
    """The process-agent tests' name for ``kernel``."""
    return kernel


def verified(k: KernelProcess) -> None:
    """Every test's kernel ends with ``agentos verify``: the chain, the snapshots and the live state
    agree with the log. Skipped when the test left no kernel serving."""
    if k.os_pid is None:
        return
    try:
        with k.client("verify") as c:
            report = c.call("verify")
    except NetworkError:  # stopped by the test, or stopping
        return
    assert report["ok"], report


@pytest.fixture
def agent_file(tmp_path: Path):
    """Write an agent's source to a file and return its path."""

    def write(source: str, name: str = "agent.py") -> str:
        path = tmp_path / name
        path.write_text(source)
        return str(path)

    return write
