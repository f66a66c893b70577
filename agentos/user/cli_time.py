"""``agentos rewind|switch|branches|checkpoint|checkpoints|restore``: moving the kernel in time.

Clients of the admin calls in ``kernel/systime.py``. A rewind continues the live kernel from a
POINT on a new branch; the future it leaves stays readable (``agentos branches``, ``agentos events
--branch B``) and ``agentos switch B`` goes back to it. The ledger (revocations, spend, CPU,
identifiers) is never rewound.
"""

from __future__ import annotations

import json
from typing import Any

import click

from agentos.user import format as fmt
from agentos.user.options import connect, home_option, json_option


def _moved(got: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        click.echo(json.dumps(got))
        return
    agents = ", ".join(map(str, got["agents"])) or "none"
    click.echo(f"{what}; left branch {got['from_branch']} at seq {got['from_seq']} (still readable)")
    click.echo(f"SDK agents resumed by replay: {agents}")


@click.command()
@home_option
@json_option
@click.argument("point")
@click.option("--name", default="", help="a name for the new branch")
def rewind(home: str | None, as_json: bool, point: str, name: str) -> None:
    """Continue the kernel from POINT (a seq, a time, a checkpoint, BRANCH:SEQ) on a new branch."""
    with connect(home) as c:
        got = c.call("rewind", point=point, name=name)
    _moved(got, as_json, f"rewound to seq {got['fork_seq']}: now on branch {got['branch']} ({got['name']})")


@click.command()
@home_option
@json_option
@click.argument("branch", type=int)
def switch(home: str | None, as_json: bool, branch: int) -> None:
    """Continue the kernel at the head of BRANCH (see agentos branches)."""
    with connect(home) as c:
        got = c.call("switch", branch=branch)
    _moved(got, as_json, f"switched to branch {got['branch']} at its head, seq {got['head']}")


@click.command()
@home_option
@json_option
def branches(home: str | None, as_json: bool) -> None:
    """Every branch: where it forked, its own events, and the one the kernel is on (*)."""
    with connect(home) as c:
        rows = c.call("branches")
    if as_json:
        click.echo(json.dumps(rows))
        return
    lines = [
        [
            ("* " if r["current"] else "  ") + str(r["branch"]),
            r["name"],
            "" if r["parent"] is None else f"{r['parent']}@{r['fork_seq']}",
            str(r["events"]),
            str(r["head"] or ""),
            r["why"],
        ]
        for r in rows
    ]
    click.echo(fmt.table(lines, ["BRANCH", "NAME", "FORKED FROM", "EVENTS", "HEAD", "WHY"]))


@click.command()
@home_option
@json_option
@click.argument("name")
@click.option("--at", "point", default="now", help="the point to name (default: now)")
@click.option("--rm", "remove", is_flag=True, help="drop the checkpoint NAME")
def checkpoint(home: str | None, as_json: bool, name: str, point: str, remove: bool) -> None:
    """Name the kernel's state now (or --at POINT) as checkpoint NAME, for restore, at, diff."""
    with connect(home) as c:
        got = c.call("checkpoint_rm", name=name) if remove else c.call("checkpoint", name=name, point=point)
    if as_json:
        click.echo(json.dumps(got))
    elif remove:
        click.echo(f"checkpoint {name} dropped")
    else:
        click.echo(f"checkpoint {name}: branch {got['branch']}, seq {got['seq']}")


@click.command()
@home_option
@json_option
def checkpoints(home: str | None, as_json: bool) -> None:
    """The named checkpoints."""
    with connect(home) as c:
        rows = c.call("checkpoints")
    if as_json:
        click.echo(json.dumps(rows))
        return
    lines = [[r["name"], str(r["branch"]), str(r["seq"]), fmt.when(r["made_ts"]), str(r["by"])] for r in rows]
    click.echo(fmt.table(lines, ["NAME", "BRANCH", "SEQ", "MADE", "BY"]))


@click.command()
@home_option
@json_option
@click.argument("name")
def restore(home: str | None, as_json: bool, name: str) -> None:
    """Continue the kernel from checkpoint NAME, on a new branch (the checkpoint's stays as it was)."""
    with connect(home) as c:
        got = c.call("restore", name=name)
    _moved(got, as_json, f"restored {name} (seq {got['fork_seq']}): now on branch {got['branch']}")


COMMANDS = [rewind, switch, branches, checkpoint, checkpoints, restore]
