"""Starting a kernel: ``agentos boot`` execs the kernel program, ``--detach`` spawns it.

The kernel is its own program, ``python -m agentos.runtime``; userland knows only its command
line (ARCHITECTURE.md §2). It is given the home's PYTHONHASHSEED when the home has one, so it
need not re-exec itself. ``boot --detach`` returns only once the kernel answers on its socket.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from agentos.errors import AgentOSError, InternalError
from agentos.sdk.client import Client


def kernel_command(home: Path, durability: str | None, resume: bool, policy: str | None = None) -> list[str]:
    """The kernel is its own program (``agentos.runtime``): userland only starts it."""
    args = [sys.executable, "-m", "agentos.runtime", "--home", str(home)]
    if policy:
        args += ["--policy", policy]
    if durability:
        args += ["--durability", durability]
    if not resume:
        args.append("--no-resume")
    return args


def _seed_env(home: Path) -> dict[str, str]:
    """The environment with the home's hash seed, when the home has one (spares a re-exec)."""
    try:
        seed = tomllib.loads((home / "config.toml").read_text()).get("hash_seed")
    except (OSError, tomllib.TOMLDecodeError):
        seed = None
    return {**os.environ, "PYTHONHASHSEED": str(seed)} if seed else dict(os.environ)


def boot_foreground(home: Path, *, durability: str | None, resume: bool, policy: str | None = None) -> int:
    """Become the kernel (exec): it runs until shutdown, SIGTERM or Ctrl-C."""
    os.execve(sys.executable, kernel_command(home, durability, resume, policy), _seed_env(home))


def boot_detached(
    home: Path,
    *,
    durability: str | None = None,
    resume: bool = True,
    timeout: float = 30.0,
    policy: str | None = None,
) -> int:
    """Start a kernel in its own session; return its OS pid once it serves."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(home / "kernel.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            kernel_command(home, durability, resume, policy),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=_seed_env(home),
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
