"""What the kernel's comparative measures share: a registering decorator, a kernel process, agent sources.

The measures themselves live in ``bench/*_benches.py`` (``python -m bench`` imports those; this module is
named so that it is not one of them): ``bench/syscall_benches.py`` (in-kernel and socket syscall round
trips), ``bench/log_benches.py`` (event append throughput, single-event acknowledgement latency) and
``bench/recovery_benches.py`` (kill -9 recovery). What they compare against is in :mod:`bench.baselines`;
how a measure is run and recorded is in :mod:`bench.harness`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from agentos.errors import AgentOSError
from agentos.testing.kernelproc import KernelProcess
from bench import baselines


@contextlib.contextmanager
def kernel_process() -> Iterator[KernelProcess]:
    """A real kernel process (``python -m agentos boot``) on a fresh home; shut down afterwards."""
    tmp = baselines.mkdtemp_short("abk")
    kp = KernelProcess(tmp / "home")
    try:
        kp.boot()
        yield kp
    finally:
        if kp.os_pid is not None:
            try:
                kp.shutdown(kill=True)
            except (AgentOSError, OSError, TimeoutError):
                with contextlib.suppress(ProcessLookupError, TimeoutError):
                    kp.kill9()
        shutil.rmtree(tmp, ignore_errors=True)


def write_agent(directory: Path, name: str, source: str) -> str:
    """Write an agent's ``source`` to ``directory/name``; return the path, a ``spawn`` target."""
    path = directory / name
    path.write_text(source)
    return str(path)
