"""Shared fixtures: a fresh home per test and a real kernel process booted on it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentos.errors import NetworkError
from agentos.testing.kernelproc import KernelProcess

EXAMPLES = Path(__file__).resolve().parent.parent / "agentos" / "examples"


@pytest.fixture
def home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aos-") as d:  # short: Unix socket paths are limited
        yield Path(d) / "home"


@pytest.fixture
def kernel(home: Path) -> Iterator[KernelProcess]:
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
