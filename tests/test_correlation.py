"""Correlation ids, the denial audit trail, event versions from the future, and Client.call on streams."""

from __future__ import annotations

import pytest

from agentos.errors import InvalidArgument, NotFound
from agentos.state import events as ev
from agentos.testing.kernelproc import KernelProcess

DENIED_AGENT = """
from agentos import sdk
from agentos.abi.traps import trap

async def main():
    try:
        await trap("status", {})
    except Exception as err:
        await sdk.write_console(f"{err.code} {err.correlation}\\n")
"""


def test_a_session_error_carries_the_correlation_of_its_request(kernel: KernelProcess) -> None:
    with kernel.client() as c:
        req = c.send("kill", pid=999_999, sig="TERM")
        msg = c._read()
    assert msg["id"] == req
    assert msg["err"]["code"] == "ESRCH"
    assert msg["err"]["correlation"] == f"s{c.pid}:{req}"


def test_events_of_one_call_share_its_correlation(kernel: KernelProcess, agent_file) -> None:
    with kernel.client() as c:
        pid = c.call("spawn", target=agent_file("async def main():\n    return 0\n"))
        spawned = [e for e in c.call("events", kind="proc.spawned") if e["payload"]["pid"] == pid]
        assert spawned and spawned[0]["correlation"].startswith(f"s{c.pid}:")


def test_a_denied_call_is_an_audit_event_and_a_typed_error_with_its_correlation(
    kernel: KernelProcess, agent_file
) -> None:
    with kernel.client() as c:
        pid = c.call("spawn", target=agent_file(DENIED_AGENT))
        c.call("wait", pid=pid)
        out = "".join(item["data"] for item in c.stream("logs", pid=pid))
        code, correlation = out.split()
        assert code == "EACCES" and correlation == f"{pid}:0:0:0"
        denied = c.call("events", kind="audit.denied", pid=pid)
        assert [e["payload"] for e in denied] == [
            {"pid": pid, "call": "status", "right": "status", "resource": "admin"}
        ]
        assert denied[0]["correlation"] == correlation


def test_client_call_on_a_streaming_call_returns_its_items(kernel: KernelProcess) -> None:
    with kernel.client() as c:
        for _ in range(20):  # whether or not the head is durable yet, call() gets the whole list
            events = c.call("events", since=0, limit=5)
            assert isinstance(events, list) and len(events) == 5
            assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
        with pytest.raises(NotFound):
            c.call("logs", pid=999_999)


def test_an_event_written_by_a_newer_agentos_is_refused_not_misread() -> None:
    text = ev.encode(ev.ProcStarted(pid=3))
    assert ev.decode("proc.started", 1, text) == ev.ProcStarted(pid=3)
    with pytest.raises(InvalidArgument, match="newer AgentOS"):
        ev.decode("proc.started", 2, text)


def test_errors_of_blocked_and_invalid_calls_carry_the_correlation_too(
    kernel: KernelProcess, agent_file
) -> None:
    with kernel.client() as c:
        pid = c.call(
            "spawn",
            target=agent_file("from agentos import sdk\nasync def main():\n    await sdk.sleep(60)\n"),
        )
        req = c.send("wait", pid=pid, timeout=0.05)  # parks, then times out
        msg = c._read()
        assert msg["err"]["code"] == "ETIMEDOUT" and msg["err"]["correlation"] == f"s{c.pid}:{req}"
        req = c.send("sleep", seconds=-1)  # refused by the argument schema
        msg = c._read()
        assert msg["err"]["code"] == "EINVAL" and msg["err"]["correlation"] == f"s{c.pid}:{req}"
        c.call("kill", pid=pid, sig="KILL")
