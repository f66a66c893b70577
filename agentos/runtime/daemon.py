"""Run a kernel: boot it, attach the runtimes, serve until shutdown. The boot order, a line a step.

``serve`` is what the kernel program runs (``python -m agentos.runtime``, which ``agentos boot``
execs, or spawns with ``--detach``). SIGTERM and SIGINT ask for a clean shutdown: live agents are suspended and resumed by replay at the
next boot; ``shutdown --kill`` terminates them instead (TERM, then KILL after the grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

from agentos import param
from agentos.errors import AgentOSError
from agentos.kernel.calls import Caller
from agentos.kernel.kernel import Kernel
from agentos.runtime.console import ConsoleCapture
from agentos.runtime.procagents import ProcessRunner
from agentos.runtime.server import SocketServer
from agentos.runtime.stepper import AgentRunner
from agentos.runtime.watchdog import Watchdog
from agentos.store.home import Home, short_socket_path

log = logging.getLogger("agentos.daemon")


async def serve(
    home: Home,
    *,
    durability: str | None = None,
    resume: bool = True,
    ready: asyncio.Event | None = None,
    policy: str | None = None,
) -> int:
    """Boot a kernel on ``home`` and serve until shutdown; return the process exit code."""
    os.umask(0o077)  # the log, blobs, socket and kernel.log are the user's alone
    kernel = Kernel(home, durability=durability, policy=policy)
    kernel.boot()
    kernel.start()
    capture = ConsoleCapture()
    capture.install()
    watchdog = Watchdog(param.WATCHDOG_SECONDS)
    watchdog.start()
    runner = AgentRunner(kernel, watchdog, capture)
    server = SocketServer(kernel)
    programs = ProcessRunner(kernel, server)  # process agents: real programs, confined
    with contextlib.suppress(FileNotFoundError):
        home.socket.unlink()  # a stale socket left by kill -9
    with short_socket_path(home.path) as sock_path:
        await server.listen(sock_path)
    os.chmod(home.socket, 0o600)
    programs.recover()  # what a killed kernel left running is killed and recorded, never left untracked
    # the sandbox probe runs bubblewrap a few times: off the loop; it logs, loudly if something is missing
    probing = asyncio.get_running_loop().run_in_executor(None, programs.probe_sandbox)
    if resume:  # after the socket serves: clients need not wait for the journals to be read
        for p in sorted(kernel.state.world.procs.alive(), key=lambda p: p.pid):
            if p.kind == "agent":
                asyncio.get_running_loop().call_soon(runner.resume, p)
    dispatcher = asyncio.get_running_loop().create_task(runner.run(), name="dispatcher")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: kernel.request_shutdown(kill=False))
    log.info("policy: %s", kernel.policy.source)
    log.info(
        "kernel serving on %s (boot %d, %d events, boot took %.1f ms)",
        home.socket,
        kernel.boot_number,
        kernel.head_seq,
        kernel.boot_ms,
    )
    if ready is not None:
        ready.set()
    await kernel.shutdown_requested.wait()
    if kernel.shutdown_kill and kernel.fatal is None:
        await _terminate_agents(kernel)
    dispatcher.cancel()
    with contextlib.suppress(Exception):
        await probing
    programs.close()
    watchdog.stop()
    capture.uninstall()
    with contextlib.suppress(FileNotFoundError):
        home.socket.unlink()
    if kernel.fatal is None:
        await kernel.committer.durable(kernel.head_seq)
    await server.close()
    await kernel.close(clean=kernel.fatal is None)
    if kernel.fatal is not None:
        log.critical("kernel stopped: %s", kernel.fatal)
        print(
            f"agentos: the kernel stopped: {kernel.fatal}", file=sys.stderr
        )  # kernel.log may be on the full disk
        return 70
    log.info("kernel shut down cleanly")
    return 0


async def _terminate_agents(kernel: Kernel) -> None:
    """TERM every live agent, wait out the grace period, then KILL what is left."""
    admin = Caller(param.KERNEL_PID, "kernel", request="shutdown-kill")

    def live() -> list[int]:
        return [p.pid for p in kernel.state.world.procs.alive() if p.kind in ("agent", "process")]

    for pid in live():
        with contextlib.suppress(AgentOSError):
            kernel.call(admin, "kill", {"pid": pid, "sig": "TERM"})
    deadline = time.monotonic() + param.TERM_GRACE_SECONDS
    while live() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for pid in live():
        with contextlib.suppress(AgentOSError):
            kernel.call(admin, "kill", {"pid": pid, "sig": "KILL"})


def setup_logging(home: Home, *, foreground: bool) -> None:
    os.close(
        os.open(home.kernel_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    )  # private from the start
    handlers: list[logging.Handler] = [logging.FileHandler(home.kernel_log)]
    if foreground:
        handlers.append(logging.StreamHandler())
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
