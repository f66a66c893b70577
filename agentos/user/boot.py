"""Starting a kernel: in the foreground (with the home's PYTHONHASHSEED) or detached.

The kernel fixes ``PYTHONHASHSEED`` per home so replayed agents see the same hash order;
``boot`` re-execs itself with it when the environment differs. ``boot --detach`` returns only
once the kernel answers on its socket.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from agentos.errors import AgentOSError, InternalError
from agentos.sdk.client import Client


def _boot_args(home: Path, durability: str | None, resume: bool) -> list[str]:
    args = [sys.executable, "-m", "agentos", "boot", "--home", str(home)]
    if durability:
        args += ["--durability", durability]
    if not resume:
        args.append("--no-resume")
    return args


def boot_foreground(home: Path, *, durability: str | None, resume: bool) -> int:
    from agentos.runtime.daemon import serve, setup_logging
    from agentos.store.home import Home

    h = Home(home)
    h.create()
    seed = str(h.hash_seed())
    if os.environ.get("PYTHONHASHSEED") != seed:
        os.execve(
            sys.executable, _boot_args(home, durability, resume), {**os.environ, "PYTHONHASHSEED": seed}
        )
    setup_logging(h, foreground=sys.stderr.isatty())
    try:
        return asyncio.run(serve(h, durability=durability, resume=resume))
    except AgentOSError as err:
        print(f"agentos: {err}", file=sys.stderr)
        return 1


def boot_detached(
    home: Path, *, durability: str | None = None, resume: bool = True, timeout: float = 30.0
) -> int:
    """Start a kernel in its own session; return its OS pid once it serves."""
    from agentos.store.home import Home

    h = Home(home)
    h.create()
    env = {**os.environ, "PYTHONHASHSEED": str(h.hash_seed())}  # spares the kernel a re-exec
    fd = os.open(home / "kernel.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            _boot_args(home, durability, resume),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (home / "kernel.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise InternalError(
                f"the kernel exited with status {proc.returncode} while booting:\n  " + "\n  ".join(tail)
            )
        try:
            with Client.connect(home, "boot", timeout=5) as c:
                os_pid = int(c.call("status")["os_pid"])
            if os_pid == proc.pid:
                return os_pid
            time.sleep(0.1)  # another kernel answers: ours is about to be refused the home's lock
        except AgentOSError:
            time.sleep(0.02)
    proc.kill()
    raise InternalError(f"the kernel did not start serving within {timeout:.0f}s; see {home / 'kernel.log'}")
