"""``agentos replay PID [--step]`` through a real kernel, and the ``replay_steps`` call's untrusted args.

An agent writes a file, fails a stat, prints, asks its pid and sleeps; the replay lists each call
with its (recovered) arguments, its result or typed error and the state change it caused, and
``--step`` walks them forward and backward from commands piped on stdin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.errors import AgentOSError
from agentos.state import events as ev
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig

_SCRIPT = Path(sys.executable).parent / "agentos"
AGENTOS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "agentos"]

AGENT = """
from agentos import sdk


async def main(word="hello"):
    fd = await sdk.open("/shared/replay.txt", ["write", "create", "truncate"])
    await sdk.write(fd, (word + "\\n").encode())
    await sdk.close(fd)
    try:
        await sdk.stat("/shared/missing")
    except Exception as err:
        print("no file:", err.code)
    await sdk.getpid()
    await sdk.sleep(0.01)
    return 0
"""


def cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    return subprocess.run(
        [*AGENTOS, *args[:1], "--home", str(home), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def run_agent(kernel: KernelProcess, path: str, *argv: str) -> int:
    pid = kernel.call("spawn", target=path, argv=list(argv))
    assert kernel.call("wait", pid=pid)["status"] == 0
    return pid


def test_replay_json_lists_calls_results_errors_and_the_file_change(kernel: Any, agent_file: Any) -> None:
    pid = run_agent(kernel, agent_file(AGENT), "hello")
    r = cli(kernel.home, "replay", str(pid), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["pid"] == pid and got["exit"]["status"] == 0 and got["argv"] == ["hello"]
    steps = {s["n"]: s for s in got["steps"]}
    assert [steps[n]["call"] for n in range(6)] == ["open", "write", "close", "stat", "getpid", "sleep"]
    assert steps[0]["args"] == "path='/shared/replay.txt', flags=['write', 'create', 'truncate'], mode=420"
    write = steps[1]
    assert write["args"] == "fd=3, data=b'hello\\n'" and write["result"] == "6" and write["ok"] is True
    assert {"kind": "vfs.wrote", "summary": "/shared/replay.txt: 6 bytes at 0 (size 6)"} in [
        {k: e[k] for k in ("kind", "summary")} for e in write["effects"]
    ]
    assert any(
        e["kind"] == "vfs.version" and "/shared/replay.txt" in e["summary"] for e in steps[2]["effects"]
    )
    assert steps[3]["ok"] is False and steps[3]["error"]["code"] == "ENOENT" and steps[3]["effects"] == []
    assert steps[4]["result"].startswith("(not journaled")  # getpid: its result is fixed for the caller
    assert steps[5]["blocked"] is not None and steps[5]["duration_ms"] >= 5  # parked, then answered
    printed = [e for s in got["steps"] for e in s["effects"] if e["kind"] == "console.write"]
    assert printed and "no file: ENOENT" in printed[0]["summary"]  # print() shown at the call it preceded
    assert any(e["kind"] == "proc.exited" for e in got["steps"][-1]["effects"])

    table = cli(kernel.home, "replay", str(pid))
    assert table.returncode == 0, table.stderr
    assert re.search(r"^1\s+\d+\s+write\s+fd=3, data=b'hello\\n'\s+6\s", table.stdout, re.M), table.stdout


def test_step_walks_forward_and_backward_from_piped_commands(kernel: Any, agent_file: Any) -> None:
    pid = run_agent(kernel, agent_file(AGENT), "hi")
    r = cli(kernel.home, "replay", str(pid), "--step", stdin="n\nn\nb\ng 3\nq\nn\n")
    assert r.returncode == 0, r.stderr
    shown = [int(n) for n in re.findall(r"^call (\d+) of \d+", r.stdout, re.M)]
    assert shown == [0, 1, 2, 1, 3], r.stdout  # q stopped it: the last n was never read
    assert "write(fd=3, data=b'hi\\n')" in r.stdout and "-> 3" in r.stdout
    assert "vfs.wrote        /shared/replay.txt: 3 bytes at 0" in r.stdout
    assert "-> ENOENT" in r.stdout
    eof = cli(kernel.home, "replay", str(pid), "--step", stdin="n\n")  # EOF quits
    assert eof.returncode == 0 and re.findall(r"^call (\d+)", eof.stdout, re.M) == ["0", "1"]


def test_unknown_pids_and_non_agents_are_typed_errors(kernel: Any) -> None:
    for pid, code in ((999_999, "ESRCH"), (1, "EINVAL")):
        r = cli(kernel.home, "replay", str(pid))
        assert r.returncode == 1 and f"agentos: {code}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    try:
        kernel.call("replay_steps", pid=1)
    except AgentOSError as err:
        assert err.code == "EINVAL" and "not an SDK agent" in err.message
    else:
        raise AssertionError("init is not an agent")


def test_paging_is_bounded_and_continues_where_it_stopped(tmp_path: Path) -> None:
    async def body(r: KernelRig) -> None:
        pid = r.agent().pid
        for n in range(7):  # a journal as the stepper writes it: a call's sys.done under its syscall id
            done = ev.SyscallDone(pid=pid, epoch=0, task=0, n=n, call="time", args_digest="v1:0", result=n)
            r.k.emit(done, pid, syscall=f"{pid}:0:0:{n}")
        await r.k.committer.durable(r.k.head_seq)
        pages: list[list[int]] = []
        start: int | None = 0
        while start is not None:
            page = r(r.person, "replay_steps", pid=pid, start=start, limit=3)
            pages.append([s["n"] for s in page["steps"]])
            assert [s["result"] for s in page["steps"]] == [repr(n) for n in pages[-1]]
            start = page["next"]
        assert pages == [[0, 1, 2], [3, 4, 5], [6]]
        raw = r(r.person, "replay_steps", pid=pid, start=5, limit=1, raw=True)
        assert [s["done"]["result"] for s in raw["steps"]] == [5] and raw["next"] == 6

    run_rig(KernelRig(tmp_path), body, verify=False)


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.text(max_size=8), st.binary(max_size=8)
)
ARGS = st.fixed_dictionaries(
    {},
    optional={
        "pid": st.one_of(st.sampled_from([0, 1, 2, 3, 4, 2**62, 2**63]), JUNK),
        "start": st.one_of(st.integers(-5, 2**63), JUNK),
        "limit": st.one_of(st.integers(-5, 10_000), JUNK),
        "raw": JUNK,
        "code": JUNK,
        "bogus": JUNK,
    },
)


def test_fuzz_replay_steps_args_get_typed_errors(tmp_path: Path) -> None:
    def body(r: KernelRig) -> None:
        agent = r.agent().pid

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
        @given(args=ARGS)
        def one(args: dict[str, Any]) -> None:
            try:
                got = r(r.person, "replay_steps", **args)
            except AgentOSError as err:
                assert err.category != "internal", err
                assert err.code and err.message
            else:
                assert isinstance(got, dict) and got["pid"] == args["pid"] == agent

        one()

    run_rig(KernelRig(tmp_path), body, verify=False)
