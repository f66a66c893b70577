"""Agent fixtures: ``agentos record export PID FILE`` and ``agentos replay --fixture FILE TARGET``.

A recorded run becomes a regression test: the same code replays against it offline (exit 0);
a deliberately changed copy is caught at the right call (exit 1) — other arguments, another call,
ending early, running on, another exit status; an edited fixture file is refused by its hash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentos.errors import AgentOSError
from agentos.runtime import fixture as fixtures
from agentos.runtime import offline
from agentos.runtime.agents import Journal, args_digest
from agentos.state import events as ev

_SCRIPT = Path(sys.executable).parent / "agentos"
AGENTOS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "agentos"]

AGENT = """
from agentos import sdk


async def main(word="hello"):
    fd = await sdk.open("/shared/fixture.txt", ["write", "create", "truncate"])
    await sdk.write(fd, (word + "\\n").encode())
    await sdk.close(fd)
    stamp = await sdk.time()
    fd = await sdk.open("/shared/fixture.txt", ["read"])
    text = (await sdk.read(fd, 100)).decode()
    await sdk.close(fd)
    print(text.strip(), stamp > 0)
    return 0 if text == word + "\\n" else 5
"""


def cli(*args: str, home: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    home_args = ["--home", str(home)] if home is not None else []
    words = 2 if args[0] == "record" else 1  # --home follows the (sub)command's name
    return subprocess.run(
        [*AGENTOS, *args[:words], *home_args, *args[words:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def recorded(kernel: Any, tmp_path: Path) -> Path:
    """An agent run on a real kernel and exported; the kernel is gone before any replay."""
    (tmp_path / "agent.py").write_text(AGENT)
    pid = kernel.call("spawn", target=str(tmp_path / "agent.py"), argv=["hello"])
    assert kernel.call("wait", pid=pid)["status"] == 0
    r = cli("record", "export", str(pid), str(tmp_path / "run.json"), home=kernel.home)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "7 calls" in r.stdout and "sha256:" in r.stdout
    kernel.kill9()  # replay is offline: no kernel
    return tmp_path


def replay(where: Path, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("replay", "--fixture", str(where / "run.json"), target, *args, cwd=where)


def variant(where: Path, name: str, old: str, new: str) -> str:
    assert old in AGENT
    (where / name).write_text(AGENT.replace(old, new))
    return name


def test_the_fixture_holds_code_argv_and_journal(recorded: Path) -> None:
    doc = json.loads((recorded / "run.json").read_text())
    assert doc["format"] == "agentos-fixture" and doc["version"] == 1 and doc["sha256"].startswith("sha256:")
    assert doc["argv"] == ["hello"] and doc["source"] == AGENT and doc["exit"]["status"] == 0
    calls = doc["calls"]
    assert [c["call"] for c in calls] == ["open", "write", "close", "time", "open", "read", "close"]
    assert calls[1]["args"] == "fd=3, data=b'hello\\n'"
    assert calls[1]["args_digest"] == args_digest({"fd": 3, "data": b"hello\n"})
    assert calls[5]["result_bytes"] is True  # read's bytes, as replay needs them


def test_the_same_code_matches_and_a_changed_copy_diverges_at_the_right_call(recorded: Path) -> None:
    same = replay(recorded, "agent.py")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "replay matches" in same.stdout and "all 7 calls" in same.stdout and "status 0" in same.stdout

    changed = replay(recorded, variant(recorded, "upper.py", "(word + ", "(word.upper() + "))
    assert changed.returncode == 1, changed.stdout + changed.stderr
    out = changed.stdout
    assert "DIVERGED at call 1 (other arguments)" in out
    assert "write(fd=3, data=b'hello\\n')" in out and "write(fd=3, data=b'HELLO\\n')" in out
    assert "1 call matched before it" in out

    other = replay(
        recorded,
        variant(recorded, "stat.py", "    stamp = await", "    await sdk.getppid()\n    stamp = await"),
    )
    assert other.returncode == 1 and "at call 3 (another call)" in other.stdout, other.stdout
    assert "time() as call 3" in other.stdout and "calls getppid()" in other.stdout

    early = replay(
        recorded,
        variant(recorded, "early.py", "    await sdk.close(fd)\n    print", "    return 0\n    print"),
    )
    assert early.returncode == 1 and "at call 6 (ended early)" in early.stdout, early.stdout

    late = replay(
        recorded, variant(recorded, "late.py", "    print(text", "    await sdk.ps()\n    print(text")
    )
    assert late.returncode == 1 and "at call 7 (ran past the recording)" in late.stdout, late.stdout

    status = replay(recorded, variant(recorded, "status.py", "return 0 if", "return 9 if"))
    assert status.returncode == 1 and "at its exit (another exit status)" in status.stdout, status.stdout

    argv = replay(recorded, "agent.py", "bye")  # explicit arguments replace the recorded argv
    assert argv.returncode == 1 and "at call 1 (other arguments)" in argv.stdout

    as_json = json.loads(
        cli("replay", "--json", "--fixture", str(recorded / "run.json"), "upper.py", cwd=recorded).stdout
    )
    assert (
        as_json["matched"] is False
        and as_json["divergence"]["n"] == 1
        and as_json["divergence"]["what"] == "args"
    )


def test_a_tampered_fixture_is_refused(recorded: Path) -> None:
    path = recorded / "run.json"
    doc = json.loads(path.read_text())
    doc["calls"][3]["result"] += 1  # another time() result: the code would still "match"
    path.write_text(json.dumps(doc))
    r = replay(recorded, "agent.py")
    assert r.returncode == 1 and "does not match its content hash" in r.stderr, r.stderr
    with pytest.raises(AgentOSError, match="content hash"):
        fixtures.load(path)
    path.write_text("{not json")
    bad = replay(recorded, "agent.py")
    assert bad.returncode == 1 and "is not a fixture file" in bad.stderr and "Traceback" not in bad.stderr


def test_the_offline_driver_follows_the_journal_as_replay_does() -> None:
    """Errors and cancellations are thrown where they were recorded; exit() ends the run."""

    async def agent() -> int:
        from agentos import sdk

        try:
            await sdk.stat("/nope")
        except AgentOSError as err:
            await sdk.exit(7 if err.code == "ENOENT" else 1)
        return 0

    journal = Journal()
    err = {"code": "ENOENT", "category": "not-found", "message": "no such file", "severity": "error"}
    journal.done[0] = ev.SyscallDone(
        pid=9,
        epoch=0,
        task=0,
        n=0,
        call="stat",
        args_digest=args_digest({"path": "/nope", "follow": True}),
        error=err,
    )
    rec = offline.Recording(journal, 9, {"status": 7, "signal": None, "fault": None, "reason": ""})
    out = offline.drive(agent(), rec)
    assert out.matched and out.status == 7 and out.how == "exit()", out
    worse = offline.drive(agent(), offline.Recording(journal, 9, {"status": 0}))
    assert worse.divergence is not None and worse.divergence.what == "status"
