"""Capabilities and secrets against a real kernel, driven the way a person does: the ``agentos`` CLI.

Covers the approval round trip (``approvals``, ``approve --for``, ``deny --reason``, a request
nobody answers), the planted-secret grep (a secret an agent reads, across a kill -9 and a replay,
appears in no byte the kernel wrote nor any CLI output), ``secret set`` errors that never echo the
value, opaque agents, a policy file given to ``boot --policy`` (and a malformed one refused before
any kernel starts), a revocation stopping an agent before its next call, ``audit --pid`` showing
revocations of the process's capabilities, and the request of an agent that died being withdrawn.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentos.sdk.client import Client
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess

_SCRIPT = Path(sys.executable).parent / "agentos"
AGENTOS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "agentos"]


# -- running the CLI ---------------------------------------------------------------------------


def agentos(
    home: Path, *argv: str, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    """Run ``agentos COMMAND --home HOME ARGS...`` (``secret SUB --home HOME ARGS...`` for a subcommand)."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTOS_HOME"}
    words = 2 if argv[0] == "secret" else 1
    return subprocess.run(
        [*AGENTOS, *argv[:words], "--home", str(home), *argv[words:]],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=env,
    )


def ok(home: Path, *argv: str, stdin: bytes | None = None, timeout: float = 30) -> str:
    r = agentos(home, *argv, stdin=stdin, timeout=timeout)
    assert r.returncode == 0, f"agentos {argv}: rc={r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    return r.stdout.decode()


def as_json(text: str) -> Any:
    return json.loads(text)


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def run_detached(home: Path, target: str, *args: str) -> int:
    return int(ok(home, "run", "--detach", target, *args).strip())


def logs(c: Client, pid: int) -> str:
    return "".join(item["data"] for item in c.stream("logs", pid=pid))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1][:1] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture
def cli_home(home: Path) -> Iterator[Path]:
    """A home the test boots with the CLI; a kernel still running at the end, there or in another
    home beside it, is killed."""
    yield home
    for pid_file in home.parent.glob("*/kernel.pid"):
        text = pid_file.read_text().strip()
        pid = int(text) if text.isdigit() else 0
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
            poll(lambda pid=pid: not _alive(pid), timeout=30)


# -- 1. the approval round trip --------------------------------------------------------------

ASKING_AGENT = """
from agentos import sdk
from agentos.errors import PermissionDenied, TimedOut


async def main(timeout: str = "60") -> int:
    try:
        await sdk.secret("API_KEY")
        await sdk.write_console("first read: allowed?!\\n")
    except PermissionDenied as err:
        await sdk.write_console(f"first read: {err.code}\\n")
    try:
        got = await sdk.cap_request("secret:API_KEY", ["read"], "need it", timeout=float(timeout))
    except PermissionDenied as err:
        await sdk.write_console(f"refused {type(err).__name__} {err.code}: {err.message}\\n")
        return 2
    except TimedOut as err:
        await sdk.write_console(f"unanswered {type(err).__name__} {err.code}: {err.message}\\n")
        return 3
    value = await sdk.secret("API_KEY")
    await sdk.write_console(f"{got['outcome']} cap={got['cap']} length={len(value)}\\n")
    await sdk.sleep(3)  # alive (holding the grant) while the test looks at its capabilities
    return 0
"""


@pytest.mark.timeout(60)
def test_approve_deny_and_an_unanswered_request_through_the_cli(kernel: KernelProcess, agent_file) -> None:
    home = kernel.home
    assert "secret API_KEY set (12 bytes)" in ok(home, "secret", "set", "API_KEY", stdin=b"key-material\n")
    target = agent_file(ASKING_AGENT)
    approved = run_detached(home, target, "60")
    refused = run_detached(home, target, "60")
    unanswered = run_detached(home, target, "1")

    def pending() -> dict[int, dict[str, Any]]:
        rows = as_json(ok(home, "approvals", "--json"))
        assert all(r["outcome"] == "pending" for r in rows)
        return {r["pid"]: r for r in rows}

    asked = poll(lambda: (rows := pending()) and {approved, refused} <= set(rows) and rows)
    for pid in (approved, refused):
        assert asked[pid]["resource"] == "secret:API_KEY" and asked[pid]["rights"] == ["read"]
        assert asked[pid]["reason"] == "need it" and asked[pid]["cap"] is None
    assert "need it" in ok(home, "approvals") and "pending" in ok(home, "approvals")

    # approve, for five minutes
    out = ok(home, "approve", str(asked[approved]["id"]), "--for", "5m")
    approved_at = time.time_ns()
    assert f"approved request {asked[approved]['id']}: process {approved} holds cap" in out
    granted = [c for c in as_json(ok(home, "caps", str(approved), "--json")) if c["origin"] == "approval"]
    assert len(granted) == 1, granted
    cap = granted[0]
    assert cap["resource"] == "secret:API_KEY" and cap["rights"] == ["read"] and cap["status"] == "live"
    assert cap["holder"] == approved and cap["depth"] == 0
    assert abs(cap["expires_ns"] - approved_at - 300e9) < 30e9, "the grant lasts about five minutes"
    assert f"request {asked[approved]['id']}: need it" in (cap["note"] or "")
    text = ok(home, "caps", str(approved))
    assert f"cap {cap['cap']}: secret:API_KEY [read] origin=approval" in text and (
        "(in 5.0m)" in text or "(in 4.9m)" in text
    )

    # deny, with a reason the agent is told
    assert f"denied request {asked[refused]['id']}" in ok(
        home, "deny", str(asked[refused]["id"]), "--reason", "nope"
    )
    assert agentos(home, "approve", str(asked[refused]["id"])).returncode == 1, "decided once only"

    with kernel.client() as c:
        results = {pid: c.call("wait", pid=pid, timeout=20) for pid in (approved, refused, unanswered)}
        out_ok, out_no, out_late = (logs(c, pid) for pid in (approved, refused, unanswered))
    assert results[approved]["status"] == 0, out_ok
    assert out_ok == f"first read: EACCES\napproved cap={cap['cap']} length=12\n"

    assert results[refused]["status"] == 2, out_no
    assert out_no.startswith("first read: EACCES\nrefused PermissionDenied EACCES: ")
    assert "denied" in out_no and "nope" in out_no

    assert results[unanswered]["status"] == 3, out_late
    assert out_late.startswith("first read: EACCES\nunanswered TimedOut ETIMEDOUT: ")

    every = {r["pid"]: r for r in as_json(ok(home, "approvals", "--all", "--json"))}
    assert every[approved]["outcome"] == "approved" and every[approved]["cap"] == cap["cap"]
    assert every[approved]["duration_s"] == 300
    assert every[refused]["outcome"] == "denied" and every[refused]["answer"] == "nope"
    assert every[unanswered]["outcome"] == "expired" and every[unanswered]["by"] == 0
    assert every[unanswered]["resource"] == "secret:API_KEY" and every[unanswered]["reason"] == "need it"
    assert as_json(ok(home, "approvals", "--json")) == [], "nothing is left pending"
    assert "expired" in ok(home, "approvals", "--all")

    # the audit trail of the approved agent: its denial, its request, the grant and the decision
    trail = as_json(ok(home, "audit", "--pid", str(approved), "--json"))

    def only(kind: str, **match: Any) -> dict[str, Any]:
        rows = [e for e in trail if e["kind"] == kind and match.items() <= e["payload"].items()]
        assert len(rows) == 1, (kind, match, trail)
        return rows[0]

    denial = only("audit.denied", pid=approved)
    assert denial["payload"] == {
        "pid": approved,
        "call": "secret_get",
        "right": "read",
        "resource": "secret:API_KEY",
    }
    request = only("approval.requested", pid=approved, resource="secret:API_KEY", reason="need it")
    grant = only("cap.granted", origin="approval", holder=approved, cap=cap["cap"])
    decision = only("approval.decided", outcome="approved", cap=cap["cap"])
    assert denial["seq"] < request["seq"] < grant["seq"] < decision["seq"]
    assert request["payload"]["id"] == decision["payload"]["id"] == asked[approved]["id"]
    assert all(e["payload"].get("pid", approved) == approved for e in trail), "only this agent's"
    assert [e["kind"] for e in as_json(ok(home, "audit", "--pid", str(approved), "--denied", "--json"))] == [
        "audit.denied"
    ]
    text = ok(home, "audit", "--pid", str(approved))
    assert f"DENIED secret_get by {approved}" in text and "approved by" in text
    late = as_json(ok(home, "audit", "--pid", str(unanswered), "--json"))
    assert [e["payload"]["outcome"] for e in late if e["kind"] == "approval.decided"] == ["expired"]


# -- 2. the planted-secret grep --------------------------------------------------------------

SECRET_AGENT = """
import hashlib
import hmac

from agentos import sdk


async def main(name: str) -> int:
    value = await sdk.secret(name)
    digest = hashlib.sha256(value).hexdigest()
    mac = hmac.new(value, b"agentos", "sha256").hexdigest()
    await sdk.write_console(f"read {len(value)} bytes sha256={digest} hmac={mac}\\n")
    await sdk.sleep(1)
    # blocks until the test approves: the kernel is killed (kill -9) here, and this agent resumed by replay
    got = await sdk.cap_request("secret:GO", ["read"], "may I finish?", timeout=60)
    await sdk.write_console(f"{got['outcome']}; again sha256={hashlib.sha256(value).hexdigest()}\\n")
    return 0
"""


def value_forms(value: bytes) -> dict[str, bytes]:
    """The value and its encodings (base64 at every alignment inside a longer stream, hex)."""
    forms = {"raw": value, "hex": value.hex().encode(), "HEX": value.hex().upper().encode()}
    for i in range(3):
        forms[f"base64@{i}"] = base64.b64encode(value[i:])[:-4]
        forms[f"base64url@{i}"] = base64.urlsafe_b64encode(value[i:])[:-4]
    return forms


def find_value(data: bytes, forms: dict[str, bytes]) -> list[str]:
    return [name for name, form in forms.items() if form in data]


def files_under(root: Path, skip: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (not ``skip``): path -> its bytes."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                out[str(path)] = path.read_bytes()
    return out


def proc_files(os_pid: int) -> dict[str, bytes]:
    return {
        f"/proc/{os_pid}/{what}": Path(f"/proc/{os_pid}/{what}").read_bytes()
        for what in ("cmdline", "environ")
    }


@pytest.mark.timeout(90)
def test_a_planted_secret_appears_in_no_byte_the_kernel_writes(kernel: KernelProcess, agent_file) -> None:
    home = kernel.home
    name = "PLANTED_TOKEN"
    value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)).encode()
    forms = value_forms(value)
    digest = hashlib.sha256(value).hexdigest()
    mac = hmac.new(value, b"agentos", "sha256").hexdigest()
    seen: dict[str, bytes] = {}  # everything the CLI printed and the kernel exposed, by where

    def cli(*argv: str, stdin: bytes | None = None) -> str:
        r = agentos(home, *argv, stdin=stdin)
        assert r.returncode == 0, f"agentos {argv}: rc={r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
        seen[f"agentos {' '.join(argv)} (#{len(seen)})"] = r.stdout + r.stderr
        return r.stdout.decode()

    assert "(40 bytes)" in cli("secret", "set", name, stdin=value + b"\n")
    listed = as_json(cli("secret", "list", "--json"))
    assert [(s["name"], s["size"]) for s in listed] == [(name, 40)]
    with kernel.client() as c:
        pid = c.call(
            "spawn",
            target=agent_file(SECRET_AGENT),
            argv=[name],
            caps=[
                {"resource": f"secret:{name}", "rights": ["read"]},
                {"resource": "sys:proc", "rights": ["self"]},
                {"resource": "sys:console", "rights": ["write"]},
                {"resource": "sys:time", "rights": ["read"]},
                {"resource": "sys:cap", "rights": ["request"]},
            ],
        )
        first = f"read 40 bytes sha256={digest} hmac={mac}\n"
        poll(lambda: logs(c, pid) == first)
        # the read is journaled (durably: events lists only what is) as a reference to the name
        done = poll(
            lambda: [
                e["payload"]
                for e in c.call("events", kind="sys.done", pid=pid)
                if e["payload"]["call"] == "secret_get"
            ]
        )
        assert done[0]["result"] == {"secret": name} and not done[0].get("result_bytes")
        assert [e["payload"] for e in c.call("events", kind="secret.read")] == [{"name": name, "pid": pid}]
    asked = poll(lambda: as_json(cli("approvals", "--json")))
    assert [(a["pid"], a["resource"]) for a in asked] == [(pid, "secret:GO")]

    assert kernel.os_pid is not None
    seen |= proc_files(kernel.os_pid)
    seen |= {f"{p} (while running)": data for p, data in files_under(home, skip=home / "secrets").items()}
    assert any(p.endswith("log.db-wal (while running)") for p in seen), sorted(seen)
    kernel.kill9()  # the agent waits for the approval, its read of the secret journaled
    kernel.boot()
    assert kernel.os_pid is not None
    seen |= {f"{k} (after reboot)": v for k, v in proc_files(kernel.os_pid).items()}
    assert pid in as_json(cli("status", "--json"))["resumed"]
    again = poll(lambda: as_json(cli("approvals", "--json")))
    assert [(a["id"], a["pid"]) for a in again] == [(asked[0]["id"], pid)], "the same request, still pending"

    events = json_lines(cli("events", "--json"))
    assert any(e["kind"] == "secret.changed" and e["payload"]["name"] == name for e in events)
    cli("audit", "--json")
    cli("audit")
    caps = as_json(cli("caps", str(pid), "--json"))
    assert any(c["resource"] == f"secret:{name}" for c in caps)
    cli("caps", str(pid))
    cli("ps", "--json")
    cli("ps", "--all")
    assert as_json(cli("status", "--json"))["os_pid"] == kernel.os_pid
    cli("logs", str(pid))
    cli("events")
    cli("approve", str(asked[0]["id"]), "--for", "1m")
    with kernel.client() as c:
        result = c.call("wait", pid=pid, timeout=30)
        out = logs(c, pid)
    assert result["status"] == 0, out
    assert out == first + f"approved; again sha256={digest}\n", "the replayed agent re-read the right value"
    cli("events", "--json")
    cli("audit", "--json")
    cli("ps", "--all", "--json")
    cli("logs", "--json", str(pid))
    cli("verify", "--json")
    cli("secret", "list")
    kernel.shutdown()  # a clean shutdown writes a snapshot too: grep it as well

    written = files_under(home, skip=home / "secrets")
    names = {Path(p).relative_to(home).as_posix() for p in written}
    assert {"log.db", "kernel.log"} <= names, names
    assert (home / "secrets" / name).read_bytes() == value, "the value was there to be found"
    assert find_value((home / "secrets" / name).read_bytes(), forms) == ["raw"]
    assert find_value(b"xx" + base64.b64encode(b"." + value + b"..") + b"yy", forms), "the grep finds base64"
    leaks = {where: found for where, data in (written | seen).items() if (found := find_value(data, forms))}
    assert leaks == {}, f"the secret's value leaked into {sorted(leaks)}"
    assert digest.encode() in b"".join(seen.values()), "the agent's output (its hash) was captured"


# -- 3. errors from secret set never echo the value ------------------------------------------


@pytest.mark.timeout(60)
def test_secret_set_errors_are_clear_and_never_contain_the_value(kernel: KernelProcess) -> None:
    home = kernel.home
    value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)).encode()
    forms = value_forms(value)
    cases = [
        (["secret", "set", "no/such"], value, "$.name"),
        (["secret", "set", "1STARTS_WITH_A_DIGIT"], value, "$.name"),
        (["secret", "set", "A" * 65], value, "$.name"),
        (["secret", "set", "TOO_BIG"], value * 1700, "65536"),  # 68,000 bytes: the kernel refuses
        (["secret", "set", "WAY_TOO_BIG"], value * 27_000, "over 1048576 bytes"),  # the CLI refuses
        (["secret", "set", "EMPTY"], b"", "$.value"),
        (["secret", "rm", "NEVER_SET"], value, "no secret"),
    ]
    for argv, stdin, expected in cases:
        r = agentos(home, *argv, stdin=stdin)
        err = r.stderr.decode()
        assert r.returncode == 1, (argv, r)
        assert r.stdout == b"" and err.startswith("agentos: ") and "Traceback" not in err, (argv, err)
        assert expected in err, (argv, err)
        assert not find_value(r.stdout + r.stderr, forms), (argv, err)
        assert not find_value(r.stderr, value_forms(value[:16])), (argv, err)
    assert as_json(ok(home, "secret", "list", "--json")) == [], "nothing was stored"
    r = agentos(home.parent / "no-kernel", "secret", "set", "FINE_NAME", stdin=value)
    assert r.returncode == 1 and r.stderr.startswith(b"agentos: ") and b"no kernel is running" in r.stderr
    assert not find_value(r.stdout + r.stderr, forms)
    assert not find_value((home / "kernel.log").read_bytes(), forms)
    assert not find_value(ok(home, "events", "--json").encode(), forms)


# -- 4. opaque capabilities ------------------------------------------------------------------

OPAQUE_AGENT = """
from agentos import sdk
from agentos.errors import PermissionDenied


async def main() -> int:
    pid = await sdk.getpid()
    try:
        held = await sdk.cap_list()
        await sdk.write_console(f"pid {pid} listed {len(held)}\\n")
    except PermissionDenied as err:
        await sdk.write_console(f"pid {pid} list: {err.code}: {err.message}\\n")
    await sdk.sleep(30)  # alive while the test looks at what it holds
    return 0
"""


@pytest.mark.timeout(60)
def test_an_opaque_agent_uses_its_capabilities_but_cannot_list_them(
    kernel: KernelProcess, agent_file
) -> None:
    target = agent_file(OPAQUE_AGENT)
    with kernel.client() as c:
        opaque = c.call("spawn", target=target, opaque=True)
        plain = c.call("spawn", target=target)
        out_opaque = poll(lambda: logs(c, opaque))
        out_plain = poll(lambda: logs(c, plain))
        held = as_json(ok(kernel.home, "caps", str(opaque), "--json"))
        for pid in (opaque, plain):
            c.call("kill", pid=pid, sig="KILL")
            assert c.call("wait", pid=pid, timeout=20)["status"] == 137
    assert out_opaque.startswith(f"pid {opaque} list: EACCES: ") and "opaque" in out_opaque, out_opaque
    assert out_plain == f"pid {plain} listed 17\n", "the policy's seventeen capabilities"
    assert len(held) == 17 and all(c["origin"] == "policy" for c in held), "a person still sees what it holds"


# -- 5. a policy file --------------------------------------------------------------------------

NARROW_POLICY = """\
# only what an agent needs to run and to write to its console
[agent]

[[agent.caps]]
resource = "sys:proc"
rights = ["self"]

[[agent.caps]]
resource = "sys:console"
rights = ["write"]
"""

BAD_POLICY = """\
[agent]

[[agent.caps]]
right = ["x"]
resource = "sys:proc"
"""

TIME_AGENT = """
from agentos import sdk
from agentos.errors import PermissionDenied


async def main() -> int:
    await sdk.write_console("console works\\n")
    try:
        await sdk.time()
        await sdk.write_console("time allowed\\n")
    except PermissionDenied as err:
        await sdk.write_console(f"time: {err.code}\\n")
    return 0
"""


@pytest.mark.timeout(60)
def test_boot_with_a_policy_file_and_refusing_a_malformed_one(cli_home: Path, agent_file) -> None:
    policy = cli_home.parent / "narrow.toml"
    policy.write_text(NARROW_POLICY)
    r = agentos(cli_home, "boot", "--detach", "--policy", str(policy))
    assert r.returncode == 0, r
    try:
        assert f"policy: {policy}" in r.stderr.decode()
        status = as_json(ok(cli_home, "status", "--json"))
        assert status["policy"] == str(policy)
        pid = run_detached(cli_home, agent_file(TIME_AGENT))
        assert agentos(cli_home, "wait", str(pid)).returncode == 0
        assert ok(cli_home, "logs", str(pid)) == "console works\ntime: EACCES\n"
        trail = as_json(ok(cli_home, "audit", "--pid", str(pid), "--json"))  # its caps died with it
        granted = [e["payload"] for e in trail if e["kind"] == "cap.granted"]
        assert sorted((g["resource"], g["rights"], g["origin"]) for g in granted) == [
            ("sys:console", ["write"], "policy"),
            ("sys:proc", ["self"], "policy"),
        ]
        denied = [e["payload"] for e in trail if e["kind"] == "audit.denied"]
        assert denied == [{"pid": pid, "call": "time", "right": "read", "resource": "sys:time"}]
    finally:
        stopped = agentos(cli_home, "shutdown")
    assert stopped.returncode == 0, stopped
    assert not _alive(status["os_pid"])

    bad = cli_home.parent / "bad.toml"
    bad.write_text(BAD_POLICY)
    other = cli_home.parent / "h2"
    r = agentos(other, "boot", "--detach", "--policy", str(bad))
    err = r.stderr.decode()
    assert r.returncode != 0 and r.stdout == b"", r
    assert err.startswith("agentos: ") and f"{bad}:4:" in err and "'right'" in err and "Traceback" not in err
    assert not (other / "kernel.pid").exists() and not (other / "kernel.sock").exists()
    r = agentos(other, "status")
    assert r.returncode != 0 and "no kernel is running" in r.stderr.decode(), "no kernel was left running"
    r = agentos(cli_home, "boot", "--detach", "--policy", str(bad))  # a home with a log: refused the same
    assert r.returncode != 0 and f"{bad}:4:" in r.stderr.decode()
    assert agentos(cli_home, "status").returncode != 0


# -- 6. revocation -----------------------------------------------------------------------------

LOOP_AGENT = """
from agentos import sdk
from agentos.errors import PermissionDenied


async def main() -> int:
    await sdk.write_console("looping\\n")
    n = 0
    while True:
        for call in ("time", "sleep"):
            try:
                if call == "time":
                    await sdk.time()
                    n += 1
                else:
                    await sdk.sleep(0.05)
            except PermissionDenied as err:
                await sdk.write_console(f"denied at {call} after {n} calls: {err.code}\\n")
                return 3
"""


@pytest.mark.timeout(60)
def test_a_revoked_capability_stops_an_agent_before_its_next_call(kernel: KernelProcess, agent_file) -> None:
    home = kernel.home
    with kernel.client() as c:
        pid = c.call(
            "spawn",
            target=agent_file(LOOP_AGENT),
            caps=[
                {"resource": "sys:proc", "rights": ["self"]},
                {"resource": "sys:console", "rights": ["write"]},
                {"resource": "sys:time", "rights": ["read"]},
            ],
        )
        poll(lambda: logs(c, pid) == "looping\n")
        held = {cap["resource"]: cap for cap in as_json(ok(home, "caps", str(pid), "--json"))}
        assert set(held) == {"sys:proc", "sys:console", "sys:time"}
        assert all(cap["origin"] == "spawn" and cap["status"] == "live" for cap in held.values())
        time.sleep(0.2)  # a few rounds of the loop, so the decision cache holds sys:time
        out = ok(home, "revoke", str(held["sys:time"]["cap"]), "--reason", "enough")
        t0 = time.monotonic()  # the revocation is in force once revoke has answered
        assert out == f"capability {held['sys:time']['cap']} revoked\n"
        result = c.call("wait", pid=pid, timeout=10)
        elapsed = time.monotonic() - t0
        text = logs(c, pid)
    assert result["status"] == 3, text
    assert elapsed < 3, f"the agent ran on for {elapsed:.2f}s after the revocation"
    assert text.startswith("looping\ndenied at ") and text.endswith(": EACCES\n"), text
    assert int(text.split(" after ")[1].split()[0]) >= 1, text
    r = agentos(home, "revoke", str(held["sys:time"]["cap"]))
    assert r.returncode == 1 and b"no capability" in r.stderr, "its holder exited: the capability is gone"
    denied = as_json(ok(home, "audit", "--pid", str(pid), "--denied", "--json"))
    assert len(denied) == 1 and denied[0]["payload"]["resource"] == "sys:time", denied
    revoked = [e for e in as_json(ok(home, "audit", "--json")) if e["kind"] == "cap.revoked"]
    assert [(e["payload"]["cap"], e["payload"]["reason"]) for e in revoked] == [
        (held["sys:time"]["cap"], "enough")
    ]


@pytest.mark.timeout(60)
def test_audit_of_a_process_shows_the_revocation_of_its_capability(kernel: KernelProcess, agent_file) -> None:
    home = kernel.home
    with kernel.client() as c:
        pid = c.call(
            "spawn",
            target=agent_file("from agentos import sdk\n\nasync def main():\n    await sdk.sleep(60)\n"),
            caps=[{"resource": "sys:proc", "rights": ["self"]}, {"resource": "sys:time", "rights": ["read"]}],
        )
        time_cap = next(cap["cap"] for cap in c.call("caps", pid=pid) if cap["resource"] == "sys:time")
        ok(home, "revoke", str(time_cap))
        trail = as_json(ok(home, "audit", "--pid", str(pid), "--json"))
        c.call("kill", pid=pid, sig="KILL")
    assert [e["payload"]["cap"] for e in trail if e["kind"] == "cap.revoked"] == [time_cap]


@pytest.mark.timeout(60)
def test_the_request_of_a_process_that_died_is_no_longer_pending(kernel: KernelProcess, agent_file) -> None:
    home = kernel.home
    asking = 'from agentos import sdk\n\nasync def main():\n    await sdk.cap_request("secret:X", ["read"], timeout=0.5)\n'
    with kernel.client() as c:
        pid = c.call("spawn", target=agent_file(asking))
        asked = poll(lambda: as_json(ok(home, "approvals", "--json")))
        assert [a["pid"] for a in asked] == [pid]
        c.call("kill", pid=pid, sig="KILL")
        assert c.call("wait", pid=pid, timeout=20)["status"] == 137
    time.sleep(max(0.0, (asked[0]["deadline_ns"] - time.time_ns()) / 1e9) + 0.5)  # past its deadline too
    r = agentos(home, "approve", str(asked[0]["id"]))
    assert r.returncode == 1 and b"already cancelled" in r.stderr
    assert as_json(ok(home, "approvals", "--json")) == [], "nobody is left to answer"
    every = as_json(ok(home, "approvals", "--all", "--json"))
    assert [a["outcome"] for a in every] == ["cancelled"]


DEPUTY = '''
"""Reads secret D with the capability it names, then with one it does not hold, then a bad handle."""
from agentos import sdk
from agentos.abi.traps import trap
from agentos.errors import AgentOSError


async def main():
    held = {c["resource"]: c["cap"] for c in await sdk.cap_list()}
    handle = held["secret:D"]
    out = [len(await sdk.secret("D", cap=handle))]
    for bad in (handle + 10_000, held["sys:console"]):
        try:
            await sdk.secret("D", cap=bad)
        except AgentOSError as err:
            out.append(err.code)
    try:
        await trap("getpid", {}, "not-a-handle")
    except AgentOSError as err:
        out.append(err.code)
    await sdk.write_console(" ".join(map(str, out)) + "\\n")
'''


@pytest.mark.timeout(60)
def test_an_agent_names_the_capability_a_call_uses(kernel: KernelProcess, agent_file) -> None:
    caps = [
        {"resource": "secret:D", "rights": ["read"]},
        {"resource": "sys:cap", "rights": ["list"]},
        {"resource": "sys:console", "rights": ["write"]},
        {"resource": "sys:proc", "rights": ["self"]},
    ]
    with kernel.client() as c:
        c.call("secret_set", name="D", value=b"deputy-value")
        pid = c.call("spawn", target=agent_file(DEPUTY), caps=caps)
        assert c.call("wait", pid=pid, timeout=30)["status"] == 0
        out = "".join(item["data"] for item in c.stream("logs", pid=pid)).split()
    # the named capability works; one not held, or one that does not cover it, is refused;
    # a handle that is no int is a typed error
    assert out == ["12", "EACCES", "EACCES", "EINVAL"]
