"""Resource groups and quotas on a real kernel process, with agents running at once.

Each test starts a parent agent in a group of its own (``spawn(limits=...)``) whose children race
for the group's budget; whatever the interleaving, the group never goes past its limit, the
losers get a typed quota error naming the limit, the usage and the group, and what was used is
in the ledger (``agentos groups``) — where a rewind cannot refund it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from agentos.testing.kernelproc import KernelProcess

AgentFile = Callable[..., str]

WRITER = '''
"""Writes 1000-byte console lines until the group's console quota stops it."""
from agentos import sdk
from agentos.errors import QuotaExceeded


async def main(*argv):
    n = 0
    try:
        while True:
            await sdk.write_console("x" * 999 + "\\n")
            n += 1
            await sdk.sched_yield()
    except QuotaExceeded as err:
        return 0 if err.code == "EDQUOT" and "console_bytes" in err.message else 2
'''

SPAWNER = '''
"""Spawns children (each exits at once) until the group's spawn quota stops it; prints its count."""
from agentos import sdk
from agentos.errors import QuotaExceeded


async def main(child):
    n = 0
    try:
        while True:
            await sdk.spawn(child)
            n += 1
            await sdk.sched_yield()
    except QuotaExceeded as err:
        print(json.dumps({"spawned": n, "error": err.message, "code": err.code}))
    return 0

import json
'''

PARENT = '''
"""Starts one child in a new group of its own with LIMITS (JSON); exits with the child's status."""
import json

from agentos import sdk


async def main(worker, limits, *worker_argv):
    pid = await sdk.spawn(worker, *worker_argv, limits=json.loads(limits))
    return (await sdk.wait(pid))["status"]
'''

RACE = '''
"""A group leader: spawns WORKERS racers in its own group, waits for every one; exit 0 if all did.
(It prints nothing: its group's console may be used up by then.)"""
from agentos import sdk


async def main(worker, workers, *worker_argv):
    pids = [await sdk.spawn(worker, *worker_argv) for _ in range(int(workers))]
    statuses = [(await sdk.wait(pid))["status"] for pid in pids]
    return 0 if set(statuses) == {0} else 1
'''


def _group(k: KernelProcess, name: str) -> dict:
    return next(g for g in k.call("groups") if g["name"] == name)


def _logs(k: KernelProcess, pid: int) -> str:
    return "".join(item["data"] for item in k.call("logs", pid=pid))


def test_concurrent_writers_never_exceed_their_groups_console_quota(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    writer, race = agent_file(WRITER, "writer.py"), agent_file(RACE, "race.py")
    limit = 50_000
    leader = kernel.call("spawn", target=race, argv=[writer, "4"], limits={"console_bytes": limit})
    # every racer was stopped by the quota, with the right error (else the leader exits 1)
    assert kernel.call("wait", pid=leader, timeout=60)["status"] == 0
    group = _group(kernel, f"/agent-{leader}")  # the person's spawn made the leader a group of its own
    # the leader's limits made the group; its children share it; its usage is the sum of all of theirs
    assert group["limits"] == {**group["limits"], "console_bytes": float(limit)}
    used = group["usage"]["console_bytes"]
    assert limit - 1000 < used <= limit  # full to within one line, never past it


def test_concurrent_spawners_get_exactly_the_groups_spawn_budget(
    kernel: KernelProcess, agent_file: AgentFile
) -> None:
    child = agent_file("async def main(*argv):\n    return 0\n", "child.py")
    spawner, race = agent_file(SPAWNER, "spawner.py"), agent_file(RACE, "race.py")
    budget = 25
    leader = kernel.call("spawn", target=race, argv=[spawner, "3", child], limits={"spawns": budget})
    assert kernel.call("wait", pid=leader, timeout=60)["status"] == 0
    group = f"/agent-{leader}"
    racers = [p["pid"] for p in kernel.call("ps", all=True) if p["ppid"] == leader and p["name"] == "spawner"]
    lines = [
        json.loads(line) for pid in racers for line in _logs(kernel, pid).splitlines() if line.startswith("{")
    ]
    counts = [line["spawned"] for line in lines if "spawned" in line]
    assert len(counts) == 3
    # the leader itself and its 3 racers count; the racers share what is left, never more
    assert sum(counts) == budget - 1 - 3
    errors = [line for line in lines if "error" in line]
    assert all(e["code"] == "EDQUOT" and f"spawns limit of group {group}" in e["error"] for e in errors)
    assert all(f"{budget} used of {budget}" in e["error"] for e in errors)
    assert _group(kernel, group)["usage"]["spawns"] == budget


def test_a_subgroup_is_bound_by_its_ancestors_limits_and_usage_survives_a_kill9(
    kernel: KernelProcess, agent_file: AgentFile, home: Path
) -> None:
    writer, race = agent_file(WRITER, "writer.py"), agent_file(RACE, "race.py")
    parent = agent_file(PARENT, "parent.py")
    # the outer group allows 20 kB; the inner one claims 1 MB but its parent's limit holds
    argv = [race, json.dumps({"console_bytes": 1e6}), writer, "2"]
    outer = kernel.call("spawn", target=parent, argv=argv, limits={"console_bytes": 20_000})
    assert kernel.call("wait", pid=outer, timeout=60)["status"] == 0
    groups = {g["name"]: g for g in kernel.call("groups")}
    inner = next(name for name in groups if name.startswith(f"/agent-{outer}/"))
    assert groups[inner]["limits"]["console_bytes"] == 1e6
    assert groups[f"/agent-{outer}"]["usage"]["console_bytes"] <= 20_000
    used = groups[inner]["usage"]["console_bytes"]
    assert 0 < used <= 20_000

    kernel.kill9()
    kernel.boot()
    after = {g["name"]: g for g in kernel.call("groups")}
    assert after[inner]["usage"]["console_bytes"] == used  # the ledger's figures, rebuilt from the log


def test_quota_errors_and_bad_limits_are_typed(kernel: KernelProcess, agent_file: AgentFile) -> None:
    from agentos.errors import InvalidArgument, NotFound

    child = agent_file("async def main(*argv):\n    return 0\n", "child.py")
    for bad in ({"no_such_limit": 1}, {"spawns": -1}):
        try:
            kernel.call("spawn", target=child, limits=bad)
        except InvalidArgument as err:
            assert "limit" in err.message
        else:
            raise AssertionError(f"{bad} was accepted")
    try:
        kernel.call("group_limit", group="/nope", limits={"spawns": 1})
    except NotFound as err:
        assert "/nope" in err.message
    else:
        raise AssertionError("an unknown group was accepted")
    pid = kernel.call("spawn", target=child)
    kernel.call("wait", pid=pid, timeout=30)
    out = kernel.call("group_limit", group=f"/agent-{pid}", limits={"spawns": 5, "live_processes": -1})
    assert out["limits"]["spawns"] == 5 and "live_processes" not in out["limits"]
