"""``agentos export NAME FILE`` / ``agentos import FILE`` (``kernel/exports.py``, ``kernel/importer.py``).

What a person relies on: the world of a checkpoint, exported from one home and imported into a new
one, is the same world — its ``world_hash`` (sha256 of the canonical world alone: processes,
capabilities, groups, the file tree with every inode's manifest, open files, its branch; no ledger,
no seq) is identical; files read back byte for byte; agents alive at the checkpoint resume by replay
in the new home and finish there; a changed file is refused, and so is a home with a history.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_vfs_syscalls import ok

from agentos.errors import AgentOSError
from agentos.kernel import importer
from agentos.kernel.exports import world_hash
from agentos.store import exportfile
from agentos.store.home import Home
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.kernelrig import KernelRig, run_rig


def _export(tmp_path: Path, body: Any = None) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "cp.agentos"
    got: dict[str, Any] = {}

    async def run(r: KernelRig) -> None:
        p = r.person
        r(p, "mkdir", path="/shared/d")
        r.put(p, "/shared/d/a.txt", b"alpha\n" * 1000)
        r.put(p, "/shared/big.bin", os.urandom(300_000))
        r.agent()
        if body is not None:
            body(r)
        await r.k.committer.durable(r.k.head_seq)
        await r.call(p, "checkpoint", name="cp")
        r.put(p, "/shared/d/a.txt", b"after the checkpoint")
        got.update(await r.call(p, "export", name="cp", path=str(out)))
        got["then"] = world_hash(r.k.past.rebuild(got["branch"], got["seq"]))

    run_rig(KernelRig(tmp_path / "src"), run)
    return out, got


def test_export_then_import_gives_the_same_world(tmp_path: Path) -> None:
    out, got = _export(tmp_path)
    assert (
        got["world_hash"] == got["then"]
        and got["counts"]["agents"] == 1
        and got["bytes"] == out.stat().st_size
    )
    dst = KernelRig(tmp_path / "dst")
    done = importer.import_file(Home(tmp_path / "dst" / "home"), out)
    assert done["world_hash"] == got["world_hash"] and done["base_seq"] == got["seq"] + 1

    async def check(r: KernelRig) -> None:
        again = r.k.past.rebuild(got["branch"], got["seq"])  # the world at the base, folded in the new home
        assert world_hash(again) == got["world_hash"]
        assert r.cat("/shared/d/a.txt") == b"alpha\n" * 1000  # as at the checkpoint, not after it
        assert len(r.cat("/shared/big.bin")) == 300_000
        r.put(r.person, "/shared/new.txt", b"life goes on")
        assert r.person.pid not in again.world.procs.procs, "the new home hands out fresh pids"
        assert (await r.call(r.person, "checkpoints"))[0]["name"] == "cp"
        await r.rebuilt_equals_live()

    run_rig(dst, check)


def test_a_changed_file_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    out, _ = _export(tmp_path)
    env = msgspec.msgpack.decode(out.read_bytes(), type=exportfile.Envelope)
    body = bytearray(env.content)
    body[len(body) // 2] ^= 1
    bad = tmp_path / "bad.agentos"
    bad.write_bytes(
        msgspec.msgpack.encode(exportfile.Envelope(env.format, env.version, env.sha256, bytes(body)))
    )
    target = tmp_path / "other"
    with pytest.raises(AgentOSError) as err:
        importer.import_file(Home(target), bad)
    assert err.value.code == "EBADMSG" and "changed" in str(err.value)
    assert not (target / "log.db").exists()
    (tmp_path / "junk").write_bytes(b"not a checkpoint")
    with pytest.raises(AgentOSError) as err:
        importer.import_file(Home(target), tmp_path / "junk")
    assert err.value.code == "EBADMSG"


def test_a_home_with_a_history_is_refused(tmp_path: Path) -> None:
    out, _ = _export(tmp_path)
    with pytest.raises(AgentOSError) as err:
        importer.import_file(Home(tmp_path / "src" / "home"), out)
    assert err.value.code == "ENOTEMPTY" and "never reuses" in str(err.value)


def test_export_refuses_unknown_checkpoints_and_existing_files(tmp_path: Path) -> None:
    def body(r: KernelRig) -> None:
        r.fails(r.person, "ENOENT", "export", name="nope", path=str(tmp_path / "x"))
        (tmp_path / "there").write_bytes(b"")
        r(r.person, "checkpoint", name="here")
        r.fails(r.person, "EEXIST", "export", name="here", path=str(tmp_path / "there"))
        r.fails(r.person, "EINVAL", "export", name="here", path="relative/path")

    run_rig(KernelRig(tmp_path), body)


COUNTER = """
from agentos import sdk


async def main(n="30"):
    for i in range(1, int(n) + 1):
        fd = await sdk.open("/shared/count", ["write", "append", "create"])
        await sdk.write(fd, f"{i}\\n".encode())
        await sdk.close(fd)
        await sdk.sleep(0.05)
    return 0
"""


def lines(home: Path) -> list[int]:
    return [int(x) for x in ok(home, "fs", "cat", "/shared/count").split()]


def test_cli_export_import_agent_resumes_and_finishes(
    kernel: KernelProcess, agent_file: Any, tmp_path: Path
) -> None:
    home, target = kernel.home, agent_file(COUNTER, "counter_x.py")
    pid = int(ok(home, "run", "-d", target, "30").split()[-1])
    kernel.wait_for(lambda c: len(lines(home)) >= 5)
    ok(home, "checkpoint", "mid")
    then = [int(x) for x in ok(home, "at", "mid", "fs", "cat", "/shared/count").split()]
    out = tmp_path / "mid.agentos"
    got = json.loads(ok(home, "export", "mid", str(out), "--json"))
    assert got["counts"]["agents"] == 1 and out.is_file()
    text = ok(home, "export", "mid", str(out), "--force").decode()
    assert "mid" in text and "sha256" in text
    new = tmp_path / "h2"
    done = ok(new, "import", str(out)).decode()
    assert "imported checkpoint mid" in done and "agentos boot" in done
    again = subprocess.run(
        [sys.executable, "-m", "agentos", "import", "--home", str(new), str(out)],
        capture_output=True,
        check=False,
    )
    assert again.returncode == 1 and b"new or empty home" in again.stderr
    k2 = KernelProcess(new).boot()
    try:
        assert [int(x) for x in ok(new, "at", "mid", "fs", "cat", "/shared/count").split()] == then
        ok(new, "wait", str(pid))
        assert lines(new) == list(range(1, 31)), "resumed at the checkpoint in the new home: each line once"
        report = json.loads(ok(new, "verify", "--json"))
        assert report["ok"], report
    finally:
        k2.kill9()


def test_fuzzed_export_and_gc_args_answer_typed_errors_and_write_only_where_asked(tmp_path: Path) -> None:
    """Untrusted arguments: whatever arrives, a typed error or a file under the directory named."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    names = st.one_of(st.sampled_from(["cp", "nope", ""]), st.text(max_size=80))
    paths = st.one_of(
        st.builds(lambda s: str(scratch / s), st.text("abc./-", min_size=1, max_size=12)),
        st.sampled_from(["relative", "", str(scratch), "/nonexistent-dir/x"]),
        st.integers(),
    )
    export_args = st.fixed_dictionaries({"name": names, "path": paths}, optional={"force": st.booleans()})
    gc_args = st.fixed_dictionaries(
        {"keep_since": st.one_of(st.text(max_size=70), st.sampled_from(["1", "now", "1h", "9999999", "cp"]))},
        optional={"dry_run": st.booleans(), "extra": st.integers()},
    )
    outcomes: list[str] = []

    async def body(r: KernelRig) -> None:
        r(r.person, "checkpoint", name="cp")

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.one_of(st.tuples(st.just("export"), export_args), st.tuples(st.just("gc"), gc_args)))
        def one(call: tuple[str, dict[str, Any]]) -> None:
            name, args = call
            try:
                out = r.k.call(r.person, name, {**args, "dry_run": True} if name == "gc" else args)
            except AgentOSError as err:
                assert err.category != "internal", err
                outcomes.append(err.code)
                return
            outcomes.append("parked" if not hasattr(out, "result") or out.result is None else "ok")

        one()
        await asyncio.sleep(0.5)  # parked workers finish writing
        for path in Path("/").glob("nonexistent-dir*"):
            raise AssertionError(f"wrote outside the scratch directory: {path}")
        assert all(p.is_relative_to(scratch) for p in scratch.rglob("*"))

    run_rig(KernelRig(tmp_path / "k"), body)
    assert outcomes and any(code in ("EINVAL", "ENOENT", "EEXIST") for code in outcomes), outcomes
