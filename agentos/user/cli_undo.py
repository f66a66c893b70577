"""``agentos undo [N]``, ``agentos undo --pid P --last N``, ``agentos undo --list`` and ``agentos redo``:
the kernel's operations undone and redone from the shell (clients of ``undo``, ``redo``,
``undo_list``: ``kernel/sysundo.py``). The ``undo`` command itself lives in ``cli_versions.py``
(``--pid P`` alone keeps meaning "every file change of P", ``fs_undo``) and calls in here.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import click

from agentos.user import format as fmt
from agentos.user.options import connect, home_option, json_option


def _effect(e: dict[str, Any]) -> str:
    """One inverse, in words."""
    if "cap" in e:
        was = f" (a new id for cap {e['was']})" if "was" in e else ""
        return f"{e['action']} cap {e['cap']}{was}: {e['resource']} [{','.join(e['rights'])}] of pid {e['holder']}"
    if "group" in e:
        return f"limits of group {e['group']} set back to {e['limits']}"
    moved = f" (from {e['from']})" if "from" in e else ""
    return f"{e['action']} {e.get('path', '?')}{moved}"


def _op(row: dict[str, Any]) -> str:
    who = f"pid {row['pid']} ({row['process'] or '?'})"
    return f"op {row['op']}  {who}  {row['call']}  at seq {row['seq']}"


def report(got: dict[str, Any], verb: str, dry_run: bool) -> None:
    """The text form of an undo's or a redo's answer."""
    key = f"{verb}ne"  # undone, redone
    say = f"would {verb}" if dry_run else key
    for row in got[key]:
        click.echo(f"{say}: {_op(row)}")
        for line in row["what"]:
            click.echo(f"    was: {line}")
        if "undid" in row:
            click.echo(f"    the undo of: {', '.join(row['undid']) or 'nothing'}")
        for e in row["effects"]:
            click.echo(f"    ->   {_effect(e)}")
        for reason in row.get("reasons", []):
            click.echo(f"    left: {reason}")
    for row in got["skipped"]:
        click.echo(f"skipped: {_op(row)}")
        for line in row["what"]:
            click.echo(f"    was: {line}")
        for reason in row["reasons"]:
            click.echo(f"    why: {reason}")
    for r in got["conflicts"]:
        who = (
            f" — pid {r['pid']} ({r['process'] or '?'}) at seq {r['seq']}" if r.get("pid") is not None else ""
        )
        click.echo(f"conflict: {r['path']}: {r['reason']}{who}; left as it is")
    for r in got["denied"]:
        click.echo(f"denied:   {r['path']}: {r['reason']}")
    if not (got[key] or got["skipped"]):
        click.echo(f"nothing to {verb}")


def run(home: str | None, call: str, n: int, pid: int | None, dry_run: bool, as_json: bool) -> None:
    """``undo`` or ``redo`` of ``n``; exit status 1 if anything conflicted or was denied."""
    with connect(home) as c:
        got = c.call(call, n=n, pid=pid, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(got, indent=2))
    else:
        report(got, call, dry_run)
    if got["conflicts_count"] or got["denied_count"]:
        sys.exit(1)


def show_list(home: str | None, pid: int | None, limit: int, as_json: bool) -> None:
    """The last operations, newest first, with what became of each."""
    with connect(home) as c:
        got = c.call("undo_list", pid=pid, limit=limit)
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    rows = []
    for r in got["ops"]:
        when = datetime.datetime.fromtimestamp(r["ts"] / 1e9).strftime("%H:%M:%S")
        what = "; ".join(r["what"][:3]) + (" ..." if len(r["what"]) > 3 else "")
        rows.append([str(r["seq"]), when, str(r["pid"]), r["process"] or "-", r["call"], r["status"], what])
    click.echo(fmt.table(rows, ["SEQ", "WHEN", "PID", "NAME", "CALL", "STATUS", "WHAT"]))
    click.echo(f"(redo would re-apply {got['redo']} undo(s))" if got["redo"] else "(nothing to redo)")


@click.command()
@home_option
@json_option
@click.argument("n", type=click.IntRange(1, 1000), default=1, required=False)
@click.option("--pid", type=int, default=None, help="Redo only the undos of this process's operations.")
@click.option("--dry-run", is_flag=True, help="Say what would be re-applied; change nothing.")
def redo(home: str | None, as_json: bool, n: int, pid: int | None, dry_run: bool) -> None:
    """Re-apply the last N undos (default 1), newest first, as new events. Any operation made after
    an undo (by anyone; with --pid, by that process) clears what can be redone, as in an editor.
    Exit status 1 if anything conflicted or was denied."""
    run(home, "redo", n, pid, dry_run, as_json)


COMMANDS = [redo]
