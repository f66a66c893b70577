"""``agentos run``: spawn an agent, stream its console, exit with its status.

Ctrl-C sends TERM to the agent; a second Ctrl-C detaches (the agent keeps running, adopted by
init). With ``--detach`` the pid is printed and the command returns at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agentos.errors import AgentOSError
from agentos.sdk.client import Client


def run_agent(
    home: Path,
    target: str,
    argv: list[str],
    *,
    name: str | None = None,
    detach: bool = False,
    limits: dict[str, float] | None = None,
    grants: list[dict[str, object]] | None = None,
    kind: str = "agent",
    restart: str | None = None,
    profile: str | None = None,
) -> int:
    client = Client.connect(home, "agentos-run")
    args: dict[str, object] = {"target": target, "argv": argv}
    if kind != "agent":  # a real program (spawn kind "process"): its restart policy and sandbox preset
        args |= {"kind": kind} | {k: v for k, v in (("restart", restart), ("profile", profile)) if v}
    if grants:
        args["grants"] = grants
    if name:
        args["name"] = name
    if limits:
        args["limits"] = limits
    pid = client.call("spawn", **args)
    if detach:
        click.echo(pid)
        client.close()
        return 0
    interrupts, shown = 0, 0
    while True:
        try:
            for item in client.stream("logs", pid=pid, follow=True):
                if item["seq"] <= shown:
                    continue  # already shown before a reconnect
                shown = item["seq"]
                out = sys.stderr if item["stream"] == "stderr" else sys.stdout
                out.write(item["data"])
                out.flush()
            status = client.call("wait", pid=pid)
            break
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts >= 2:
                click.echo(
                    f"\nagentos: detached; process {pid} keeps running (agentos logs {pid} -f)", err=True
                )
                return 0
            click.echo(f"\nagentos: sending TERM to {pid} (Ctrl-C again to detach)", err=True)
            client.close()
            client = _reconnect_and_term(home, pid)
    client.close()
    return int(status.get("status") or 0)


def _reconnect_and_term(home: Path, pid: int) -> Client:
    """The interrupted connection may be mid-frame: use a fresh one (the agent is adopted by init)."""
    client = Client.connect(home, "agentos-run")
    try:
        client.call("kill", pid=pid, sig="TERM")
    except AgentOSError as err:
        click.echo(f"agentos: {err}", err=True)
    return client
