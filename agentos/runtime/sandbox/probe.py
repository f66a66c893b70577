"""Which confinement mechanisms work on this host, checked by running them, once per process.

``probe()`` returns a :class:`SandboxProbe`; its ``summary()`` is the line ``agentos status`` and the
boot log print, loud (``MISSING: ...``) when something is absent. ``launch`` refuses a profile whose
``requires`` names a missing mechanism unless the caller passes ``allow_missing``. Mechanisms:

``bwrap``     bubblewrap is installed and builds a pid + mount namespace sandbox
``userns``    it can also make a user namespace (``--unshare-user``)
``seccomp``   a filter compiles (pyseccomp over libseccomp.so.2) and bubblewrap loads it
``landlock``  the running kernel offers Landlock (the ABI version is in the detail)
``stage``     ``agentos-stage`` is built (or prebuilt) and runs
plus ``no_new_privs`` and ``pidfd``, reported but always present on the kernels bubblewrap needs.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from agentos.runtime.sandbox import landlock, seccomp, stage

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Mechanism:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SandboxProbe:
    mechanisms: tuple[Mechanism, ...]

    def get(self, name: str) -> Mechanism:
        for m in self.mechanisms:
            if m.name == name:
                return m
        raise KeyError(name)

    def ok(self, name: str) -> bool:
        return self.get(name).ok

    def missing(self, required: frozenset[str] | set[str] | tuple[str, ...] = ()) -> list[str]:
        """The names in ``required`` (every mechanism when empty) that do not work here."""
        names = required or tuple(m.name for m in self.mechanisms)
        return [n for n in names if not self.ok(n)]

    def summary(self) -> str:
        parts = [f"{m.name} {'ok' if m.ok else 'MISSING'} ({m.detail})" for m in self.mechanisms]
        gone = self.missing()
        head = "sandbox: " + ("all mechanisms work" if not gone else "MISSING: " + ", ".join(gone))
        return head + " | " + "; ".join(parts)

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {m.name: {"ok": m.ok, "detail": m.detail} for m in self.mechanisms}


def _run(argv: list[str], pass_fds: tuple[int, ...] = ()) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if done.returncode != 0:
        return False, (done.stderr.strip() or f"exit {done.returncode}")[-200:]
    return True, done.stdout.strip()


def _bwrap_base(bwrap: str) -> list[str]:
    return [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-pid",
        "--die-with-parent",
    ]


@functools.cache
def probe() -> SandboxProbe:
    """Check every mechanism by using it (cached; ``probe.cache_clear()`` to re-check)."""
    out: list[Mechanism] = []
    bwrap = shutil.which("bwrap")
    true = shutil.which("true") or "/bin/true"
    if bwrap is None:
        out.append(Mechanism("bwrap", False, "bubblewrap not installed (Debian: apt-get install bubblewrap)"))
        out.append(Mechanism("userns", False, "needs bwrap"))
    else:
        ok, version = _run([bwrap, "--version"])
        ok2, why = _run([*_bwrap_base(bwrap), "--", true])
        out.append(Mechanism("bwrap", ok and ok2, version if ok2 else f"{version}: {why}"))
        ok, why = _run([*_bwrap_base(bwrap), "--unshare-user", "--", true])
        out.append(Mechanism("userns", ok, "user namespaces" if ok else why))
    try:
        bpf = seccomp.bpf_program()
    except (seccomp.SeccompUnavailable, OSError) as e:
        out.append(Mechanism("seccomp", False, str(e)))
    else:
        ok, why = True, "libseccomp via pyseccomp"
        if bwrap is not None:
            r, w = os.pipe()
            try:
                os.write(w, bpf)
                os.close(w)
                ok, err = _run([*_bwrap_base(bwrap), "--seccomp", str(r), "--", true], pass_fds=(r,))
                why = why if ok else err
            finally:
                os.close(r)
        out.append(Mechanism("seccomp", ok, why))
    abi = landlock.abi_version()
    out.append(Mechanism("landlock", abi > 0, f"ABI {abi}" if abi else "not offered by this kernel"))
    try:
        path = stage.stage_path()
    except (stage.StageUnavailable, OSError) as e:
        out.append(Mechanism("stage", False, str(e)))
    else:
        ok, why = _run([path, "-x", "--", true])
        out.append(Mechanism("stage", ok, path if ok else why))
    nnp = _status_has("NoNewPrivs:")
    out.append(Mechanism("no_new_privs", nnp, "prctl PR_SET_NO_NEW_PRIVS" if nnp else "kernel too old"))
    out.append(Mechanism("pidfd", _pidfd_works(), "pidfd_open, waitid"))
    return SandboxProbe(tuple(out))


def _status_has(key: str) -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith(key) for line in f)
    except OSError:
        return False


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (OSError, AttributeError):
        return False
    return True
