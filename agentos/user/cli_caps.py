"""``agentos caps``, ``audit``, ``approvals``, ``approve``, ``deny`` and ``revoke``: capabilities
seen and decided by the person at the terminal, through the kernel's admin syscalls."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from agentos.caps.policy import parse_duration
from agentos.user import format as fmt
from agentos.user.options import connect, home_option, json_option


def _expiry(ts_ns: int | None) -> str:
    if ts_ns is None:
        return "never"
    left = (ts_ns - time.time_ns()) / 1e9
    return f"{fmt.when(ts_ns)} ({'in ' + _span(left) if left > 0 else 'past'})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _cap_line(c: dict[str, Any]) -> str:
    rights = ",".join(c["rights"])
    uses = "" if c.get("uses_left") is None else f" uses_left={c['uses_left']}"
    return (
        f"cap {c['cap']}: {c['resource']} [{rights}] origin={c['origin']} by={c['by']} depth={c['depth']}"
        f" expires={_expiry(c['expires_ns'])}{uses} status={c['status']}"
    )


@click.command()
@home_option
@json_option
@click.argument("pid", type=int)
def caps(home: str | None, as_json: bool, pid: int) -> None:
    """Show what process PID holds and where each capability came from (its derivation chain)."""
    with connect(home) as c:
        rows = c.call("caps", pid=pid)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"process {pid} holds no capabilities (what it held and when: agentos audit --pid {pid})")
    for row in rows:
        click.echo(_cap_line(row))
        for i, a in enumerate(row["chain"]):
            revoked = " REVOKED" if a.get("revoked") else ""
            rights = ",".join(a.get("rights") or [])
            click.echo(
                f"  {'└' if i == len(row['chain']) - 1 else '├'}─ from cap {a['cap']}: {a.get('resource', '?')}"
                f" [{rights}] held by {a.get('holder', '?')} ({a.get('origin')}){revoked}"
            )


def _audit_line(e: dict[str, Any]) -> str:
    p = e["payload"]
    kind = e["kind"]
    what = {
        "cap.granted": lambda: (
            f"grant cap {p['cap']} {p['resource']} [{','.join(p['rights'])}] to {p['holder']}"
            f" ({p['origin']}, from {p.get('parent')})"
        ),
        "cap.transferred": lambda: f"transfer cap {p['cap']} {p['sender']} -> {p['to']}",
        "cap.revoked": lambda: (
            f"revoke cap {p['cap']} by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        ),
        "cap.expired": lambda: f"expired cap {p['cap']}",
        "approval.requested": lambda: (
            f"request #{p['id']} by {p['pid']}: {p['resource']} [{','.join(p['rights'])}]"
            + (f" — {p['reason']}" if p.get("reason") else "")
        ),
        "approval.decided": lambda: (
            f"request #{p['id']} {p['outcome']} by {p['by']}"
            + (f" -> cap {p['cap']}" if p.get("cap") else "")
        ),
        "audit.denied": lambda: (
            f"DENIED {p['call']} by {p['pid']}: needs {p['right']!r} on {p.get('resource', '?')}"
        ),
    }.get(kind, lambda: json.dumps(p))()
    return f"{e['seq']:>8}  {fmt.when(e['ts'])}  {what}"


@click.command()
@home_option
@json_option
@click.option("--pid", type=int, default=None, help="only decisions concerning this process")
@click.option("--denied", is_flag=True, help="only denials")
@click.option("--limit", type=int, default=1000, show_default=True)
def audit(home: str | None, as_json: bool, pid: int | None, denied: bool, limit: int) -> None:
    """List capability decisions: grants, delegations, transfers, revocations, expiries, approvals, denials."""
    args: dict[str, Any] = {"denied": denied, "limit": limit}
    if pid is not None:
        args["pid"] = pid
    with connect(home) as c:
        rows = c.call("audit", **args)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(_audit_line(row))


@click.command()
@home_option
@json_option
@click.option("--all", "-a", "show_all", is_flag=True, help="include answered requests")
def approvals(home: str | None, as_json: bool, show_all: bool) -> None:
    """List requests for capabilities waiting for a person (approve ID / deny ID)."""
    with connect(home) as c:
        rows = c.call("approvals", all=show_all)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no requests waiting" if not show_all else "no requests")
        return
    table = [
        [
            str(r["id"]),
            str(r["pid"]),
            r["resource"],
            ",".join(r["rights"]),
            r["outcome"],
            fmt.when(r["requested_ts"]),
            r["reason"],
        ]
        for r in rows
    ]
    click.echo(fmt.table(table, ["ID", "PID", "RESOURCE", "RIGHTS", "STATE", "ASKED", "REASON"]))


@click.command()
@home_option
@click.option(
    "--for", "duration", default=None, metavar="DURATION", help="how long the grant lasts (default 1h)"
)
@click.argument("request_id", metavar="ID", type=int)
def approve(home: str | None, duration: str | None, request_id: int) -> None:
    """Approve request ID: the agent gets the capability it asked for, for a limited time."""
    args: dict[str, Any] = {"id": request_id}
    if duration is not None:
        args["duration"] = parse_duration(duration)
    with connect(home) as c:
        out = c.call("approve", **args)
    click.echo(
        f"approved request {request_id}: process {out['pid']} holds cap {out['cap']} until {_expiry(out['expires_ns'])}"
    )


@click.command()
@home_option
@click.option("--reason", default="", help="told to the agent")
@click.argument("request_id", metavar="ID", type=int)
def deny(home: str | None, reason: str, request_id: int) -> None:
    """Deny request ID: the waiting agent gets a denied error."""
    with connect(home) as c:
        c.call("deny", id=request_id, reason=reason)
    click.echo(f"denied request {request_id}")


@click.command()
@home_option
@click.option("--reason", default="", help="recorded in the audit trail")
@click.argument("cap", type=int)
def revoke(home: str | None, reason: str, cap: int) -> None:
    """Revoke capability CAP and everything derived from it, before its holders' next call."""
    with connect(home) as c:
        out = c.call("cap_revoke", cap=cap, reason=reason)
    click.echo(f"capability {cap} {'was already revoked' if out['already'] else 'revoked'}")


COMMANDS = (caps, audit, approvals, approve, deny, revoke)
