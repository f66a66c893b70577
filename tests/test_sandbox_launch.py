"""The process-agent launcher (agentos/runtime/sandbox/launch.py): real programs in a real sandbox.

Each test starts real programs under bubblewrap + agentos-stage and checks what they can and cannot
do from the inside: exit typing, the escape battery items that need neither FUSE nor the kernel,
hygiene (fds, environment), the channel fd, rlimits, and the refusal when a required mechanism is
missing. Skipped, with the reason, where this host lacks bubblewrap or a mechanism.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.errors import InvalidArgument, SecurityViolation
from agentos.runtime.sandbox import launch as launch_mod
from agentos.runtime.sandbox.exits import decode_bwrap, decode_waitstatus
from agentos.runtime.sandbox.launch import Sandboxed, launch
from agentos.runtime.sandbox.probe import Mechanism, SandboxProbe, probe
from agentos.runtime.sandbox.profile import FULL, MINIMAL, Profile

PROBE = probe()
MISSING = PROBE.missing(("bwrap", "userns", "seccomp", "landlock", "stage"))
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"sandbox mechanisms missing here: {MISSING}")
PY = "/usr/bin/python3"  # the system interpreter: /usr is what the sandbox sees
needs_py = pytest.mark.skipif(not os.path.exists(PY), reason=f"{PY} absent (the sandbox binds /usr only)")


def run(argv: list[str], profile: Profile = MINIMAL, workdir: Path | None = None, **kw: object) -> tuple:
    """Launch, wait, return (ExitInfo, combined stdout+stderr text)."""
    wd = workdir or Path(os.environ.get("PYTEST_WORK", "/tmp"))
    r, w = os.pipe()
    try:
        h = launch(argv, profile, workdir=str(wd), stdout=w, stderr=w, **kw)  # type: ignore[arg-type]
    finally:
        os.close(w)
    with h:
        info = h.wait(timeout=30)
    with os.fdopen(r, "rb") as f:
        return info, f.read().decode(errors="replace")


def sh(script: str, profile: Profile = MINIMAL, workdir: Path | None = None, **kw: object) -> tuple:
    return run(["/bin/sh", "-c", script], profile, workdir, **kw)


def py(code: str, profile: Profile = MINIMAL, workdir: Path | None = None, **kw: object) -> tuple:
    return run([PY, "-S", "-c", code], profile, workdir, **kw)


# -- exit status and typed faults --------------------------------------------------------------------


def test_true_exits_zero_and_exit_code_is_kept(tmp_path: Path) -> None:
    info, _ = run(["/bin/true"], workdir=tmp_path)
    assert (info.status, info.signal, info.fault, info.exact) == (0, None, None, True)
    info, _ = sh("exit 3", workdir=tmp_path)
    assert (info.status, info.signal, info.fault) == (3, None, None)


@needs_py
def test_segfault_is_a_typed_fault_and_differs_from_exit_139(tmp_path: Path) -> None:
    info, _ = py("import ctypes; ctypes.string_at(0)", workdir=tmp_path)
    assert (info.signal, info.fault, info.status, info.exact) == (signal.SIGSEGV, "segv", 139, True)
    info, _ = sh("exit 139", workdir=tmp_path)
    assert (info.status, info.signal, info.fault) == (139, None, None)


def test_missing_program_exits_127(tmp_path: Path) -> None:
    info, out = run(["/no/such/program"], workdir=tmp_path)
    assert info.status == 127 and "exec" in out


@needs_py
def test_seccomp_denied_calls_fail_with_eperm(tmp_path: Path) -> None:
    code = (
        "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True)\n"
        "def err(rc): return ctypes.get_errno() if rc == -1 else 0\n"
        "print('ptrace', err(libc.ptrace(0, 0, None, None)))\n"
        "print('unshare', err(libc.unshare(0x10000000)))\n"
        "print('mount', err(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)))\n"
        "print('bpf', err(libc.syscall(321, 0, None, 0)))\n"
        "print('keyctl', err(libc.syscall(250, 0, 0, 0, 0, 0)))\n"
        "import socket\n"
        "try: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "except OSError as e: print('packet', e.errno)\n"
        "print('alive')"
    )
    info, out = py(code, workdir=tmp_path)
    assert info.status == 0, out
    for call in ("ptrace", "unshare", "mount", "bpf", "keyctl", "packet"):
        assert f"{call} {errno.EPERM}" in out, out
    assert "alive" in out


@needs_py
def test_seccomp_kill_mode_is_typed_sigsys(tmp_path: Path) -> None:
    code = "import ctypes; ctypes.CDLL(None).ptrace(0, 0, None, None); print('survived')"
    info, out = py(code, MINIMAL.with_(seccomp_action="kill"), workdir=tmp_path)
    assert (info.signal, info.fault) == (signal.SIGSYS, "sys"), out
    assert "survived" not in out


def test_no_new_privs_and_seccomp_are_set(tmp_path: Path) -> None:
    info, out = sh("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status", workdir=tmp_path)
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out, out


# -- pids and signals ---------------------------------------------------------------------------------


def test_own_pid_namespace_hides_and_protects_host_pids(tmp_path: Path) -> None:
    me = os.getpid()
    info, out = sh(
        f"echo pid=$$; ls /proc | grep -c '^[0-9]'; kill -0 {me} && echo SIGNALLED", workdir=tmp_path
    )
    lines = out.split()
    assert lines[0] == "pid=2", out  # pid 1 is the stage, the reaper
    assert int(lines[1]) <= 4, out  # stage, sh, ls, grep at most
    assert "SIGNALLED" not in out


def test_term_is_forwarded_and_kill_ends_the_whole_tree(tmp_path: Path) -> None:
    h = launch(["/bin/sleep", "30"], MINIMAL, workdir=str(tmp_path))
    with h:
        time.sleep(0.2)
        assert h.send_signal(signal.SIGTERM)
        info = h.wait(timeout=10)
    assert (info.signal, info.fault) == (signal.SIGTERM, None)
    h = launch(["/bin/sh", "-c", "sleep 100 & sleep 100 & wait"], MINIMAL, workdir=str(tmp_path))
    with h:
        inner = h.sandbox_pid()
        time.sleep(0.2)
        children = Path(f"/proc/{inner}/task/{inner}/children").read_text().split()
        h.kill()
        info = h.wait(timeout=10)
    assert info.signal == signal.SIGKILL
    time.sleep(0.1)
    assert children and not any(Path(f"/proc/{c}").exists() for c in children)


# -- files ---------------------------------------------------------------------------------------------


def test_cannot_read_secrets_outside_the_grant(tmp_path: Path) -> None:
    work, secret = tmp_path / "work", tmp_path / "secret"
    work.mkdir()
    secret.mkdir()
    (secret / "key").write_text("TOPSECRET")
    home = os.path.expanduser("~")
    script = f"cat /etc/shadow; cat {secret}/key; ls {home}; cat /proc/1/root{secret}/key; echo done"
    info, out = sh(script, workdir=work)
    assert "TOPSECRET" not in out and "done" in out
    assert out.count("No such file") >= 3, out


def test_writes_land_only_in_the_work_dir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    script = (
        "echo data > /work/out.txt; echo data > /tmp/t && echo tmp-ok; "
        "for p in /usr/x /etc/x /x /proc/1/root/x /run/agentos/x; do echo data > $p || echo denied $p; done"
    )
    info, out = sh(script, workdir=work)
    assert (work / "out.txt").read_text() == "data\n"
    assert "tmp-ok" in out and out.count("denied") == 5, out
    assert not Path("/tmp/t").exists() or Path("/tmp/t").read_text() != "data\n"


def test_proc_1_root_is_the_sandbox_and_host_environ_is_invisible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTOS_TEST_SECRET", "hunter2-marker")
    info, out = sh("ls /proc/1/root/; cat /proc/*/environ | tr '\\0' '\\n'", workdir=tmp_path)
    assert "work" in out.split() and "root" not in out.split()  # the host's /root is not there
    assert "hunter2-marker" not in out


@needs_py
def test_landlock_is_a_second_wall(tmp_path: Path) -> None:
    """Without seccomp and a network namespace, Landlock alone still refuses TCP connect."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    code = f"import socket; s = socket.socket(); print('rc', s.connect_ex(('127.0.0.1', {port})))"
    try:
        walled = MINIMAL.with_(seccomp=False)
        _, out = py(code, walled, workdir=tmp_path)
        assert f"rc {errno.EACCES}" in out, out
        _, out = py(code, walled.with_(landlock=False), workdir=tmp_path)
        assert "rc 0" in out, out  # proves the wall above was Landlock's
    finally:
        srv.close()


# -- network ---------------------------------------------------------------------------------------------


@needs_py
def test_no_route_out_of_the_full_profile(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(3); print('out', s.connect_ex(('192.0.2.1', 80)))\n"
        "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
        "c = socket.socket(); print('lo', c.connect_ex(l.getsockname()))"
    )
    info, out = py(code, FULL, workdir=tmp_path)
    assert f"out {errno.ENETUNREACH}" in out and "lo 0" in out, out


@needs_py
def test_minimal_profile_has_no_ip_sockets(tmp_path: Path) -> None:
    code = "import socket\ntry: socket.socket()\nexcept OSError as e: print('err', e.errno)"
    _, out = py(code, workdir=tmp_path)
    assert f"err {errno.EPERM}" in out, out


# -- hygiene and the channel ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [MINIMAL, FULL], ids=lambda p: p.name)
def test_fds_are_exactly_stdio_and_channel(tmp_path: Path, profile: Profile) -> None:
    a, b = socket.socketpair()
    with a, b:
        _, out = sh("ls /proc/$$/fd", profile, workdir=tmp_path, channel=b.fileno())
    assert out.split() == ["0", "1", "2", "3"]
    _, out = sh("ls /proc/$$/fd", profile, workdir=tmp_path)
    assert out.split() == ["0", "1", "2"]


def test_env_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTOS_HOME", "/secret/home")
    a, b = socket.socketpair()
    with a, b:
        _, out = sh("env", workdir=tmp_path, channel=b.fileno(), env={"FOO": "bar", "AGENTOS_TOKEN": "t"})
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["FOO"] == "bar" and env["AGENTOS_FD"] == "3" and env["HOME"] == "/work"
    assert [k for k in env if k.startswith("AGENTOS_")] == ["AGENTOS_FD"]
    assert "/secret/home" not in out


def test_channel_fd_carries_bytes_both_ways(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    with a:
        h = launch(
            ["/bin/sh", "-c", 'cat <&"$AGENTOS_FD" >&"$AGENTOS_FD"'],
            workdir=str(tmp_path),
            channel=b.fileno(),
        )
        b.close()
        with h:
            a.sendall(b"ping through the sandbox\n")
            a.shutdown(socket.SHUT_WR)
            a.settimeout(10)
            got = b"".join(iter(lambda: a.recv(4096), b""))
            assert h.wait(timeout=10).status == 0
    assert got == b"ping through the sandbox\n"


def test_rlimits_apply(tmp_path: Path) -> None:
    _, out = sh("ulimit -n; ulimit -c", workdir=tmp_path)
    assert out.split() == ["1024", "0"]


def test_cgroup_procs_are_joined_before_exec(tmp_path: Path) -> None:
    base = Path("/sys/fs/cgroup/pids")
    if not (base / "cgroup.procs").exists() or not os.access(base, os.W_OK):
        pytest.skip("no writable cgroup v1 pids hierarchy here")
    group = base / f"agentos-launch-test-{os.getpid()}"
    group.mkdir()
    try:
        _, out = sh("cat /proc/self/cgroup", workdir=tmp_path, cgroup_procs=[str(group / "cgroup.procs")])
        assert f":pids:/{group.name}" in out, out
    finally:
        time.sleep(0.05)
        group.rmdir()


# -- refusal when a mechanism is missing ----------------------------------------------------------------------


def test_missing_required_mechanism_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = SandboxProbe(
        tuple(
            Mechanism(m.name, False, "disabled for the test") if m.name == "landlock" else m
            for m in PROBE.mechanisms
        )
    )
    monkeypatch.setattr(launch_mod, "probe", lambda: fake)
    with pytest.raises(SecurityViolation) as e:
        launch(["/bin/true"], FULL, workdir=str(tmp_path))
    assert e.value.code == "ENOSANDBOX" and "landlock" in e.value.message
    assert "MISSING: landlock" in fake.summary()
    h = launch(["/bin/true"], FULL, workdir=str(tmp_path), allow_missing=["landlock"])
    with h:
        assert h.wait(timeout=30).status == 0
    assert "landlock" in h.degraded


def test_without_the_stage_exits_are_approximate_but_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = SandboxProbe(
        tuple(
            Mechanism(m.name, False, "disabled for the test") if m.name == "stage" else m
            for m in PROBE.mechanisms
        )
    )
    monkeypatch.setattr(launch_mod, "probe", lambda: fake)
    with pytest.raises(SecurityViolation):
        launch(["/bin/true"], workdir=str(tmp_path))
    info, out = sh("kill -SEGV $$", workdir=tmp_path, allow_missing=["stage"])
    assert (info.signal, info.fault, info.exact) == (signal.SIGSEGV, "segv", False)


def test_probe_summary_names_every_mechanism() -> None:
    summary = PROBE.summary()
    for name in ("bwrap", "userns", "seccomp", "landlock", "stage", "no_new_privs", "pidfd"):
        assert name in summary
    assert summary.startswith("sandbox: all mechanisms work")


# -- decoding and untrusted arguments ------------------------------------------------------------------------


def test_decode_waitstatus() -> None:
    assert decode_waitstatus(3 << 8).status == 3
    info = decode_waitstatus(signal.SIGBUS)
    assert (info.status, info.signal, info.fault) == (128 + signal.SIGBUS, signal.SIGBUS, "bus")
    approx = decode_bwrap((128 + signal.SIGILL) << 8, staged=False)
    assert (approx.fault, approx.exact) == ("ill", False)
    assert decode_bwrap(1 << 8, staged=True).fault == "setup"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(st.text(max_size=20), max_size=4),  # surrogates and NULs included
    env=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
def test_fuzz_launch_args_give_typed_errors(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    try:
        h: Sandboxed = launch(["/bin/true", *args], workdir=str(tmp_path), env=env)
    except InvalidArgument:

        def bad(s: str) -> bool:
            try:
                os.fsencode(s)
            except UnicodeError:
                return True
            return "\0" in s

        assert any(map(bad, args)) or any(not k or "=" in k or bad(k) or bad(v) for k, v in env.items())
        return
    with h:
        assert h.wait(timeout=30).status == 0


def test_bad_arguments_are_typed(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        launch([], workdir=str(tmp_path))
    with pytest.raises(InvalidArgument):
        launch(["/bin/true"], workdir=str(tmp_path / "absent"))
    with pytest.raises(ValueError):
        Profile(name="x", namespaces=frozenset({"user"}))
