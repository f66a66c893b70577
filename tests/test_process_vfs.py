"""A process agent's /work is its directory of the VFS, through FUSE (agentos/runtime/procview.py).

Real programs nobody here wrote (sh, git, python3, make with gcc) run as process agents on a kernel
process; what they write is then in the VFS as the agent's versioned, undoable changes, the FUSE
mount exists only inside the sandbox (never in the host's mount table), and a kernel kill -9 leaves
no mount and no hung process behind.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from agentos.runtime.procview import probe_fuse
from agentos.runtime.sandbox import cgroupfs
from agentos.runtime.sandbox.cgrouphome import CgroupManager, home_cgroup_id
from agentos.runtime.sandbox.probe import probe
from agentos.testing.helpers import poll
from agentos.testing.kernelproc import KernelProcess
from tests.test_cli import agentos
from tests.test_vfs_syscalls import agentos as fs_run
from tests.test_vfs_syscalls import ok as fs_ok

_found = probe()
pytestmark = [
    pytest.mark.skipif(
        bool(_found.missing(("bwrap", "userns", "seccomp", "stage"))),
        reason=f"the minimal sandbox profile cannot run here: {_found.summary()}",
    ),
    pytest.mark.skipif(
        probe_fuse() is not None or os.geteuid() != 0,
        reason=f"needs /dev/fuse and root to mount a view ({probe_fuse() or 'not root'})",
    ),
]
CGROUPS = cgroupfs.probe()


def run_sh(k: KernelProcess, script: str, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    pid = int(k.call("spawn", target="sh", argv=["-ec", script], kind="process"))
    return pid, k.call("wait", pid=pid, timeout=timeout)


def logs(k: KernelProcess, pid: int) -> str:
    with k.client() as c:
        return "".join(i["data"] for i in c.stream("logs", pid=pid))


def cat(k: KernelProcess, path: str) -> bytes:
    return fs_ok(k.home, "fs", "cat", path)


def fuse_mounts() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if "fuse.agentos" in line]


def test_a_write_in_work_is_a_vfs_change_of_the_agent_and_the_host_never_sees_the_mount(
    kp: KernelProcess,
) -> None:
    before = fuse_mounts()
    pid = int(
        kp.call(
            "spawn",
            target="sh",
            argv=[
                "-ec",
                "echo hi > /work/a.txt; grep -c ' /work fuse.agentos ' /proc/self/mounts; sleep 300",
            ],
            kind="process",
        )
    )
    path = f"/shared/agents/{pid}/a.txt"
    poll(lambda: logs(kp, pid) == "1\n", timeout=30)  # inside, /work is the FUSE mount
    assert cat(kp, path) == b"hi\n"
    assert fuse_mounts() == before  # while it runs, the host's mount table has no trace
    view = kp.home / "agents" / "view"
    assert list(view.iterdir()) == [] and not os.path.ismount(view)
    versions = kp.call("fs_history", path=path)["versions"]
    assert versions and {v["pid"] for v in versions} == {pid}  # attributed to the agent
    assert kp.call("status")["process_workdir"].startswith("process /work: the agent's VFS directory")
    kp.call("kill", pid=pid, sig="KILL")
    kp.call("wait", pid=pid, timeout=30)
    cleaned = [e["payload"] for e in _events(kp, pid, "proc.cleaned")]
    assert cleaned[-1]["mounts"] == 1  # the view ended with the run, recorded with the clean-up
    assert not (kp.home / "agents" / str(pid)).exists()  # no host work directory was made


def _events(k: KernelProcess, pid: int, kind: str) -> list[dict[str, Any]]:
    with k.client() as c:
        return list(c.stream("events", pid=pid, kind=kind, limit=10_000))


def test_git_init_add_commit_log_inside_a_process_agent(kp: KernelProcess) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git")
    pid, st = run_sh(
        kp,
        "git init -q . && git config user.email a@b.c && git config user.name agent\n"
        "echo one > f.txt && git add f.txt && git commit -qm first\n"
        "echo two >> f.txt && git commit -qam second && git log --format=%s",
    )
    assert st["status"] == 0, logs(kp, pid)
    assert logs(kp, pid) == "second\nfirst\n"
    root = f"/shared/agents/{pid}"
    assert cat(kp, f"{root}/f.txt") == b"one\ntwo\n"
    listing = fs_ok(kp.home, "fs", "ls", f"{root}/.git").decode()
    assert "HEAD" in listing and "objects" in listing and "refs" in listing
    assert cat(kp, f"{root}/.git/HEAD").startswith(b"ref: refs/heads/")


def test_python3_and_make_with_gcc_write_their_files_into_the_vfs(kp: KernelProcess) -> None:
    pid, st = run_sh(kp, 'python3 -c \'open("out.txt", "w").write("from python\\n")\'')
    assert st["status"] == 0, logs(kp, pid)
    assert cat(kp, f"/shared/agents/{pid}/out.txt") == b"from python\n"
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("needs make and gcc")
    script = (
        "printf 'int main(void){return 42;}\\n' > m.c\n"
        "printf 'm: m.c\\n\\tgcc -o m m.c\\n' > Makefile\n"
        "make -s; ./m || echo built=$?"
    )
    pid, st = run_sh(kp, script, timeout=120)
    assert st["status"] == 0, logs(kp, pid)
    assert logs(kp, pid).endswith("built=42\n")
    assert cat(kp, f"/shared/agents/{pid}/m")[:4] == b"\x7fELF"


def test_undo_pid_rolls_the_agents_files_back(kp: KernelProcess) -> None:
    pid, st = run_sh(kp, "echo v1 > keep.txt; mkdir d; echo x > d/y")
    assert st["status"] == 0, logs(kp, pid)
    root = f"/shared/agents/{pid}"
    assert cat(kp, f"{root}/d/y") == b"x\n"
    done = agentos(kp.home, "undo", "--pid", str(pid))
    assert done.returncode == 0, done.stderr
    for name in ("keep.txt", "d/y", "d"):
        r = fs_run(kp.home, "fs", "stat", f"{root}/{name}")
        assert r.returncode != 0 and b"ENOENT" in r.stdout + r.stderr, (name, r.stdout, r.stderr)


def test_kernel_kill9_with_a_view_open_leaves_no_mount_and_no_hung_process(kp: KernelProcess) -> None:
    before = fuse_mounts()
    pid = int(
        kp.call(
            "spawn",
            target="sh",
            argv=["-c", "while :; do cat /work/f >/dev/null 2>&1; echo x >> /work/f || exit 7; done"],
            kind="process",
        )
    )
    poll(lambda: len(cat(kp, f"/shared/agents/{pid}/f")) > 10, timeout=30)
    kp.kill9()
    time.sleep(0.2)
    kp.boot()
    row = next(p for p in kp.call("ps", all=True) if p["pid"] == pid)
    assert row["state"] in ("zombie", "dead") and row["reason"].startswith("kernel restarted")
    if CGROUPS.usable:
        assert poll(
            lambda: CgroupManager(home_cgroup_id(kp.home), CGROUPS).find_leftovers() == [], timeout=10
        )
    assert fuse_mounts() == before  # no mount was ever on the host, none is left
    assert b"x\n" in cat(kp, f"/shared/agents/{pid}/f")  # what was acknowledged is kept


def test_without_the_view_work_is_a_host_directory_and_status_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTOS_PROC_VIEW", "host")  # as on a host without /dev/fuse
    k = KernelProcess(tmp_path / "home").boot()
    try:
        assert "MISSING FUSE view" in k.call("status")["process_workdir"]
        pid, st = run_sh(k, "echo hi > a.txt")
        assert st["status"] == 0, logs(k, pid)
        kept = _events(k, pid, "proc.cleaned")[-1]["payload"]["kept"]
        assert Path(kept, "a.txt").read_text() == "hi\n"  # on the host, not recorded in the VFS
        assert fs_run(k.home, "fs", "stat", f"/shared/agents/{pid}/a.txt").returncode != 0
    finally:
        k.kill9()
        if CGROUPS.usable:
            CgroupManager(home_cgroup_id(k.home), CGROUPS).teardown()
