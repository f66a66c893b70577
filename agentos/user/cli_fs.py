"""``agentos fs``: the kernel's file system from the shell (ls, cat, put, mkdir, rm, stat, watch,
ln, readlink, chmod, truncate).

A client of the file syscalls only (``open``/``read``/``write``/``close`` ...), over one session:
what it writes is versioned and journaled like an agent's writes. A person's session holds root,
so every path is reachable here.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from agentos import param
from agentos.errors import AgentOSError
from agentos.user import format as fmt
from agentos.user.options import Group, connect, home_option, json_option

CHUNK = param.MAX_ARG_BYTES // 2  # bytes per read or write call (well under a frame)


@click.group(cls=Group)
def fs() -> None:
    """Work with the kernel's file system (absolute paths: /shared/notes.txt; /tmp is each command's own)."""


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S") if ns else "-"


def _row(name: str, st: dict[str, Any]) -> list[str]:
    kind = {"dir": "d", "chardev": "c", "symlink": "l"}.get(st["kind"], "-")
    return [f"{kind}{st['mode']:04o}", str(st["size"]), _when(st["mtime_ns"]), name]


@fs.command(name="ls")
@home_option
@json_option
@click.argument("path", default="/")
def ls(home: str | None, as_json: bool, path: str) -> None:
    """List a directory (or show one file): mode, size, modified time, name."""
    with connect(home) as c:
        st = c.call("stat", path=path)
        if st["kind"] != "dir":
            rows = {path: st}
        else:
            base = path.rstrip("/")
            rows = {name: c.call("stat", path=f"{base}/{name}") for name in c.call("readdir", path=path)}
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if rows:
        click.echo(fmt.table([_row(n, s) for n, s in rows.items()], ["MODE", "SIZE", "MODIFIED", "NAME"]))


@fs.command()
@home_option
@click.argument("path")
def cat(home: str | None, path: str) -> None:
    """Write a file's current content (its last version and any pending writes) to stdout;
    ``PATH@SEQ``: its content as of event SEQ (``agentos fs history PATH`` lists them)."""
    from agentos.user.cli_versions import cat_version  # it adds commands to this group

    out = click.get_binary_stream("stdout")
    with connect(home) as c:
        cat_version(c, path, out)
    out.flush()


@fs.command()
@home_option
@click.argument("source", type=click.File("rb"))
@click.argument("path")
def put(home: str | None, source: Any, path: str) -> None:
    """Copy local file SOURCE (``-``: stdin) to PATH, replacing its content (one new version)."""
    total = 0
    with connect(home) as c:
        fd = c.call("open", path=path, flags=["write", "create", "truncate"])
        try:
            while data := source.read(CHUNK):
                total += c.call("write", fd=fd, data=data)
        finally:
            c.call("close", fd=fd)
    click.echo(f"{path}: {total} bytes")


@fs.command()
@home_option
@click.option("-p", "--parents", is_flag=True, help="Make missing parents too; no error if it exists.")
@click.argument("path")
def mkdir(home: str | None, parents: bool, path: str) -> None:
    """Make a directory."""
    with connect(home) as c:
        if not parents:
            c.call("mkdir", path=path)
            return
        walked = ""
        for part in [p for p in path.split("/") if p]:
            walked += "/" + part
            try:
                c.call("mkdir", path=walked)
            except AgentOSError as err:  # an existing directory on the way is fine
                if err.code != "EEXIST" or c.call("stat", path=walked)["kind"] != "dir":
                    raise


@fs.command()
@home_option
@click.option("-d", "--dir", "is_dir", is_flag=True, help="Remove an empty directory (rmdir).")
@click.argument("path")
def rm(home: str | None, is_dir: bool, path: str) -> None:
    """Remove a file (``-d``: an empty directory)."""
    with connect(home) as c:
        c.call("rmdir" if is_dir else "unlink", path=path)


@fs.command()
@home_option
@json_option
@click.argument("path")
def stat(home: str | None, as_json: bool, path: str) -> None:
    """Show a file's inode: number, kind, size, mode, links, modified time, last version's seq."""
    with connect(home) as c:
        st = c.call("stat", path=path)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    for key in ("ino", "kind", "size", "nlink", "version_seq"):
        click.echo(f"{key + ':':<13}{st[key]}")
    click.echo(f"{'mode:':<13}{st['mode']:04o}")
    click.echo(f"{'mtime:':<13}{_when(st['mtime_ns'])}")


@fs.command()
@home_option
@click.option("-s", "--symbolic", is_flag=True, help="A symlink whose content is TARGET (any text).")
@click.argument("target")
@click.argument("path")
def ln(home: str | None, symbolic: bool, target: str, path: str) -> None:
    """Make PATH a second name (a hard link) for the file TARGET; ``-s``: a symlink to TARGET."""
    with connect(home) as c:
        if symbolic:
            c.call("symlink", target=target, path=path)
        else:
            c.call("link", src=target, dst=path)


@fs.command()
@home_option
@click.argument("path")
def readlink(home: str | None, path: str) -> None:
    """Print what the symlink PATH says (its target, unresolved)."""
    with connect(home) as c:
        click.echo(c.call("readlink", path=path))


def _octal(ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal mode (e.g. 644)") from None


@fs.command()
@home_option
@click.argument("mode", callback=_octal)
@click.argument("path")
def chmod(home: str | None, mode: int, path: str) -> None:
    """Set PATH's mode bits (octal: 644, 0600); a symlink's target's."""
    with connect(home) as c:
        c.call("chmod", path=path, mode=mode)


@fs.command()
@home_option
@click.argument("path")
@click.argument("size", type=click.IntRange(min=0))
def truncate(home: str | None, path: str, size: int) -> None:
    """Set the file's size to SIZE bytes (growing it reads as zeros): a new version at once."""
    with connect(home) as c:
        c.call("truncate", path=path, size=size)


def _change(ch: dict[str, Any]) -> str:
    moved = f" (from {ch['from'] or '?'})" if ch["op"] == "renamed" else ""
    return f"{ch['seq']:>8} {ch['op']:<9} {ch['path'] or '?'}{moved}  [{ch['kind']}, pid {ch['pid']}]"


@fs.command()
@home_option
@json_option
@click.option("-r", "--recursive", is_flag=True, help="Everything below PATH too.")
@click.option("-n", "--count", type=int, default=0, help="Stop after this many changes (0: never).")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds with no change.")
@click.option("--since", type=int, default=None, help="Start after this event seq (default: now).")
@click.argument("path")
def watch(
    home: str | None,
    as_json: bool,
    recursive: bool,
    count: int,
    timeout: float | None,
    since: int | None,
    path: str,
) -> None:
    """Print the changes at PATH as they land (a directory: its entries; ``-r``: everything below)."""
    args: dict[str, Any] = {"path": path, "recursive": recursive}
    if timeout is not None:
        args["timeout"] = timeout
    if since is not None:
        args["since"] = since
    seen = 0
    with connect(home) as c:
        while True:
            got = c.call("watch", **args)
            if got["lost"]:
                click.echo("agentos: changes were missed (the kernel restarted?): rescan", err=True)
            for ch in got["changes"]:
                click.echo(json.dumps(ch) if as_json else _change(ch))
                seen += 1
                if count and seen >= count:
                    return
            if timeout is not None and not got["changes"] and not got["lost"]:
                return
            args["since"] = got["next"]
