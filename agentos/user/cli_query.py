"""``agentos query "SQL" [--at POINT]`` and ``agentos bisect --good A --bad B --sql "SELECT ..."``.

Clients of the admin calls ``query`` and ``bisect`` (``kernel/query.py``, ``kernel/bisect.py``): SQL
over the log's views (events, processes, syscalls, files, file_versions, capabilities, quota_usage,
audit), read-only and bounded; an answer prints as an aligned table, ``--json`` or ``--csv``.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import click

from agentos import param
from agentos.user import format as fmt
from agentos.user.options import connect, home_option

WIDEST = 60  # characters of one cell in the table form (--json and --csv keep every byte)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        value = value.hex()
    if isinstance(value, float):  # 3.0 as 3, 0.01234567 as 0.0123457
        value = int(value) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= WIDEST else text[: WIDEST - 3] + "..."


def _plain(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


@click.command()
@home_option
@click.argument("sql")
@click.option("--at", "point", default=None, metavar="POINT", help="as of a seq, a time (ISO 8601, @unix)")
@click.option("--json", "as_json", is_flag=True, help="rows as JSON objects")
@click.option("--csv", "as_csv", is_flag=True, help="rows as CSV, a header first")
@click.option("--limit", default=param.QUERY_ROWS, show_default=True, help="rows at most")
@click.option("--timeout", default=param.QUERY_SECONDS, show_default=True, help="seconds the query may run")
def query(
    home: str | None, sql: str, point: str | None, as_json: bool, as_csv: bool, limit: int, timeout: float
) -> None:
    """Run read-only SQL over the log's views: events, processes, syscalls, files, file_versions,
    capabilities, quota_usage, audit (docs/timetravel.md says what each holds)."""
    args: dict[str, Any] = {"sql": sql, "limit": limit, "timeout": timeout}
    if point is not None:
        args["at"] = point
    with connect(home) as c:
        got = c.call("query", **args)
    columns, rows = got["columns"], got["rows"]
    if as_json:
        out = [dict(zip(columns, map(_plain, row), strict=True)) for row in rows]
        click.echo(json.dumps(out, indent=2))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([list(map(_plain, row)) for row in rows])
    else:
        if columns:
            click.echo(fmt.table([[_cell(v) for v in row] for row in rows], columns))
        tail = f"({len(rows)} row{'' if len(rows) == 1 else 's'}, as of seq {got['seq']}, {got['ms']:.0f} ms"
        click.echo(tail + (f"; truncated at {len(rows)}: --limit" if got["truncated"] else "") + ")")
    if got["truncated"] and (as_json or as_csv):
        click.echo(f"agentos: truncated at {len(rows)} rows (--limit)", err=True)


@click.command()
@home_option
@click.option(
    "--good", default="0", show_default=True, metavar="POINT", help="a point where SQL returns no row"
)
@click.option("--bad", default=None, metavar="POINT", help="a point where it returns a row (default: now)")
@click.option("--sql", required=True, help="a query that returns a row when the state is bad")
@click.option("--timeout", default=param.QUERY_SECONDS, show_default=True, help="seconds per probe")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def bisect(home: str | None, good: str, bad: str | None, sql: str, timeout: float, as_json: bool) -> None:
    """Find the first event at which SQL began to return a row, halving the range between a good
    and a bad point (each probe a query as of one seq)."""
    args: dict[str, Any] = {"sql": sql, "good": good, "timeout": timeout}
    if bad is not None:
        args["bad"] = bad
    with connect(home) as c:
        got = c.call("bisect", **args)
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    for i, p in enumerate(got["probes"], 1):
        click.echo(f"probe {i:>2}: seq {p['seq']:>8}  {'bad ' if p['bad'] else 'good'}  ({p['ms']:.0f} ms)")
    n = len(got["probes"])
    click.echo(
        f"first bad event: seq {got['first_bad']} ({n} probe{'' if n == 1 else 's'} over {got['good']}..{got['bad']})"
    )
    if got.get("event"):
        click.echo(fmt.event_line(got["event"]))


COMMANDS = [query, bisect]
