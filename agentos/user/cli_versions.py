"""``agentos fs history|diff|restore|get`` and ``agentos undo``: a file's past from the shell.

Clients of ``fs_history``, ``fs_read_version``, ``fs_restore`` and ``fs_undo`` (``docs/vfs.md``),
attached to the ``fs`` group of ``cli_fs.py``; ``fs cat PATH@SEQ`` goes through :func:`cat_version`.
``PATH@SEQ`` is a file as of event ``SEQ`` (the last version cut at or before it): a path whose
text ends in ``@`` and digits is read so; any other ``@`` is part of the path.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any, BinaryIO

import click

from agentos.errors import AgentOSError
from agentos.sdk.client import Client
from agentos.textdiff import unified
from agentos.user import format as fmt
from agentos.user.cli_fs import CHUNK, _when, fs
from agentos.user.cli_undo import run as run_ops
from agentos.user.cli_undo import show_list
from agentos.user.options import connect, fail, home_option, json_option

_AT = re.compile(r"(?s)(.+)@(\d{1,18})")


def split_at(spec: str) -> tuple[str, int | None]:
    """``PATH@SEQ`` -> (PATH, SEQ); any other text -> (it, None)."""
    m = _AT.fullmatch(spec)
    return (m.group(1), int(m.group(2))) if m else (spec, None)


def _chunks(c: Client, path: str, seq: int | None) -> Any:
    """The bytes of ``path`` (as of ``seq`` when given), a piece at a time."""
    if seq is not None:
        offset = 0
        while True:
            got = c.call("fs_read_version", path=path, seq=seq, offset=offset, n=CHUNK)
            if got["data"]:
                yield got["data"]
            offset += len(got["data"])
            if not got["data"] or offset >= got["size"]:
                return
    fd = c.call("open", path=path, flags=["read"])
    try:
        while data := c.call("read", fd=fd, n=CHUNK):
            yield data
    finally:
        c.call("close", fd=fd)


def cat_version(c: Client, spec: str, out: BinaryIO) -> None:
    """Write ``spec`` (``PATH`` or ``PATH@SEQ``) to ``out``."""
    path, seq = split_at(spec)
    for data in _chunks(c, path, seq):
        out.write(data)


@fs.command()
@home_option
@json_option
@click.argument("path")
def history(home: str | None, as_json: bool, path: str) -> None:
    """List a file's versions (and renames), oldest first, with who made each."""
    rows: list[dict[str, Any]] = []
    with connect(home) as c:
        since = 0
        while True:
            got = c.call("fs_history", path=path, since=since)
            rows += got["versions"]
            if not got["more"] or not got["versions"]:
                break
            since = got["versions"][-1]["seq"]
    if as_json:
        click.echo(json.dumps({"ino": got["ino"], "exists": got["exists"], "versions": rows}, indent=2))
        return
    table = [
        [
            str(r["seq"]),
            _when(r["ts"]),
            r.get("cut") or r["op"],
            str(r["size"]),
            str(r["pid"]),
            r["process"] or "-",
            r["syscall"] or r["correlation"] or "-",
            _what(r),
        ]
        for r in rows
    ]
    click.echo(
        fmt.table(table, ["SEQ", "WHEN", "WHAT", "SIZE", "PID", "NAME", "SYSCALL/CORRELATION", "NOTE"])
    )
    if not got["exists"]:
        click.echo(f"({path} is gone now: `agentos fs restore {path}@SEQ` brings it back)")


def _what(r: dict[str, Any]) -> str:
    if r["op"] == "rename":
        return f"{r['from']} -> {r['name']}"
    if r["op"] in ("link", "unlink"):
        return f"{r['op']} {r['name']}"
    return r.get("hash", "")[:12]


@fs.command()
@home_option
@click.argument("a")
@click.argument("b")
def diff(home: str | None, a: str, b: str) -> None:
    """Compare two files or versions (each PATH or PATH@SEQ): a unified diff for text, sizes and
    sha256 for binary. Exit status 0 same, 1 different, 2 trouble (as diff(1))."""
    try:
        with connect(home) as c:
            left, right = (b"".join(_chunks(c, *split_at(side))) for side in (a, b))
    except AgentOSError as err:
        fail(str(err), 2)
    if left == right:
        return
    lines = unified(left, right, a, b)
    if lines is None:
        click.echo(f"Binary files {a} and {b} differ")
        for side, data in ((a, left), (b, right)):
            click.echo(f"  {side}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
        sys.exit(1)
    for line in lines:
        click.echo(line, nl=False)
    sys.exit(1)


@fs.command()
@home_option
@click.option("--exact", is_flag=True, help="SEQ must be the seq a version was cut at.")
@click.argument("spec", metavar="PATH@SEQ")
def restore(home: str | None, exact: bool, spec: str) -> None:
    """Make a file's content what it was as of SEQ: a new version (history is never rewritten);
    a deleted file comes back."""
    path, seq = split_at(spec)
    if seq is None:
        raise click.UsageError("say which version: PATH@SEQ (a seq from `agentos fs history PATH`)")
    with connect(home) as c:
        got = c.call("fs_restore", path=path, seq=seq, exact=exact)
    if got["changed"]:
        click.echo(f"{path}: restored the version of seq {got['seq']} ({got['size']} bytes) as a new version")
    else:
        click.echo(f"{path}: already holds the version of seq {got['seq']}")


@fs.command()
@home_option
@click.argument("spec", metavar="VFSPATH")
@click.argument("hostfile", type=click.File("wb"))
def get(home: str | None, spec: str, hostfile: BinaryIO) -> None:
    """Copy VFSPATH (or VFSPATH@SEQ) to local file HOSTFILE (``-``: stdout)."""
    with connect(home) as c:
        cat_version(c, spec, hostfile)
    hostfile.flush()


@click.command()
@home_option
@json_option
@click.argument("n", type=click.IntRange(1, 1000), required=False)
@click.option("--pid", type=int, default=None, help="Alone: revert every file change of this process.")
@click.option("--last", type=click.IntRange(1, 1000), default=None, help="With --pid: its last N operations.")
@click.option("--tree", is_flag=True, help="With --pid: and of every process spawned below it.")
@click.option("--correlation", default=None, help="Revert the file changes of one call (a transaction).")
@click.option("--list", "listing", is_flag=True, help="List the last operations (--pid: of one process).")
@click.option("--dry-run", is_flag=True, help="Say what would be reverted; change nothing.")
def undo(
    home: str | None,
    as_json: bool,
    n: int | None,
    pid: int | None,
    last: int | None,
    tree: bool,
    correlation: str | None,
    listing: bool,
    dry_run: bool,
) -> None:
    """Undo the kernel's last N operations (default 1; an operation is one call that changed files,
    capabilities, mounts or group limits), newest first, as new events: `agentos redo` re-applies
    them. `--pid P --last N`: that process's last N operations. `--pid P` alone: revert every file
    change P made; `--correlation ID`: those of one call. A later change by someone else is a
    conflict, reported and left alone; a revocation is never undone (skipped, with the reason).
    Exit status 1 if anything conflicted or was denied."""
    if listing:
        return show_list(home, pid, n or last or 20, as_json)
    if n is not None and pid is not None:
        raise click.UsageError("with --pid, say --last N (--pid P alone reverts every file change of P)")
    if tree and pid is None:
        raise click.UsageError("--tree goes with --pid")
    if last is not None and (pid is None or tree or correlation is not None):
        raise click.UsageError("--last goes with --pid (and not with --tree or --correlation)")
    if (pid is None and correlation is None) or last is not None:
        return run_ops(home, "undo", n or last or 1, pid, dry_run, as_json)
    if pid is not None and correlation is not None:
        raise click.UsageError("say whose changes: --pid P [--tree] or --correlation ID")
    args: dict[str, Any] = {"tree": tree, "dry_run": dry_run}
    args |= {"pid": pid} if pid is not None else {"correlation": correlation}
    with connect(home) as c:
        got = c.call("fs_undo", **args)
    if as_json:
        click.echo(json.dumps(got, indent=2))
    else:
        _report(got, dry_run)
    if got["conflicts_count"] or got["denied_count"]:
        sys.exit(1)


def _report(got: dict[str, Any], dry_run: bool) -> None:
    verb = "would revert" if dry_run else "reverted"
    for r in got["reverted"]:
        moved = f" (from {r['from']})" if "from" in r else ""
        click.echo(f"{verb}: {r['action']:<9} {r['path']}{moved}")
    for r in got["conflicts"]:
        who = f" — pid {r['pid']} ({r['process'] or '?'}) at seq {r['seq']}" if r["pid"] is not None else ""
        click.echo(f"conflict: {r['path']}: {r['reason']}{who}; left as it is")
    for r in got["denied"]:
        click.echo(f"denied:   {r['path']}: {r['reason']}")
    omitted = sum(got[f"{k}_count"] - len(got[k]) for k in ("reverted", "conflicts", "denied"))
    if omitted:
        click.echo(f"... and {omitted} more (see --json)")
    if not (got["reverted_count"] or got["conflicts_count"] or got["denied_count"]):
        click.echo("nothing to revert")


COMMANDS = [undo]
