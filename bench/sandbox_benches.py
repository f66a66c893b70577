"""Spawn-to-exit of ``/bin/true`` in the process-agent sandbox (``agentos/runtime/sandbox/launch.py``).

``sandbox_spawn_minimal_vs_subprocess``  the minimal profile (user/pid/mount/ipc/uts namespaces, no
    network namespace) vs ``subprocess.run(['/bin/true'])``; issue 7's target is <= 3.
``sandbox_spawn_full_vs_bwrap``  the full profile (every namespace, loopback only) vs a bare
    ``bwrap --unshare-all`` with the same read-only system dirs, ``/proc``, ``/dev``; target <= 1.5.
``sandbox_spawn_minimal_vs_bare_bwrap``  the minimal profile vs bubblewrap with the *same* namespaces
    and binds but no stage, seccomp or Landlock: what our layers (the exec'd stage as pid 1, rlimits,
    Landlock, the BPF filter, fd renumbering, the exit-status pipe) cost on top of bubblewrap. No target.
Both sides spawn from this process, interleaved; "ours" includes ``launch()``'s argv building and
the wait that decodes the exit. The machine's own cost of making namespaces dominates both.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator

from bench.harness import Config, Sides, benchmark, time_per_op

TRUE = "/bin/true"


def _workdir() -> str:
    return tempfile.mkdtemp(prefix="agentos-bench-sandbox-")


def _bare_bwrap(namespaces: list[str]) -> list[str]:
    from agentos.runtime.sandbox.launch import _binds
    from agentos.runtime.sandbox.profile import MINIMAL

    return ["bwrap", *namespaces, "--die-with-parent", "--new-session", "--cap-drop", "ALL", *_binds(MINIMAL),
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", TRUE]  # fmt: skip


def _ours(profile_name: str, workdir: str):  # noqa: ANN202
    from agentos.runtime.sandbox.launch import launch
    from agentos.runtime.sandbox.profile import PRESETS

    profile = PRESETS[profile_name]

    def once() -> None:
        with launch([TRUE], profile, workdir=workdir) as h:
            if h.wait(timeout=30).status != 0:
                raise RuntimeError(f"sandboxed /bin/true failed: {h.exit}")

    once()  # builds the stage and runs the probe outside the timed runs
    return once


def _run_ok(argv: list[str]) -> None:
    if subprocess.run(argv, stdin=subprocess.DEVNULL).returncode != 0:
        raise RuntimeError(f"{argv[0]} failed")


@benchmark(
    "sandbox_spawn_minimal_vs_subprocess",
    target="<= 3",
    baseline="subprocess.run(['/bin/true']) spawn-to-exit",
    notes="minimal profile: bwrap (user,pid,mount,ipc,uts ns) + agentos-stage + seccomp + Landlock",
)
def minimal_vs_subprocess(cfg: Config) -> Iterator[Sides]:
    n, secs = cfg.n(200, quick=10), cfg.seconds(8, 1)
    wd = _workdir()
    try:
        ours = _ours("minimal", wd)
        yield Sides(
            baseline=lambda: time_per_op(lambda: _run_ok([TRUE]), n, warmup=3, max_seconds=secs),
            ours=lambda: time_per_op(ours, n, warmup=3, max_seconds=secs),
        )
    finally:
        os.rmdir(wd)


@benchmark(
    "sandbox_spawn_full_vs_bwrap",
    target="<= 1.5",
    baseline="bwrap --unshare-all (same ro system dirs, /proc, /dev, /tmp) /bin/true via subprocess.run",
    notes="full profile: every namespace, loopback net, agentos-stage, seccomp, Landlock",
)
def full_vs_bwrap(cfg: Config) -> Iterator[Sides]:
    n, secs = cfg.n(200, quick=10), cfg.seconds(8, 1)
    wd = _workdir()
    bare = _bare_bwrap(["--unshare-all"])
    try:
        ours = _ours("full", wd)
        yield Sides(
            baseline=lambda: time_per_op(lambda: _run_ok(bare), n, warmup=3, max_seconds=secs),
            ours=lambda: time_per_op(ours, n, warmup=3, max_seconds=secs),
        )
    finally:
        os.rmdir(wd)


@benchmark(
    "sandbox_spawn_minimal_vs_bare_bwrap",
    target=None,
    baseline="bwrap with the minimal profile's namespaces and binds, no stage/seccomp/Landlock",
    notes="the cost of agentos's layers on top of bubblewrap",
)
def minimal_vs_bare_bwrap(cfg: Config) -> Iterator[Sides]:
    n, secs = cfg.n(200, quick=10), cfg.seconds(8, 1)
    wd = _workdir()
    ns = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    bare = _bare_bwrap(ns)
    try:
        ours = _ours("minimal", wd)
        yield Sides(
            baseline=lambda: time_per_op(lambda: _run_ok(bare), n, warmup=3, max_seconds=secs),
            ours=lambda: time_per_op(ours, n, warmup=3, max_seconds=secs),
        )
    finally:
        os.rmdir(wd)
