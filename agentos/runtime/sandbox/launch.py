"""Launch a real Linux program as a confined process agent: bubblewrap outside, ``agentos-stage`` inside.

    from agentos.runtime.sandbox import launch, MINIMAL
    h = launch.launch(["/bin/sh", "-c", "echo hi"], MINIMAL, workdir="/path/on/host",
                      stdout=w, channel=sock.fileno(), env={"LANG": "C.UTF-8"}, cgroup_procs=[...])
    info = h.wait(timeout=5)          # ExitInfo(status, signal, fault, core, exact)

What runs, outermost first (one ``posix_spawn``, never a fork of the caller, no ``preexec_fn``):

1. ``agentos-stage -g PROCS... [-F FD:DIR] -x -- bwrap ...`` only with ``cgroup_procs`` or ``fuse_fd``:
   the stage writes its own pid into each ``cgroup.procs``; with ``fuse_fd`` it enters a private mount
   namespace, mounts that FUSE connection (the VFS view, ``runtime/fusefs.py``) at ``workdir`` there
   and closes its copy of the fd (the host never sees the mount); then it execs bubblewrap, so bubblewrap and everything it starts
   are in the agent's groups from the first instruction, at the cost of one exec (a ``clone3`` with
   ``CLONE_INTO_CGROUP`` would need a fork of the caller; joining after spawn would race its forks).
2. ``bwrap`` (the outer fence): the profile's namespaces, ``--die-with-parent``, ``--new-session``,
   ``--cap-drop ALL``, ``--seccomp`` (the filter of ``seccomp.py``; bwrap sets ``no_new_privs``
   first), read-only system dirs, ``/proc``, ``/dev``, a private ``/tmp``, the work dir at ``/work``,
   ``--as-pid-1`` so that the stage, not bwrap's own init, is the sandbox's pid 1.
3. ``agentos-stage`` as pid 1 (``stage.c``): rlimits, Landlock, then it forks the program, closes every
   fd above 3 in it, forwards TERM/INT/HUP/... to it, reaps orphans, and writes the program's raw
   wait status to a pipe we hold, so a SIGSEGV is told apart from ``exit(139)``.

The program gets fd 0-2 (``/dev/null`` where not given) and, when ``channel`` is given, fd 3 with
``AGENTOS_FD=3`` in its environment; nothing else. Its environment is ``env`` plus ``PATH``,
``HOME=/work``, ``TMPDIR=/tmp``, ``LANG``; every ``AGENTOS_*`` key other than ``AGENTOS_FD`` is dropped
(a caller's mistake must not hand the kernel's secrets on).

A missing mechanism (``probe.py``) that the profile ``requires`` refuses the launch with
``SecurityViolation`` code ``ENOSANDBOX`` unless ``allow_missing`` names it (or is True); the
handle's ``degraded`` then lists what was skipped. Without bubblewrap nothing launches at all.

Caveat: ``--die-with-parent`` is ``PR_SET_PDEATHSIG``, tied to the *thread* that spawned bwrap: call
``launch`` from a thread that outlives the agent (the kernel's loop thread), not a short-lived worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import select
import shutil
import signal
import time
from collections.abc import Iterable, Mapping, Sequence

from agentos.errors import InvalidArgument, SecurityViolation, TimedOut
from agentos.runtime.sandbox import seccomp, stage
from agentos.runtime.sandbox.exits import ExitInfo, decode_bwrap, decode_waitstatus
from agentos.runtime.sandbox.probe import SandboxProbe, probe
from agentos.runtime.sandbox.profile import MINIMAL, SANDBOX_WORKDIR, Profile

STAGE_IN_SANDBOX = "/run/agentos/stage"
CHANNEL_FD = 3
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
ENV_KEEP_AGENTOS = frozenset({"AGENTOS_FD"})
PASSWD = "root:x:0:0:agent:/work:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
MAX_ARGV = 4096


class Sandboxed:
    """A launched agent: ``pid``/``pidfd`` are bubblewrap's (our child); signals go to the stage."""

    def __init__(
        self, pid: int, profile: Profile, info_fd: int, status_fd: int | None, degraded: tuple[str, ...]
    ):
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.profile = profile
        self.degraded = degraded
        self._info_fd: int | None = info_fd
        self._status_fd = status_fd
        self._inner_pid: int | None = None
        self._inner_pidfd: int | None = None
        self.exit: ExitInfo | None = None

    # -- the sandbox's pid 1 -----------------------------------------------------------------------
    def sandbox_pid(self) -> int | None:
        """Host pid of the sandbox's pid 1 (the stage); blocks until bwrap has cloned it."""
        if self._info_fd is not None:
            data = _read_all(self._info_fd)
            os.close(self._info_fd)
            self._info_fd = None
            with contextlib.suppress(ValueError):
                self._inner_pid = int(json.loads(data.decode() or "{}").get("child-pid") or 0) or None
            if self._inner_pid is not None and self.exit is None:
                with contextlib.suppress(OSError):
                    self._inner_pidfd = os.pidfd_open(self._inner_pid)
        return self._inner_pid

    def send_signal(self, sig: int) -> bool:
        """Deliver ``sig`` to the program (through the stage); False when it has already gone."""
        self.sandbox_pid()
        target = self._inner_pidfd if self._inner_pidfd is not None else self.pidfd
        try:
            signal.pidfd_send_signal(target, sig)
        except ProcessLookupError:
            return False
        return True

    def takes(self, num: int) -> bool:
        """Whether the sandbox's pid 1 (the stage) takes signal ``num`` now: it blocks the signals it
        forwards before it starts the program, and until then a pid 1 drops a signal it has no
        handler for — a TERM sent in the first milliseconds would be lost."""
        inner = self.sandbox_pid()
        try:
            with open(f"/proc/{inner}/status") as f:
                blocked = next(line for line in f if line.startswith("SigBlk:"))
        except (OSError, StopIteration, TypeError):
            return True  # gone, or not ours to read: send, and let the pidfd tell
        return bool(int(blocked.split()[1], 16) >> (num - 1) & 1)

    def kill(self) -> None:
        """SIGKILL the sandbox's pid 1 (the pid namespace dies with it) and bubblewrap."""
        self.send_signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    # -- exit --------------------------------------------------------------------------------------
    def poll(self) -> ExitInfo | None:
        if self.exit is None:
            pid, ws = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._finish(ws)
        return self.exit

    def wait(self, timeout: float | None = None) -> ExitInfo:
        """Wait for the end; raises TimedOut (the agent keeps running) after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimedOut(f"sandboxed pid {self.pid} still running after {timeout}s")
            select.select([self.pidfd], [], [], left)
        assert self.exit is not None
        return self.exit

    def _finish(self, ws: int) -> None:
        raw = b""
        if self._status_fd is not None:
            raw = _read_all(self._status_fd, nonblock=True)
        text = raw.decode(errors="replace").strip()
        self.exit = (
            decode_waitstatus(int(text))
            if text.isdigit()
            else decode_bwrap(ws, staged=self._status_fd is not None)
        )
        self.close()

    def close(self) -> None:
        """Release our fds (the agent, if alive, is untouched)."""
        for name in ("_info_fd", "_status_fd", "_inner_pidfd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> Sandboxed:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exit is None:
            self.kill()
            self.wait()
        os.close(self.pidfd)
        self.pidfd = -1


def clean_env(env: Mapping[str, str] | None, channel: bool) -> dict[str, str]:
    """The agent's environment: defaults, then ``env`` without kernel secrets, then AGENTOS_FD."""
    out = {"PATH": PATH, "HOME": SANDBOX_WORKDIR, "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    for k, v in (env or {}).items():
        if "=" in k or not k or not _encodable(k) or not _encodable(v):
            raise InvalidArgument(f"bad environment entry {k!r}")
        if k.startswith("AGENTOS_") and k not in ENV_KEEP_AGENTOS:
            continue
        out[k] = v
    out.pop("AGENTOS_FD", None)
    if channel:
        out["AGENTOS_FD"] = str(CHANNEL_FD)
    return out


def _missing(profile: Profile, found: SandboxProbe, allow_missing: bool | Iterable[str]) -> tuple[str, ...]:
    if not found.ok("bwrap"):
        raise SecurityViolation(f"cannot confine: {found.get('bwrap').detail}", code="ENOSANDBOX")
    gone = found.missing(profile.requires)
    allowed = set(gone) if allow_missing is True else set(allow_missing or ())
    refused = [m for m in gone if m not in allowed]
    if refused:
        details = "; ".join(f"{m}: {found.get(m).detail}" for m in refused)
        raise SecurityViolation(
            f"profile {profile.name!r} requires {', '.join(refused)}, missing here ({details}); "
            "pass allow_missing to run with less confinement",
            code="ENOSANDBOX",
        )
    optional = [m for m in ("userns", "seccomp", "landlock", "stage") if not found.ok(m)]
    return tuple(sorted(set(gone) | set(optional)))


@functools.cache
def _bwrap() -> str:
    return shutil.which("bwrap") or "bwrap"


@functools.cache
def _binds(profile: Profile) -> tuple[str, ...]:
    """bwrap arguments for the profile's read-only tree (cached: the host's layout is stable)."""
    args: list[str] = []
    for d in profile.system_dirs:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for p in profile.etc:
        if os.path.lexists(p):
            args += ["--ro-bind", p, p]
    for b in profile.extra_binds:
        args += ["--bind" if b.writable else "--ro-bind", b.source, b.dest or b.source]
    return tuple(args)


def build_argv(
    argv: Sequence[str],
    profile: Profile,
    workdir: str,
    fds: dict[str, int],
    degraded: tuple[str, ...],
    cgroup_procs: Sequence[str],
) -> list[str]:
    """The whole command line; ``fds`` names the numbers the extra fds will have in the child
    (``fuse``, when present, is mounted at ``workdir`` by the outer stage)."""
    bwrap = _bwrap()
    staged = "stage" not in degraded
    cmd: list[str] = []
    if cgroup_procs or "fuse" in fds:
        if staged:
            cmd += [stage.stage_path()] + [a for p in cgroup_procs for a in ("-g", p)]
            cmd += ["-F", f"{fds['fuse']}:{workdir}"] if "fuse" in fds else []
            cmd += ["-x", "--"]
        else:  # no stage: a shell joins, then execs bwrap
            script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
            cmd += ["/bin/sh", "-c", script, "sh", *cgroup_procs, "--"]
    cmd += [bwrap, "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--unshare-pid"]
    for ns in sorted(profile.namespaces - {"pid"}):
        if ns == "user" and "userns" in degraded:
            continue
        cmd.append(f"--unshare-{ns}")
    if "uts" in profile.namespaces:
        cmd += ["--hostname", profile.hostname]
    cmd += ["--info-fd", str(fds["info"])]
    if "seccomp" in fds:
        cmd += ["--seccomp", str(fds["seccomp"])]
    cmd += _binds(profile)
    cmd += [
        "--ro-bind-data",
        str(fds["passwd"]),
        "/etc/passwd",
        "--ro-bind-data",
        str(fds["group"]),
        "/etc/group",
    ]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    cmd += ["--bind", workdir, SANDBOX_WORKDIR, "--chdir", SANDBOX_WORKDIR]
    if staged:
        cmd += ["--ro-bind", stage.stage_path(), STAGE_IN_SANDBOX]
    cmd += ["--remount-ro", "/"]  # the sandbox's own root: nothing may be created beside the binds
    if not staged:
        return [*cmd, "--", *argv]
    cmd += ["--as-pid-1", "--", STAGE_IN_SANDBOX]
    for res, val in profile.rlimit_numbers():
        cmd += ["-l", f"{res}:{val}"]
    if profile.landlock:
        cmd += ["-L"] if "landlock" not in degraded else []
        ro = [d for d in (*profile.system_dirs, *profile.etc, "/etc/passwd", "/etc/group", STAGE_IN_SANDBOX)]
        ro += [b.dest or b.source for b in profile.extra_binds if not b.writable]
        rw = [SANDBOX_WORKDIR, "/tmp", "/dev", "/proc"] + [
            b.dest or b.source for b in profile.extra_binds if b.writable
        ]
        # "/" may be listed (the sandbox's root holds only what we chose to bind), not read
        cmd += ["-d", "/"] + [a for p in ro for a in ("-r", p)] + [a for p in rw for a in ("-w", p)]
        cmd += ["-S"] + (["-N"] if profile.net == "none" else [])
    return [*cmd, "-s", str(fds["status"]), "--", *argv]


def launch(
    argv: Sequence[str],
    profile: Profile = MINIMAL,
    *,
    workdir: str,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    channel: int | None = None,
    env: Mapping[str, str] | None = None,
    cgroup_procs: Sequence[str] = (),
    allow_missing: bool | Iterable[str] = False,
    fuse_fd: int | None = None,
) -> Sandboxed:
    """Start ``argv`` confined by ``profile`` with ``workdir`` (a host directory) read-write at /work;
    with ``fuse_fd`` (an open ``/dev/fuse`` connection the caller serves) ``workdir`` is only the empty
    mount point where the stage mounts it in the sandbox's own mount namespace, and /work is the view."""
    if not argv or len(argv) > MAX_ARGV or not all(_encodable(a) for a in argv):
        raise InvalidArgument("argv must be 1..4096 strings without NUL, encodable as file names")
    if not os.path.isdir(workdir):
        raise InvalidArgument(f"workdir {workdir!r} is not a directory")
    degraded = _missing(profile, probe(), allow_missing)
    if fuse_fd is not None and "stage" in degraded:
        raise SecurityViolation("a FUSE view needs agentos-stage to mount it", code="ENOSANDBOX")
    spawn_env = clean_env(env, channel is not None)
    opened: list[int] = []  # every fd we open here; closed before returning

    def mine(fd: int) -> int:
        opened.append(fd)
        return fd

    try:
        null = mine(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
        sources = {0: stdin, 1: stdout, 2: stderr}
        targets = {n: null if fd is None else fd for n, fd in sources.items()}
        if channel is not None:
            targets[CHANNEL_FD] = channel
        info_r, info_w = (mine(fd) for fd in os.pipe2(os.O_CLOEXEC))
        status_r, status_w = (mine(fd) for fd in os.pipe2(os.O_CLOEXEC))
        staged = "stage" not in degraded
        extra = {"info": info_w, "status": status_w} if staged else {"info": info_w}
        extra["passwd"] = mine(_data_pipe(PASSWD.encode()))
        extra["group"] = mine(_data_pipe(GROUP.encode()))
        if profile.seccomp and "seccomp" not in degraded:
            bpf = seccomp.bpf_program(
                profile.seccomp_action, profile.net == "none", profile.extra_seccomp_deny
            )
            extra["seccomp"] = mine(_data_pipe(bpf))
        if fuse_fd is not None:
            extra["fuse"] = fuse_fd  # the caller's: dup'd for the child below, never closed here
        fds = {name: CHANNEL_FD + 1 + i for i, name in enumerate(extra)}
        for name, fd in extra.items():
            targets[fds[name]] = fd
        cmd = build_argv(argv, profile, os.path.realpath(workdir), fds, degraded, cgroup_procs)
        # dup every source above the targets first, so no dup2 overwrites a source still needed
        high = {t: mine(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64)) for t, fd in targets.items()}
        actions = [(os.POSIX_SPAWN_DUP2, src, t) for t, src in high.items()]
        pid = os.posix_spawn(cmd[0], cmd, spawn_env, file_actions=actions, setsid=True)
        opened.remove(info_r)
        opened.remove(status_r)
        handle = Sandboxed(pid, profile, info_r, status_r if staged else None, degraded)
        if not staged:
            os.close(status_r)
        return handle
    finally:
        for fd in opened:
            os.close(fd)


def _encodable(s: str) -> bool:
    if not isinstance(s, str) or "\0" in s:
        return False
    try:
        os.fsencode(s)
    except UnicodeError:
        return False
    return True


def _data_pipe(data: bytes) -> int:
    """A pipe's read end holding ``data`` (bubblewrap reads it to EOF); the data must fit the pipe."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        if len(data) > 60_000:
            raise InvalidArgument("sandbox data larger than a pipe buffer")
        os.write(w, data)
    finally:
        os.close(w)
    return r


def _read_all(fd: int, nonblock: bool = False) -> bytes:
    if nonblock:
        os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
