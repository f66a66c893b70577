"""``agentos at POINT ps|fs ls PATH|fs cat PATH|fs stat PATH|caps PID|groups``: the kernel as it was.

A client of the ``at`` admin call (``kernel/past.py``): POINT is a sequence number, a time (ISO
8601, or ``@`` and Unix seconds) or, later, a checkpoint name. Nothing is changed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from agentos.user import format as fmt
from agentos.user.cli_fs import _row
from agentos.user.options import connect, home_option, json_option


def _at(c: Any, point: str, what: str, **args: Any) -> Any:
    got = c.call("at", point=point, what=what, args=args)
    return got["seq"], got["result"]


@click.command(context_settings={"ignore_unknown_options": True})
@home_option
@json_option
@click.argument("point")
@click.argument("command", nargs=-1, required=True)
def at(home: str | None, as_json: bool, point: str, command: tuple[str, ...]) -> None:
    """Run a read-only COMMAND against the kernel as it was at POINT: ps [-a], fs ls|cat|stat PATH,
    caps PID, groups."""
    words = list(command)
    with connect(home) as c:
        if words[0] == "ps":
            seq, rows = _at(c, point, "ps", all="-a" in words or "--all" in words)
            out = rows if as_json else f"(as of seq {seq})\n" + fmt.ps_table(rows)
        elif words[0] == "fs" and len(words) == 3 and words[1] in ("ls", "cat", "stat"):
            out = _fs(c, point, words[1], words[2], as_json)
        elif words[0] == "caps" and len(words) == 2 and words[1].isdigit():
            seq, rows = _at(c, point, "caps", pid=int(words[1]))
            out = (
                rows
                if as_json
                else "\n".join(f"{r['cap']}  {r['resource']}  [{','.join(r['rights'])}]" for r in rows)
            )
        elif words == ["groups"]:
            seq, rows = _at(c, point, "groups")
            out = rows if as_json else "\n".join(f"{g['name']}  {g['usage']}" for g in rows)
        else:
            raise click.UsageError(
                "say: ps [-a] | fs ls PATH | fs cat PATH | fs stat PATH | caps PID | groups"
            )
    if isinstance(out, bytes):
        sys.stdout.buffer.write(out)
    elif as_json or not isinstance(out, str):
        click.echo(json.dumps(out, indent=2, default=repr))
    else:
        click.echo(out)


def _fs(c: Any, point: str, what: str, path: str, as_json: bool) -> Any:
    if what == "cat":
        return _at(c, point, "cat", path=path)[1]
    seq, st = _at(c, point, "stat", path=path)
    if what == "stat":
        return st if as_json else "\n".join(f"{k}: {v}" for k, v in st.items())
    rows = {path: st}
    if st["kind"] == "dir":
        base = path.rstrip("/")
        rows = {
            n: _at(c, point, "stat", path=f"{base}/{n}")[1] for n in _at(c, point, "readdir", path=path)[1]
        }
    if as_json:
        return rows
    table = (
        fmt.table([_row(n, s) for n, s in rows.items()], ["MODE", "SIZE", "MODIFIED", "NAME"]) if rows else ""
    )
    return f"(as of seq {seq})\n{table}"


COMMANDS = [at]
