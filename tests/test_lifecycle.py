"""Process lifecycle as a user sees it, on a real kernel process.

Orphans, zombies and ``wait``; signals (TERM as ``AgentCancelled``, KILL, STOP/CONT, CHLD,
TERM-then-KILL); agents that crash, misuse asyncio or spin; ``print()`` exactly once across a
kill -9; replay divergence; resumed sleeps keeping their deadline; ``continue_as_new``;
quarantine of agents whose resume keeps failing; ``boot --no-resume``.

Every agent here is a small program written to a file by the test and spawned through the
socket ABI, so the test sees only what any client would see: replies, ``ps``, ``logs`` and
the ``events`` call.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentos import param
from agentos.errors import AgentOSError
from agentos.sdk.client import Client
from agentos.testing.kernelproc import KernelProcess

AgentFile = Callable[..., str]


# -- helpers -------------------------------------------------------------------------------


def spawn(k: KernelProcess, target: str, *argv: str) -> int:
    """Spawn an agent from a short-lived session (it is adopted by init when the session ends)."""
    return int(k.call("spawn", target=target, argv=list(argv)))


def proc(k: KernelProcess, pid: int) -> dict[str, Any]:
    with k.client() as c:
        return k.proc(c, pid)


def logs(k: KernelProcess, pid: int) -> list[dict[str, Any]]:
    """The console items of ``pid`` (its own writes and its child agents'), oldest first."""
    with k.client() as c:
        return list(c.stream("logs", pid=pid))


def console(k: KernelProcess, pid: int) -> str:
    return "".join(item["data"] for item in logs(k, pid))


def wait_exit(k: KernelProcess, pid: int, timeout: float = 20) -> dict[str, Any]:
    """Wait (as a session, which watches without reaping) until ``pid`` has exited."""
    with k.client() as c:
        return c.call("wait", pid=pid, timeout=timeout)


def wait_console(k: KernelProcess, pid: int, text: str, timeout: float = 20, count: int = 1) -> str:
    """Poll ``pid``'s console until ``text`` appears in it (``count`` times); return it."""

    def seen(c: Client) -> str | None:
        out = "".join(item["data"] for item in c.stream("logs", pid=pid))
        return out if out.count(text) >= count else None

    return k.wait_for(seen, timeout=timeout)


def wait_state(k: KernelProcess, pid: int, state: str, timeout: float = 20) -> dict[str, Any]:
    def reached(c: Client) -> dict[str, Any] | None:
        row = k.proc(c, pid)
        return row if row["state"] == state else None

    return k.wait_for(reached, timeout=timeout)


def events(k: KernelProcess, kind: str, **match: Any) -> list[dict[str, Any]]:
    """Durable events of ``kind`` whose payload has every field in ``match``."""
    with k.client() as c:
        rows = list(c.stream("events", kind=kind, limit=100_000))
    return [e for e in rows if all(e["payload"].get(f) == v for f, v in match.items())]


def assert_serving(k: KernelProcess, agent_file: AgentFile) -> None:
    """The kernel still answers calls and still runs agents."""
    assert k.call("status")["os_pid"] == k.os_pid
    pid = spawn(k, agent_file(OK_AGENT, "ok_agent.py"))
    assert wait_exit(k, pid)["status"] == 0
    assert console(k, pid) == "still serving\n"


OK_AGENT = """
from agentos import sdk

async def main():
    await sdk.write_console("still serving\\n")
"""


# -- orphans, zombies and wait -------------------------------------------------------------

ORPHANING_PARENT = """
from agentos import sdk

async def child():
    await sdk.write_console("child up\\n")
    await sdk.sleep(0.6)
    await sdk.write_console("child done\\n")
    return 5

async def main():
    pid = await sdk.spawn("orphan.py:child", name="the-child")
    await sdk.write_console(f"spawned {pid}\\n")
    return 0  # exits without waiting: the child is orphaned
"""


def test_orphan_is_adopted_by_init_and_reaped_when_it_exits(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    parent = spawn(kernel, agent_file(ORPHANING_PARENT, "orphan.py"))
    assert wait_exit(kernel, parent)["status"] == 0
    child = int(wait_console(kernel, parent, "spawned").split("spawned ")[1].split()[0])
    row = proc(kernel, child)
    assert row["name"] == "the-child"
    assert row["ppid"] == param.INIT_PID, "an orphan belongs to init"
    assert row["state"] in ("ready", "blocked"), "the orphan keeps running"
    assert events(kernel, "proc.reparented", pid=child, ppid=param.INIT_PID)

    st = wait_exit(kernel, child)
    assert st["status"] == 5
    row = wait_state(kernel, child, "dead")  # init reaps it: no zombie is left behind
    assert row["status"] == 5
    assert events(kernel, "proc.reaped", pid=child, by=param.INIT_PID)
    assert "child done\n" in console(kernel, parent), "the child wrote on its parent's console"


ZOMBIE_PARENT = """
from agentos import sdk

async def child():
    return 7

async def main():
    pid = await sdk.spawn("zombie.py:child")
    await sdk.write_console(f"child {pid}\\n")
    await sdk.sleep(1.0)  # the child exits meanwhile and stays a zombie until waited for
    st = await sdk.wait(pid)
    await sdk.write_console(f"reaped {st['pid']} status {st['status']}\\n")
    await sdk.sleep(30)
"""


def test_zombie_is_kept_until_its_parent_waits_then_reaped(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    parent = spawn(kernel, agent_file(ZOMBIE_PARENT, "zombie.py"))
    child = int(wait_console(kernel, parent, "child ").split("child ")[1].split()[0])
    row = wait_state(kernel, child, "zombie")
    assert row["status"] == 7 and row["ppid"] == parent
    time.sleep(0.3)
    assert proc(kernel, child)["state"] == "zombie", "nobody but the parent may reap it"
    # The parent exited child -> CHLD is recorded on the parent.
    chld = events(kernel, "proc.signaled", pid=parent, sig="CHLD")
    assert [e["payload"]["sender"] for e in chld] == [child]

    out = wait_console(kernel, parent, "reaped")
    assert f"reaped {child} status 7\n" in out
    assert proc(kernel, child)["state"] == "dead"
    assert events(kernel, "proc.reaped", pid=child, by=parent)
    assert proc(kernel, parent)["state"] == "blocked"
    kernel.call("kill", pid=parent, sig="KILL")


WAITER = """
from agentos import sdk
from agentos.errors import NotFound, TimedOut

async def child():
    await sdk.sleep(0.4)
    return 3

async def main():
    try:
        await sdk.wait(nohang=True)
    except NotFound as e:
        await sdk.write_console(f"no children: {e.code}\\n")
    try:
        await sdk.wait(1)  # init is not my child
    except NotFound as e:
        await sdk.write_console(f"not my child: {e.code}\\n")
    pid = await sdk.spawn("waiter.py:child")
    await sdk.write_console(f"nohang: {await sdk.wait(pid, nohang=True)}\\n")
    try:
        await sdk.wait(pid, timeout=0.05)
    except TimedOut as e:
        await sdk.write_console(f"timeout: {e.code}\\n")
    st = await sdk.wait(-1, timeout=10)
    await sdk.write_console(f"waited: {st['pid'] == pid} {st['status']}\\n")
    try:
        await sdk.wait()
    except NotFound as e:
        await sdk.write_console(f"after reaping: {e.code}\\n")
    return 0
"""


def test_wait_nohang_timeout_and_echild(kernel: KernelProcess, agent_file: AgentFile) -> None:
    pid = spawn(kernel, agent_file(WAITER, "waiter.py"))
    assert wait_exit(kernel, pid)["status"] == 0
    assert console(kernel, pid) == (
        "no children: ECHILD\n"
        "not my child: ECHILD\n"
        "nohang: None\n"
        "timeout: ETIMEDOUT\n"
        "waited: True 3\n"
        "after reaping: ECHILD\n"
    )


# -- signals -------------------------------------------------------------------------------


def test_term_raises_agent_cancelled_at_the_current_call(kernel: KernelProcess) -> None:
    pid = spawn(kernel, "agentos.examples.sleeper")  # catches AgentCancelled, cleans up, re-raises
    wait_state(kernel, pid, "blocked")
    kernel.call("kill", pid=pid, sig="TERM")
    st = wait_exit(kernel, pid)
    assert (st["status"], st["signal"]) == (128 + signal.SIGTERM, "TERM")
    assert console(kernel, pid).endswith("got TERM: cleaning up\n")


TERM_HANDLER = """
from agentos import sdk

async def main():
    try:
        await sdk.sleep(60)
    except sdk.AgentCancelled:
        await sdk.write_console("cancelled in sleep\\n")
        await sdk.sleep(0.01)  # calls still work during cleanup
        await sdk.write_console("clean exit\\n")
        return 0
"""


def test_term_can_be_handled_and_the_agent_exits_normally(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    pid = spawn(kernel, agent_file(TERM_HANDLER))
    wait_state(kernel, pid, "blocked")
    kernel.call("kill", pid=pid, sig="TERM")
    st = wait_exit(kernel, pid)
    assert (st["status"], st["signal"]) == (0, None)
    assert console(kernel, pid) == "cancelled in sleep\nclean exit\n"


KILLED = """
from agentos import sdk

async def main():
    await sdk.write_console("up\\n")
    try:
        await sdk.sleep(3600)
    finally:
        print("finally ran")
"""


def test_kill_ends_the_agent_at_once_with_137(kernel: KernelProcess, agent_file: AgentFile) -> None:
    pid = spawn(kernel, agent_file(KILLED))
    wait_state(kernel, pid, "blocked")
    t0 = time.monotonic()
    kernel.call("kill", pid=pid, sig="KILL")
    st = wait_exit(kernel, pid)
    assert time.monotonic() - t0 < 1.5, "KILL does not wait for the grace period"
    assert (st["status"], st["signal"]) == (128 + signal.SIGKILL, "KILL")
    assert proc(kernel, pid)["state"] == "dead"  # adopted by init, reaped
    assert console(kernel, pid).startswith("up\n")
    with pytest.raises(AgentOSError, match="ESRCH"):
        kernel.call("kill", pid=pid, sig="KILL")


TICKER = """
from agentos import sdk

async def main():
    for i in range(10_000):
        await sdk.write_console(f"tick {i}\\n")
        await sdk.sleep(0.02)
"""


def test_stop_freezes_an_agent_and_cont_resumes_it(kernel: KernelProcess, agent_file: AgentFile) -> None:
    pid = spawn(kernel, agent_file(TICKER))
    wait_console(kernel, pid, "tick 3\n")
    kernel.call("kill", pid=pid, sig="STOP")
    row = wait_state(kernel, pid, "stopped")
    assert row["stop_reason"] == "SIGSTOP"
    time.sleep(0.1)  # what was already produced becomes durable
    frozen = console(kernel, pid)
    time.sleep(0.6)  # 30 ticks' worth of time
    assert console(kernel, pid) == frozen, "a stopped agent makes no progress"
    assert proc(kernel, pid)["state"] == "stopped"

    kernel.call("kill", pid=pid, sig="CONT")
    last = int(frozen.splitlines()[-1].split()[1])
    out = wait_console(kernel, pid, f"tick {last + 5}\n")
    assert out.startswith(frozen)
    ticks = [int(line.split()[1]) for line in out.splitlines()]
    assert ticks == list(range(len(ticks))), "nothing lost or repeated around STOP/CONT"
    kernel.call("kill", pid=pid, sig="KILL")
    assert wait_exit(kernel, pid)["status"] == 137


STUBBORN = """
from agentos import sdk

async def main():
    while True:
        try:
            await sdk.sleep(60)
        except sdk.AgentCancelled:
            await sdk.write_console("ignoring TERM\\n")
"""


def test_term_is_followed_by_kill_after_the_grace_period(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    pid = spawn(kernel, agent_file(STUBBORN))
    wait_state(kernel, pid, "blocked")
    t0 = time.monotonic()
    kernel.call("kill", pid=pid, sig="TERM")
    wait_console(kernel, pid, "ignoring TERM\n")
    time.sleep(param.TERM_GRACE_SECONDS * 0.6)
    assert proc(kernel, pid)["state"] == "blocked", "the grace period is not over yet"
    st = wait_exit(kernel, pid)
    waited = time.monotonic() - t0
    assert (st["status"], st["signal"]) == (137, "KILL")
    assert param.TERM_GRACE_SECONDS - 0.5 < waited < param.TERM_GRACE_SECONDS + 3
    assert console(kernel, pid) == "ignoring TERM\n", "TERM is raised once"


def test_kill_after_term_grace_survives_a_kernel_kill_9(kernel: KernelProcess, agent_file: AgentFile) -> None:
    pid = spawn(kernel, agent_file(STUBBORN))
    wait_state(kernel, pid, "blocked")
    t0 = time.monotonic()
    kernel.call("kill", pid=pid, sig="TERM")
    wait_console(kernel, pid, "ignoring TERM\n")
    kernel.kill9()
    kernel.boot()
    left = param.TERM_GRACE_SECONDS - (time.monotonic() - t0)
    st = wait_exit(kernel, pid, timeout=max(0.5, left) + 2)
    assert (st["status"], st["signal"]) == (137, "KILL")


TERM_THEN_WORK = """
from agentos import sdk

async def main():
    try:
        await sdk.sleep(60)
    except sdk.AgentCancelled:
        await sdk.write_console("cancelled\\n")
    await sdk.sleep(1.0)
    await sdk.write_console("done\\n")
"""


def test_a_term_outcome_is_replayed_at_the_same_call_after_kill_9(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    pid = spawn(kernel, agent_file(TERM_THEN_WORK))
    wait_state(kernel, pid, "blocked")
    kernel.call("kill", pid=pid, sig="TERM")
    wait_console(kernel, pid, "cancelled\n")
    kernel.kill9()
    kernel.boot()
    st = wait_exit(kernel, pid)
    assert (st["status"], st["fault"]) == (0, None)
    assert console(kernel, pid) == "cancelled\ndone\n"


def test_a_stopped_agent_stays_stopped_across_kill_9_until_cont(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    pid = spawn(kernel, agent_file(TICKER))
    wait_console(kernel, pid, "tick 2\n")
    kernel.call("kill", pid=pid, sig="STOP")
    wait_state(kernel, pid, "stopped")
    kernel.kill9()
    kernel.boot()
    frozen = console(kernel, pid)
    time.sleep(0.5)
    assert console(kernel, pid) == frozen and proc(kernel, pid)["state"] == "stopped"
    kernel.call("kill", pid=pid, sig="CONT")
    last = int(frozen.splitlines()[-1].split()[1])
    out = wait_console(kernel, pid, f"tick {last + 3}\n")
    ticks = [int(line.split()[1]) for line in out.splitlines()]
    assert ticks == list(range(len(ticks))), "resumed by replay at CONT: nothing lost or repeated"
    kernel.call("kill", pid=pid, sig="KILL")


EXIT_STATUS = """
import sys
from agentos import sdk

async def main(how):
    await sdk.getpid()
    if how == "none":
        return None
    if how == "int":
        return 42
    if how == "big":
        return 256 + 9
    if how == "str":
        return "not a status"
    if how == "sysexit":
        sys.exit(4)
    await sdk.exit(6)
    raise AssertionError("exit returned")
"""


def test_exit_status_comes_from_return_system_exit_or_exit(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    path = agent_file(EXIT_STATUS)
    expected = {"none": 0, "int": 42, "big": 9, "str": 1, "sysexit": 4, "exit": 6}
    pids = {how: spawn(kernel, path, how) for how in expected}
    got = {how: wait_exit(kernel, pid)["status"] for how, pid in pids.items()}
    assert got == expected
    assert all(proc(kernel, pid)["fault"] is None for pid in pids.values())


# -- agents that misbehave -----------------------------------------------------------------

CRASHER = """
from agentos import sdk

def helper(x):
    raise ValueError(f"boom {x}")

async def main():
    await sdk.write_console("about to fail\\n")
    helper(42)
"""


def test_uncaught_exception_exits_1_with_traceback_and_kernel_keeps_running(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    pid = spawn(kernel, agent_file(CRASHER))
    st = wait_exit(kernel, pid)
    assert (st["status"], st["fault"]) == (1, "exception")
    assert "ValueError: boom 42" in st["reason"]
    items = logs(kernel, pid)
    assert items[0]["data"] == "about to fail\n" and items[0]["stream"] == "stdout"
    err = "".join(i["data"] for i in items if i["stream"] == "stderr")
    assert "Traceback (most recent call last)" in err
    assert "in helper" in err and "ValueError: boom 42" in err
    assert_serving(kernel, agent_file)


ASYNCIO_USER = """
import asyncio
from agentos import sdk
from agentos.errors import InvalidArgument

async def main(catch):
    if catch == "yes":
        try:
            await asyncio.sleep(0)
        except InvalidArgument as e:
            await sdk.write_console(f"refused: {e.code} {e.message}\\n")
            return 0
        return 2
    await asyncio.sleep(0)
    return 3
"""


def test_yielding_a_non_trap_raises_a_typed_error_in_the_agent(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    path = agent_file(ASYNCIO_USER)
    caught = spawn(kernel, path, "yes")
    assert wait_exit(kernel, caught)["status"] == 0
    out = console(kernel, caught)
    assert out.startswith("refused: EINVAL ") and "agentos.sdk" in out

    uncaught = spawn(kernel, path, "no")
    st = wait_exit(kernel, uncaught)
    assert (st["status"], st["fault"]) == (1, "exception")
    assert st["reason"].startswith("InvalidArgument")
    assert_serving(kernel, agent_file)


SPINNER = """
from agentos import sdk

async def main():
    await sdk.write_console("spinning\\n")
    while True:
        pass
"""


def test_watchdog_interrupts_an_agent_that_never_yields(kernel: KernelProcess, agent_file: AgentFile) -> None:
    t0 = time.monotonic()
    pid = spawn(kernel, agent_file(SPINNER))
    st = wait_exit(kernel, pid, timeout=30)
    assert st["fault"] == "watchdog" and st["status"] == 128 + 24
    assert time.monotonic() - t0 < param.WATCHDOG_SECONDS + 3
    assert console(kernel, pid) == "spinning\n"
    assert_serving(kernel, agent_file)


# -- across kill -9 ------------------------------------------------------------------------

PRINTER = """
from agentos import sdk

async def main():
    for i in range(8):
        print(f"line {i}")
        print(f"  more {i}")
        await sdk.sleep(0.1)
    print("end")
"""


def test_print_reaches_the_console_exactly_once_across_kill_9(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    pid = spawn(kernel, agent_file(PRINTER))
    wait_console(kernel, pid, "line 3\n")
    kernel.kill9()
    kernel.boot()
    assert wait_exit(kernel, pid)["status"] == 0
    expected = "".join(f"line {i}\n  more {i}\n" for i in range(8)) + "end\n"
    assert console(kernel, pid) == expected


NONDETERMINISTIC = """
from agentos import sdk

async def main(path):
    with open(path) as f:  # a host read that does not go through the SDK: breaks the rule
        mode = f.read().strip()
    if mode == "a":
        await sdk.write_console("mode a\\n")
    else:
        await sdk.time()
    await sdk.sleep(60)
"""


def test_nondeterministic_agent_gets_replay_divergence_after_kill_9(
    kernel: KernelProcess, agent_file: AgentFile, tmp_path: Path
) -> None:
    flag = tmp_path / "mode"
    flag.write_text("a")
    pid = spawn(kernel, agent_file(NONDETERMINISTIC), str(flag))
    wait_state(kernel, pid, "blocked")
    kernel.kill9()
    flag.write_text("b")
    kernel.boot()
    st = wait_exit(kernel, pid)
    assert (st["status"], st["fault"]) == (1, "ReplayDivergence")
    assert proc(kernel, pid)["fault"] == "ReplayDivergence"
    assert "not deterministic" in console(kernel, pid)
    assert_serving(kernel, agent_file)


LONG_SLEEP = """
from agentos import sdk

async def main():
    t0 = await sdk.time()
    await sdk.write_console("sleeping\\n")
    await sdk.sleep(3)
    t1 = await sdk.time()
    await sdk.write_console(f"slept {(t1 - t0) / 1e9:.3f}\\n")
"""


def test_resumed_sleep_ends_at_its_original_deadline(kernel: KernelProcess, agent_file: AgentFile) -> None:
    pid = spawn(kernel, agent_file(LONG_SLEEP))
    wait_console(kernel, pid, "sleeping\n")
    t0 = time.monotonic()
    time.sleep(1.0)
    kernel.kill9()
    kernel.boot()
    assert wait_exit(kernel, pid)["status"] == 0
    ended = time.monotonic() - t0
    out = console(kernel, pid)
    slept = float(out.split("slept ")[1])
    assert 2.9 <= slept < 3.5, out
    assert ended < 3.6, "the sleep restarted from zero after the reboot"
    assert out.count("sleeping\n") == 1


GENERATIONS = """
from agentos import sdk

async def main(gen="0"):
    g = int(gen)
    await sdk.write_console(f"gen {g}\\n")
    if g < 3:
        await sdk.sleep(0.05)
        await sdk.continue_as_new(str(g + 1))
        raise AssertionError("continue_as_new returned")
    await sdk.sleep(1.0)
    await sdk.write_console("done\\n")
    return 0
"""


def test_continue_as_new_starts_a_fresh_journal_and_survives_kill_9(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    pid = spawn(kernel, agent_file(GENERATIONS))
    wait_console(kernel, pid, "gen 3\n")
    assert proc(kernel, pid)["argv"] == ["3"]
    kernel.kill9()
    kernel.boot()
    assert wait_exit(kernel, pid)["status"] == 0
    assert console(kernel, pid) == "gen 0\ngen 1\ngen 2\ngen 3\ndone\n"
    assert [e["payload"]["epoch"] for e in events(kernel, "proc.continued_as_new", pid=pid)] == [1, 2, 3]
    resumed = events(kernel, "proc.resumed", pid=pid)
    # Only generation 3's journal is replayed: its write_console (its sleep resumes from its intent).
    assert [e["payload"]["replayed_calls"] for e in resumed] == [1]


# -- resume safety -------------------------------------------------------------------------

FRAGILE_IMPORT = """
import os
from agentos import sdk

if os.path.exists({flag!r}):  # host state read at import: fine at spawn, fails at every resume
    raise RuntimeError("cannot import: flag present")

async def main():
    await sdk.write_console("running\\n")
    await sdk.sleep(3600)
"""


def test_agent_whose_resume_keeps_failing_is_quarantined(
    kernel: KernelProcess, agent_file: AgentFile, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    pid = spawn(kernel, agent_file(FRAGILE_IMPORT.format(flag=str(flag))))
    wait_console(kernel, pid, "running\n")
    flag.write_text("x")
    for attempt in range(1, param.RESUME_QUARANTINE_AFTER + 1):
        kernel.kill9()
        kernel.boot()
        wait_console(kernel, pid, "agentos: cannot resume", count=attempt)
        row = proc(kernel, pid)
        assert row["state"] in ("ready", "blocked"), f"boot {attempt}: a failed resume kills nothing: {row}"
        assert console(kernel, pid).count("agentos: cannot resume") == attempt
    kernel.kill9()
    kernel.boot()
    row = wait_state(kernel, pid, "stopped")
    assert row["stop_reason"].startswith("quarantined"), row
    assert "RuntimeError: cannot import" in console(kernel, pid)
    with pytest.raises(AgentOSError, match="EBUSY"):
        kernel.call("kill", pid=pid, sig="CONT")
    kernel.kill9()  # a quarantined agent stays quarantined, and the kernel boots
    kernel.boot()
    assert proc(kernel, pid)["stop_reason"].startswith("quarantined")
    kernel.call("kill", pid=pid, sig="KILL")
    assert wait_exit(kernel, pid)["status"] == 137


KERNEL_KILLER = """
import os
import signal
from agentos import sdk

CRASH = os.path.exists({flag!r})  # host state: absent at spawn, present at every resume
if CRASH and {at!r} == "import":  # stands for a C extension that crashes the process on resume
    os.kill(os.getpid(), signal.SIGKILL)

async def main():
    if CRASH and {at!r} == "replay":
        os.kill(os.getpid(), signal.SIGKILL)
    await sdk.write_console("running\\n")
    await sdk.sleep(3600)
"""


@pytest.mark.parametrize(
    "at",
    [
        "replay",
        "import",
    ],
)
def test_agent_that_crashes_the_kernel_on_resume_is_quarantined(
    kernel: KernelProcess, agent_file: AgentFile, tmp_path: Path, at: str
) -> None:
    flag = tmp_path / "crash"
    pid = spawn(kernel, agent_file(KERNEL_KILLER.format(flag=str(flag), at=at)))
    wait_console(kernel, pid, "running\n")
    flag.write_text("x")
    kernel.kill9()
    deaths = 0
    for _ in range(param.RESUME_QUARANTINE_AFTER + 2):
        try:
            kernel.boot()
        except AgentOSError:  # the kernel died resuming the agent before it served
            deaths += 1
            continue
        if survives(kernel, 1.0):
            break
        deaths += 1
    else:
        pytest.fail("the kernel never stayed up: every boot died resuming the same agent")
    assert deaths == param.RESUME_QUARANTINE_AFTER, "each crash counts once; then the agent is quarantined"
    row = wait_state(kernel, pid, "stopped")
    assert row["stop_reason"].startswith("quarantined"), row
    assert console(kernel, pid) == "running\n"
    assert kernel.call("status")["os_pid"] == kernel.os_pid


def survives(k: KernelProcess, seconds: float) -> bool:
    """Whether the booted kernel is still running after ``seconds`` (reaped if not)."""
    assert k.os_pid is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.waitpid(k.os_pid, os.WNOHANG)[0] == k.os_pid:
            k.os_pid = None
            return False
        time.sleep(0.02)
    return True


def test_boot_no_resume_leaves_agents_unresumed(kernel: KernelProcess, agent_file: AgentFile) -> None:
    pid = spawn(kernel, agent_file(TICKER))
    wait_console(kernel, pid, "tick 2\n")
    kernel.kill9()
    kernel.boot(resume=False)
    assert kernel.call("status")["resumed"] == []
    time.sleep(0.1)
    before = console(kernel, pid)
    time.sleep(0.5)
    assert console(kernel, pid) == before, "an unresumed agent does not run"
    assert proc(kernel, pid)["state"] in ("ready", "blocked")
    assert not events(kernel, "proc.resume_started", pid=pid)

    kernel.kill9()
    kernel.boot()  # a normal boot resumes it
    last = int(before.splitlines()[-1].split()[1])
    out = wait_console(kernel, pid, f"tick {last + 3}\n")
    ticks = [int(line.split()[1]) for line in out.splitlines()]
    assert ticks == list(range(len(ticks)))
    assert pid in kernel.call("status")["resumed"]
    kernel.call("kill", pid=pid, sig="KILL")


CLEANUP_ON_TERM = """
from agentos import sdk

async def main():
    try:
        await sdk.sleep(3600)
    except sdk.AgentCancelled:
        await sdk.write_console("cleanup\\n")
        return 0
    return 1
"""


def test_term_acknowledged_before_a_kill_9_is_still_raised_after_the_reboot(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    """Whether or not the cancellation reached the journal before the crash, the agent gets it."""
    pid = spawn(kernel, agent_file(CLEANUP_ON_TERM))
    wait_state(kernel, pid, "blocked")
    kernel.call("kill", pid=pid, sig="TERM")
    kernel.kill9()
    kernel.boot()
    st = wait_exit(kernel, pid)
    assert (st["status"], st["signal"]) == (0, None)
    assert console(kernel, pid) == "cleanup\n"
