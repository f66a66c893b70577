"""Process agents: real Linux programs as agents (``agentos run --process``), end to end on a real kernel.

Each test boots a kernel process, runs programs nobody here wrote (``sh``, ``sleep``, ``python3``)
confined by bubblewrap and a cgroup, and asserts what a user sees: the console, exit statuses and
typed faults, ``ps``, ``kill``, the syscall channel on fd 3, restart with backoff, a kernel kill -9
and reboot, a rewind (EREWOUND), and that spawn/exit cycles leave nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos import param
from agentos.errors import AgentOSError
from agentos.kernel import sysprocagent
from agentos.kernel.calls import Caller
from agentos.runtime.sandbox import cgroupfs
from agentos.runtime.sandbox.cgrouphome import CgroupManager, home_cgroup_id
from agentos.runtime.sandbox.cgroups import AgentCgroup
from agentos.runtime.sandbox.probe import probe
from agentos.state.proc import Process
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig
from tests.test_cli import agentos
from tests.test_vfs_syscalls import ok as fs_ok

_found = probe()
pytestmark = pytest.mark.skipif(
    bool(_found.missing(("bwrap", "userns", "seccomp", "stage"))),
    reason=f"the minimal sandbox profile cannot run here: {_found.summary()}",
)
CGROUPS = cgroupfs.probe()
needs_cgroups = pytest.mark.skipif(
    not CGROUPS.usable or bool(CGROUPS.missing), reason=f"cgroups incomplete here: {CGROUPS.summary()}"
)

# A client of the socket ABI with the stdlib only (no msgpack inside the sandbox): a minimal codec
# of the frames of agentos/abi/frames.py, speaking on fd $AGENTOS_FD.
CHANNEL_CLIENT = r"""
import os, socket, struct, sys
def pack(o):
    if isinstance(o, int): return bytes([o]) if 0 <= o < 128 else b"\xd3" + struct.pack(">q", o)
    if isinstance(o, str):
        b = o.encode(); return bytes([0xA0 | len(b)]) + b
    if isinstance(o, dict): return bytes([0x80 | len(o)]) + b"".join(pack(k) + pack(v) for k, v in o.items())
    raise TypeError(o)
def unpack(b, i=0):
    t = b[i]
    if t < 0x80: return t, i + 1
    if 0x80 <= t <= 0x8F:
        d = {}; i += 1
        for _ in range(t & 0x0F):
            k, i = unpack(b, i); v, i = unpack(b, i); d[k] = v
        return d, i
    if 0xA0 <= t <= 0xBF: n = t & 0x1F; return b[i + 1:i + 1 + n].decode(), i + 1 + n
    if t in (0xD9, 0xDA):
        w = 1 if t == 0xD9 else 2; n = int.from_bytes(b[i + 1:i + 1 + w], "big")
        return b[i + 1 + w:i + 1 + w + n].decode(), i + 1 + w + n
    if t == 0xC0: return None, i + 1
    if t in (0xC2, 0xC3): return t == 0xC3, i + 1
    fmt = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}[t]
    return struct.unpack_from(fmt, b, i + 1)[0], i + 1 + struct.calcsize(fmt)
s = socket.socket(fileno=int(os.environ["AGENTOS_FD"]))
def recv(n):
    out = b""
    while len(out) < n: out += s.recv(n - len(out))
    return out
def call(i, name, **args):
    body = pack({"id": i, "call": name, "args": args})
    s.sendall(struct.pack(">I", len(body)) + body)
    return unpack(recv(struct.unpack(">I", recv(4))[0]))[0]
print("hello", call(1, "hello", abi=int(sys.argv[1]))["ok"]["pid"])
print("getpid", call(2, "getpid")["ok"])
print("status", call(3, "status")["err"]["code"])
"""


def spawn(k: KernelProcess, cmd: str, *args: str, **extra: Any) -> int:
    return int(k.call("spawn", target=cmd, argv=list(args), kind="process", **extra))


def proc(k: KernelProcess, pid: int) -> dict[str, Any]:
    return next(p for p in k.call("ps", all=True) if p["pid"] == pid)


def events(k: KernelProcess, pid: int, kind: str | None = None) -> list[dict[str, Any]]:
    with k.client() as c:
        args: dict[str, Any] = {"pid": pid, "limit": 10_000} | ({"kind": kind} if kind else {})
        return list(c.stream("events", **args))


def agent_group(home: Path, pid: int) -> AgentCgroup:
    mgr = CgroupManager(home_cgroup_id(home), CGROUPS)
    lo = next(lo for lo in mgr.find_leftovers() if lo.pid == pid)
    return AgentCgroup(CGROUPS, lo.rel, pid)


def host_pids(home: Path, pid: int) -> list[int]:
    mgr = CgroupManager(home_cgroup_id(home), CGROUPS)
    return [h for lo in mgr.find_leftovers() if lo.pid == pid for h in lo.host_pids]


def test_run_process_streams_stdout_and_stderr_and_exits_with_its_status(kp: KernelProcess) -> None:
    done = agentos(kp.home, "run", "--process", "--", "sh", "-c", "echo hi; echo err >&2; exit 3")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "hi\n"
    assert "err\n" in done.stderr
    assert "inside the kernel" not in done.stderr  # the trusted-code notice is for SDK agents
    rows = json.loads(agentos(kp.home, "ps", "--all", "--json").stdout)
    row = next(r for r in rows if r["kind"] == "process")
    assert (row["name"], row["argv"], row["status"], row["restart"]) == (
        "sh",
        ["-c", row["argv"][1]],
        3,
        "never",
    )
    table = agentos(kp.home, "ps", "--all").stdout
    assert "process" in table and "exit 3" in table
    logs = agentos(kp.home, "logs", str(row["pid"]))
    assert logs.stdout == "hi\n" and logs.stderr == "err\n"
    cleaned = events(kp, row["pid"], "proc.cleaned")
    assert len(cleaned) == 1 and cleaned[0]["payload"]["fds"] == 4  # two pipes, the channel, the pidfd


def test_its_open_fds_are_exactly_stdio_and_the_channel(kp: KernelProcess) -> None:
    done = agentos(kp.home, "run", "--process", "--", "sh", "-c", "ls /proc/$$/fd")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "2", "3"]


def test_a_segfault_is_a_typed_fault(kp: KernelProcess) -> None:
    pid = spawn(kp, "sh", "-c", "kill -SEGV $$")
    st = kp.call("wait", pid=pid, timeout=30)
    assert (st["status"], st["signal"], st["fault"]) == (128 + signal.SIGSEGV, "SEGV", "segv")
    assert proc(kp, pid)["fault"] == "segv"


@needs_cgroups
def test_its_resource_group_limits_are_its_cgroups_an_oom_kill_is_typed(kp: KernelProcess) -> None:
    hog = "x = bytearray(300_000_000); print('survived')"
    done = agentos(
        kp.home, "run", "--limit", "memory_bytes=33554432", "--process", "--", "python3", "-c", hog
    )
    assert done.returncode == 128 + signal.SIGKILL and "survived" not in done.stdout
    row = next(r for r in json.loads(agentos(kp.home, "ps", "-a", "--json").stdout) if r["kind"] == "process")
    assert (row["fault"], row["signal"]) == ("oom", "KILL")
    forks = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 3 & done; wait"
    done = agentos(kp.home, "run", "--limit", "pids_max=6", "--process", "--", "sh", "-c", forks)
    assert "fork" in done.stderr.lower()  # the pids cgroup refused the forks past 6


def test_the_channel_answers_getpid_with_the_agents_own_pid(kp: KernelProcess) -> None:
    pid = spawn(kp, "python3", "-c", CHANNEL_CLIENT, str(param.ABI_VERSION))
    st = kp.call("wait", pid=pid, timeout=30)
    with kp.client() as c:
        out = "".join(i["data"] for i in c.stream("logs", pid=pid))
    assert st["status"] == 0, out
    # hello needs no spawn (the channel is the process); admin calls are not the agent's to make
    assert out.splitlines() == [f"hello {pid}", f"getpid {pid}", "status EACCES"]


@needs_cgroups
def test_kill_term_kill_stop_and_cont(kp: KernelProcess) -> None:
    term = spawn(kp, "sleep", "300")
    poll(lambda: host_pids(kp.home, term))
    kp.call("kill", pid=term, sig="TERM")
    st = kp.call("wait", pid=term, timeout=30)
    assert (st["status"], st["signal"]) == (128 + signal.SIGTERM, "TERM")

    stubborn = spawn(kp, "sh", "-c", "trap '' TERM; while :; do sleep 0.05; done")
    running = poll(lambda: host_pids(kp.home, stubborn))
    group = agent_group(kp.home, stubborn)
    kp.call("kill", pid=stubborn, sig="STOP")
    poll(group.frozen)
    assert proc(kp, stubborn)["state"] == "stopped"
    kp.call("kill", pid=stubborn, sig="CONT")
    poll(lambda: not group.frozen())
    kp.call("kill", pid=stubborn, sig="TERM")  # ignored: KILL follows after the grace period
    t0 = time.monotonic()
    st = kp.call("wait", pid=stubborn, timeout=param.TERM_GRACE_SECONDS + 30)
    assert time.monotonic() - t0 >= param.TERM_GRACE_SECONDS - 0.5
    assert st["signal"] == "KILL"
    poll(lambda: not any(os.path.exists(f"/proc/{h}") for h in running))
    assert not group.exists  # removed with everything in it

    killed = spawn(kp, "sleep", "300")
    running = poll(lambda: host_pids(kp.home, killed))
    kp.call("kill", pid=killed, sig="KILL")
    assert kp.call("wait", pid=killed, timeout=30)["status"] == 128 + signal.SIGKILL
    poll(lambda: not any(os.path.exists(f"/proc/{h}") for h in running))
    poll(lambda: events(kp, killed, "proc.cleaned"))


def test_restart_on_failure_backs_off_and_stops_after_success(kp: KernelProcess) -> None:
    script = (
        'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "run $n"; [ "$n" -ge 3 ]'
    )
    pid = spawn(kp, "sh", "-c", script, restart="on-failure")
    st = kp.call("wait", pid=pid, timeout=60)
    assert st["status"] == 0
    restarts = [e["payload"] for e in events(kp, pid, "proc.restarting")]
    assert [(r["run"], r["status"], r.get("streak", 1)) for r in restarts] == [(1, 1, 1), (2, 1, 2)]
    base = int(param.PROC_RESTART_BACKOFF_SECONDS * 1e9)
    assert [r["delay_ns"] for r in restarts] == [base, 2 * base]  # doubling
    with kp.client() as c:
        assert "".join(i["data"] for i in c.stream("logs", pid=pid)) == "run 1\nrun 2\nrun 3\n"
    exited = events(kp, pid, "proc.exited")
    assert len(exited) == 1  # one pid, three runs, one exit
    assert events(kp, pid, "proc.cleaned")[-1]["payload"].get("kept", "") == ""  # no host files
    # its files are in the VFS: its /work is /shared/agents/<pid> through FUSE, kept across runs
    assert fs_ok(kp.home, "fs", "cat", f"/shared/agents/{pid}/count") == b"3\n"


def test_a_term_between_runs_stops_the_restarts(kp: KernelProcess) -> None:
    pid = spawn(kp, "sh", "-c", "exit 1", restart="always")
    poll(lambda: proc(kp, pid)["runs"] >= 4)  # the next delay is 0.8 s or more: it is between runs
    kp.call("kill", pid=pid, sig="TERM")
    st = kp.call("wait", pid=pid, timeout=5)
    assert (st["signal"], st["reason"]) == ("TERM", "stopped by SIGTERM while waiting to restart")


@needs_cgroups
def test_kernel_kill9_reboot_finds_records_and_restarts_per_policy(kp: KernelProcess) -> None:
    once = spawn(kp, "sleep", "300")
    service = spawn(kp, "sleep", "300", restart="on-failure")
    before = poll(
        lambda: (
            host_pids(kp.home, once)
            and host_pids(kp.home, service)
            and host_pids(kp.home, once) + host_pids(kp.home, service)
        )
    )
    kp.kill9()
    kp.boot()
    poll(lambda: not any(os.path.exists(f"/proc/{h}") for h in before))  # no host process left over
    row = proc(kp, once)
    assert row["state"] in ("zombie", "dead") and row["reason"].startswith("kernel restarted")
    restarting = events(kp, service, "proc.restarting")
    assert restarting and restarting[-1]["payload"]["reason"].startswith("kernel restarted")
    fresh = poll(lambda: host_pids(kp.home, service))  # a new run, in a new cgroup
    assert not set(fresh) & set(before)
    assert proc(kp, service)["state"] not in ("zombie", "dead")
    kp.call("kill", pid=service, sig="KILL")
    kp.call("wait", pid=service, timeout=30)


@needs_cgroups
def test_rewind_before_a_live_process_agent_records_it_erewound_on_the_branch_left(kp: KernelProcess) -> None:
    mark = kp.call("status")["seq"]
    pid = spawn(kp, "sleep", "300")
    running = poll(lambda: host_pids(kp.home, pid))
    kp.call("rewind", point=str(mark))
    poll(lambda: not any(os.path.exists(f"/proc/{h}") for h in running))
    log = events(kp, pid)
    exited = [e for e in log if e["kind"] == "proc.exited"]
    assert exited and exited[0]["payload"]["fault"] == "EREWOUND"
    with kp.client() as c:
        created = [e for e in c.stream("events", kind="branch.created", limit=100)]
    assert exited[0]["seq"] < created[-1]["seq"]  # recorded before the move, on the branch left
    assert exited[0].get("branch", 1) != created[-1]["payload"]["branch"]
    assert all(p["pid"] != pid for p in kp.call("ps", all=True))  # never spawned on the new branch


def _handles(os_pid: int) -> dict[str, str]:
    """The kernel's pipes, sockets and anonymous inodes (pidfds): what a run holds. (Files are left
    out: the kernel opens log readers lazily.)"""
    out = {}
    for fd in os.listdir(f"/proc/{os_pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{os_pid}/fd/{fd}")
            if not target.startswith("/"):
                out[fd] = target
    return out


def _threads(os_pid: int) -> int:
    return len(os.listdir(f"/proc/{os_pid}/task"))


def test_spawn_exit_cycles_leave_no_fd_cgroup_thread_or_dir_behind(kp: KernelProcess) -> None:
    os_pid = kp.os_pid
    assert os_pid is not None
    for _ in range(20):  # warm: the kernel's lazily made threads (its default executor's) and readers
        warm = spawn(kp, "true")
        kp.call("wait", pid=warm, timeout=30)
    handles, threads = _handles(os_pid), _threads(os_pid)
    for _ in range(50):
        pid = spawn(kp, "sh", "-c", "exit 0")
        assert kp.call("wait", pid=pid, timeout=30)["status"] == 0
    deadline = time.monotonic() + 10  # the last client's socket closes as the kernel sees it go
    # (and a joined thread of the last run's FUSE view may take a moment to leave the task list)
    while (
        len(_handles(os_pid)) > len(handles) or _threads(os_pid) > threads + 1
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _handles(os_pid)
    assert len(left) <= len(handles), {fd: left[fd] for fd in set(left) - set(handles)}
    # a leak would leave one per run (50); the kernel's executor may still start one more of its own
    assert _threads(os_pid) <= threads + 1
    if CGROUPS.usable:
        assert CgroupManager(home_cgroup_id(kp.home), CGROUPS).find_leftovers() == []
    agents = kp.home / "agents"  # no host work dirs; "view" is the FUSE mount point, empty out here
    assert not agents.exists() or list(agents.iterdir()) in ([], [agents / "view"])
    assert not (agents / "view").exists() or list((agents / "view").iterdir()) == []


def test_status_reports_the_sandbox_and_cgroup_probes(kp: KernelProcess) -> None:
    st = poll(lambda: (s := kp.call("status")) and "probing" not in s["sandbox"] and s)
    assert st["sandbox"] == _found.summary()
    assert st["cgroups"] == CGROUPS.summary()
    shown = agentos(kp.home, "status").stdout
    assert "sandbox: all mechanisms work" in shown or "MISSING" in shown


def test_spawn_arguments_are_checked(kp: KernelProcess) -> None:
    from agentos.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        kp.call("spawn", target="sleep", argv=["1"], kind="process", restart="sometimes")
    with pytest.raises(InvalidArgument):
        kp.call("spawn", target="x.py", restart="always")  # restart is for process agents
    with pytest.raises(InvalidArgument):
        kp.call("spawn", target="sleep", kind="process", root="/shared")
    missing = spawn(kp, "/no/such/program")
    st = kp.call("wait", pid=missing, timeout=30)
    assert st["status"] != 0


# -- the kernel's half, in process: spawn's untrusted arguments, the caller kind, the restart rule --


TARGETS = st.sampled_from(["sleep", "/bin/true", "", "a\x00b", "x" * 5000, "\ud800"]) | st.text(max_size=12)
FIELDS = st.fixed_dictionaries(
    {"target": TARGETS, "kind": st.sampled_from(["process", "agent", "PROCESS", 1])},
    optional={
        "argv": st.lists(st.text(max_size=8) | st.integers(), max_size=3),
        "restart": st.sampled_from(["never", "on-failure", "always", "sometimes", None, 3]),
        "profile": st.sampled_from(["minimal", "full", "huge", None]),
        "root": st.sampled_from(["/shared", "relative", None]),
        "limits": st.dictionaries(
            st.sampled_from(["pids_max", "cpu_max", "nope"]), st.floats(-1, 1e6), max_size=2
        ),
        "name": st.text(max_size=8),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(FIELDS, min_size=1, max_size=6))
def test_fuzzed_process_spawns_get_a_pid_or_a_typed_error(tmp_path_factory: Any, args: list[Any]) -> None:
    def body(rig: KernelRig) -> None:
        for a in args:
            if a["kind"] == "agent":
                a = a | {"target": rig.target}  # never a random module name run in the kernel
            try:
                pid = rig(rig.person, "spawn", **a)
            except AgentOSError as err:
                assert err.category != "internal", err
                continue
            p = rig.k.state.world.procs.get(pid)
            assert p is not None and p.kind == a["kind"]
            if p.kind == "process":
                assert (p.target, p.restart, p.profile) == (
                    a["target"],
                    a.get("restart") or "never",
                    a.get("profile") or param.PROC_DEFAULT_PROFILE,
                )

    run_rig(KernelRig(tmp_path_factory.mktemp("fz")), body, verify=False)


def test_a_process_agents_calls_use_its_own_capabilities_and_quotas(tmp_path: Path) -> None:
    def body(rig: KernelRig) -> None:
        pid = rig(
            rig.person, "spawn", target="sleep", argv=["1"], kind="process", limits={"console_bytes": 3}
        )
        me = Caller(pid=pid, kind="process", request="1")
        assert rig(me, "getpid") == pid
        rig.fails(me, "EACCES", "status")  # an admin call: not in the policy's grants
        rig.fails(me, "EDQUOT", "write_console", data="four")  # held to its group's quota

    run_rig(KernelRig(tmp_path), body)


@pytest.mark.parametrize(
    ("policy", "status", "sig", "stop", "restarts"),
    [
        ("never", 1, None, None, False),
        ("on-failure", 0, None, None, False),
        ("on-failure", 1, None, None, True),
        ("on-failure", 139, "SEGV", None, True),
        ("always", 0, None, None, True),
        ("always", 143, "TERM", "TERM", False),  # someone asked it to stop
    ],
)
def test_the_restart_rule(
    policy: str, status: int, sig: str | None, stop: str | None, restarts: bool
) -> None:
    p = Process(pid=9, ppid=1, name="x", kind="process", restart=policy, cancel_pending=stop)
    assert sysprocagent.restarts(p, status, sig, None) is restarts


def test_backoff_doubles_up_to_its_cap() -> None:
    base = param.PROC_RESTART_BACKOFF_SECONDS
    assert [sysprocagent.backoff_ns(n) / 1e9 for n in (1, 2, 3)] == [base, 2 * base, 4 * base]
    assert sysprocagent.backoff_ns(1000) == int(param.PROC_RESTART_BACKOFF_MAX_SECONDS * 1e9)
