"""The ``agentos`` command as a user runs it: a subprocess per command, ``--home`` on a temp dir.

Covers ``boot --detach`` (and refusing a second kernel on the same home), ``run`` (streaming,
exit status, ``--detach``), ``ps``, ``kill -s``, ``wait``, ``logs``, ``events --since``,
``status``, ``verify``, ``state-hash``, ``shutdown`` (suspend, then resume at the next boot)
and ``shutdown --kill``; errors on stderr with a non-zero exit; ``--json`` everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentos.testing.helpers import poll

EXAMPLES = Path(__file__).resolve().parent.parent / "agentos" / "examples"
_SCRIPT = Path(sys.executable).parent / "agentos"
AGENTOS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "agentos"]


def agentos(home: Path, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``agentos COMMAND --home HOME ARGS...`` and capture what it prints."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    return subprocess.run(
        [*AGENTOS, command, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def ok(home: Path, command: str, *args: str, timeout: float = 60) -> str:
    """Run a command that must succeed; return its stdout."""
    r = agentos(home, command, *args, timeout=timeout)
    assert r.returncode == 0, f"agentos {command} {args}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def as_json(text: str) -> Any:
    return json.loads(text)


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1][:1] not in ("Z", "X")
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"kernel {pid} is still running"
        time.sleep(0.02)


def boot(home: Path) -> int:
    out = ok(home, "boot", "--detach")
    assert "kernel running" in out
    return int(out.split("(pid ")[1].split(")")[0])


@pytest.fixture
def cli_home(home: Path) -> Iterator[Path]:
    """A home on which the test boots kernels with the CLI; any kernel left is killed after."""
    yield home
    pid_file = home / "kernel.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid)


@pytest.fixture
def booted(cli_home: Path) -> Path:
    boot(cli_home)
    return cli_home


def ps(home: Path, *args: str) -> dict[int, dict[str, Any]]:
    return {p["pid"]: p for p in as_json(ok(home, "ps", "--json", *args))}


def run_detached(home: Path, target: str, *args: str) -> int:
    out = ok(home, "run", "--detach", target, *args)
    return int(out.strip())


def test_boot_detach_serves_and_a_second_boot_is_refused(cli_home: Path) -> None:
    pid = boot(cli_home)
    st = as_json(ok(cli_home, "status", "--json"))
    assert st["os_pid"] == pid and st["boot"] == 1 and st["home"] == str(cli_home)
    text = ok(cli_home, "status")
    assert f"os_pid: {pid}" in text

    for args in (["--detach"], []):  # detached or in the foreground: refused, with the reason
        r = agentos(cli_home, "boot", *args, timeout=30)
        assert r.returncode != 0, r
        assert "already running" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert as_json(ok(cli_home, "status", "--json"))["os_pid"] == pid, "the first kernel is untouched"


def test_run_streams_the_console_and_exits_with_the_agents_status(booted: Path) -> None:
    proc = subprocess.Popen(
        [*AGENTOS, "run", "--home", str(booted), str(EXAMPLES / "counter.py"), "3", "0.4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "tick 1/3\n"
        assert proc.poll() is None, "the first line arrives while the agent still runs"
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert rest == "tick 2/3\ntick 3/3\ncounter done\n" and proc.returncode == 0

    r = agentos(booted, "run", str(EXAMPLES / "hello.py"), "a", "--b")
    assert r.returncode == 0, r.stderr
    assert "argv=['a', '--b']" in r.stdout, "options after the target belong to the agent"
    assert r.stdout.count("print() goes to the console too\n") == 1
    assert "only trusted code" in r.stderr

    r = agentos(booted, "run", str(EXAMPLES / "failing.py"), "7")
    assert r.returncode == 7
    assert "exiting with status 7" in r.stderr and "exiting" not in r.stdout

    r = agentos(booted, "run", "agentos.examples.family:main", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("working\n") == 2 and r.stdout.count("parent reaped child") == 2


def test_run_detach_then_ps_wait_and_logs(booted: Path) -> None:
    pid = run_detached(booted, str(EXAMPLES / "counter.py"), "3", "0.3")
    procs = ps(booted)
    assert procs[pid]["name"] == "counter" and procs[pid]["argv"] == ["3", "0.3"]
    assert "PID" in ok(booted, "ps").splitlines()[0]

    r = agentos(booted, "wait", str(pid))
    assert r.returncode == 0 and f"process {pid}: exit 0" in r.stdout
    assert ok(booted, "logs", str(pid)) == "tick 1/3\ntick 2/3\ntick 3/3\ncounter done\n"
    items = json_lines(ok(booted, "logs", "--json", str(pid)))
    assert [i["data"] for i in items][-1] == "counter done\n" and all(i["pid"] == pid for i in items)
    st = as_json(ok(booted, "wait", "--json", str(pid)))
    assert st["pid"] == pid and st["status"] == 0

    failing = run_detached(booted, str(EXAMPLES / "failing.py"), "4")
    assert agentos(booted, "wait", str(failing)).returncode == 4, "wait exits with the agent's status"
    assert ps(booted, "--all")[failing]["status"] == 4


def test_kill_sends_signals(booted: Path) -> None:
    pid = run_detached(booted, "agentos.examples.sleeper", "60")
    poll(lambda: ps(booted)[pid]["state"] == "blocked")
    ok(booted, "kill", "-s", "STOP", str(pid))
    assert ps(booted)[pid]["state"] == "stopped"
    ok(booted, "kill", "--signal", "CONT", str(pid))
    assert ps(booted)[pid]["state"] == "blocked"
    ok(booted, "kill", str(pid))  # TERM by default
    r = agentos(booted, "wait", str(pid))
    assert r.returncode == 143 and "(TERM)" in r.stdout
    assert ok(booted, "logs", str(pid)).endswith("got TERM: cleaning up\n")

    other = run_detached(booted, "agentos.examples.sleeper", "60")
    ok(booted, "kill", "-s", "9", str(other))
    assert agentos(booted, "wait", str(other)).returncode == 137


def test_events_json_since_and_kind(booted: Path) -> None:
    pid = run_detached(booted, str(EXAMPLES / "hello.py"))
    agentos(booted, "wait", str(pid))
    rows = json_lines(ok(booted, "events", "--json"))
    seqs = [e["seq"] for e in rows]
    assert seqs == list(range(1, len(seqs) + 1)), "the log has no gap"
    assert {"seq", "kind", "pid", "ts", "payload", "digest"} <= set(rows[0])
    since = seqs[len(seqs) // 2]
    later = json_lines(ok(booted, "events", "--json", "--since", str(since)))
    assert later[0]["seq"] == since + 1 and all(e["seq"] > since for e in later)
    assert later[: len(rows) - since] == rows[since:], "the same events, unchanged"
    exits = json_lines(ok(booted, "events", "--json", "--kind", "proc.exited", "--pid", str(pid)))
    assert [e["payload"]["status"] for e in exits] == [0]
    text = ok(booted, "events", "--since", str(since), "--limit", "3")
    assert len(text.splitlines()) == 3 and str(since + 1) in text.splitlines()[0]


def test_verify_and_state_hash(booted: Path) -> None:
    r = agentos(booted, "verify")
    assert r.returncode == 0 and r.stdout.startswith("ok: ") and "events verified" in r.stdout
    result = as_json(ok(booted, "verify", "--json"))
    assert result["ok"] is True
    h = as_json(ok(booted, "state-hash", "--json"))
    assert len(h["hash"]) == 64 and int(h["hash"], 16) >= 0 and h["seq"] > 0
    digest, seq = ok(booted, "state-hash").split("  (seq ")
    assert len(digest) == 64 and int(seq.rstrip(")\n")) > h["seq"], "each CLI session is an event too"


def test_shutdown_suspends_agents_and_the_next_boot_resumes_them(booted: Path) -> None:
    pid = run_detached(booted, str(EXAMPLES / "counter.py"), "6", "0.4")
    poll(lambda: "tick 2/6" in ok(booted, "logs", str(pid)))
    kernel_pid = as_json(ok(booted, "status", "--json"))["os_pid"]
    out = ok(booted, "shutdown")
    assert "agents suspended" in out
    wait_gone(kernel_pid)
    r = agentos(booted, "ps")
    assert r.returncode != 0 and "no kernel is running" in r.stderr

    boot(booted)
    r = agentos(booted, "wait", str(pid))
    assert r.returncode == 0, r
    assert ok(booted, "logs", str(pid)) == "".join(f"tick {i}/6\n" for i in range(1, 7)) + "counter done\n"
    assert pid in as_json(ok(booted, "status", "--json"))["resumed"]


def test_shutdown_kill_terminates_agents(booted: Path) -> None:
    pid = run_detached(booted, "agentos.examples.sleeper", "600")
    poll(lambda: ps(booted)[pid]["state"] == "blocked")
    kernel_pid = as_json(ok(booted, "status", "--json"))["os_pid"]
    assert "agents terminated" in ok(booted, "shutdown", "--kill")
    wait_gone(kernel_pid)

    boot(booted)
    row = ps(booted, "--all")[pid]
    assert row["state"] in ("zombie", "dead") and row["status"] == 143 and row["signal"] == "TERM"
    assert ok(booted, "logs", str(pid)).endswith("got TERM: cleaning up\n")
    assert pid not in as_json(ok(booted, "status", "--json"))["resumed"]


def test_errors_go_to_stderr_with_a_nonzero_exit(cli_home: Path) -> None:
    for command in (["ps"], ["status", "--json"], ["kill", "5"], ["shutdown"]):
        r = agentos(cli_home, *command)
        assert r.returncode != 0 and r.stdout == "", (command, r)
        assert "no kernel is running" in r.stderr and "Traceback" not in r.stderr, r.stderr

    boot(cli_home)
    for command in (["kill", "9999"], ["wait", "9999"], ["logs", "9999"], ["kill", "-s", "BOGUS", "1"]):
        r = agentos(cli_home, *command)
        assert r.returncode != 0 and r.stdout == "", (command, r)
        assert r.stderr.startswith("agentos: ") and "Traceback" not in r.stderr, r.stderr
    assert "no process 9999" in agentos(cli_home, "kill", "9999").stderr
    r = agentos(cli_home, "run", str(cli_home / "missing.py"))
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert as_json(ok(cli_home, "status", "--json"))["os_pid"], "the kernel is still serving"


def test_every_listing_command_prints_valid_json(booted: Path) -> None:
    pid = run_detached(booted, str(EXAMPLES / "hello.py"))
    ok(booted, "wait", str(pid))
    for command in (
        ["ps", "--json"],
        ["ps", "--json", "--all"],
        ["status", "--json"],
        ["verify", "--json"],
        ["state-hash", "--json"],
        ["wait", "--json", str(pid)],
    ):
        value = as_json(ok(booted, *command))
        assert value, command
    for command in (["events", "--json"], ["logs", "--json", str(pid)]):
        lines = json_lines(ok(booted, *command))
        assert lines and all(isinstance(item, dict) for item in lines), command


KERNEL_KILLER = """
import os
import signal
from agentos import sdk

if os.path.exists({flag!r}):  # stands for a C extension that crashes the kernel on resume
    os.kill(os.getpid(), signal.SIGKILL)

async def main():
    await sdk.sleep(3600)
"""


def test_boot_reports_a_kernel_that_dies_while_booting(cli_home: Path, tmp_path: Path) -> None:
    flag = tmp_path / "crash"
    agent = tmp_path / "killer.py"
    agent.write_text(KERNEL_KILLER.format(flag=str(flag)))
    boot(cli_home)
    pid = run_detached(cli_home, str(agent))
    poll(lambda: ps(cli_home)[pid]["state"] == "blocked")
    kernel_pid = as_json(ok(cli_home, "status", "--json"))["os_pid"]
    ok(cli_home, "shutdown")
    wait_gone(kernel_pid)
    flag.write_text("x")
    r = agentos(cli_home, "boot", "--detach")
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode == 0:  # it served before resuming the agent, then died: that is a boot too
        poll(lambda: agentos(cli_home, "status").returncode != 0)
    else:
        assert r.stderr.startswith("agentos: ") and "while booting" in r.stderr, r.stderr
    r = agentos(cli_home, "status")
    assert r.returncode != 0 and "Traceback" not in r.stderr and r.stderr.startswith("agentos: "), r.stderr
