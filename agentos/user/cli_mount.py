"""``agentos mount HOSTDIR POINT [--ro]``, ``agentos umount POINT``, ``agentos mounts``.

Through the ``mount``/``umount``/``mounts`` syscalls (admin). ``mount`` first makes the mount
point's missing parent directories in the versioned tree (``mkdir -p``), as a person expects
``agentos mount ~/project /mnt/project`` to just work.
"""

from __future__ import annotations

import json
import os
import posixpath

import click

from agentos.errors import Conflict
from agentos.user import format as fmt
from agentos.user.options import connect, home_option, json_option


@click.command()
@home_option
@click.option("--ro", "readonly", is_flag=True, help="read-only: every write is refused (EROFS)")
@click.argument("hostdir", type=click.Path(exists=True, file_okay=False))
@click.argument("point")
def mount(home: str | None, readonly: bool, hostdir: str, point: str) -> None:
    """Mount the host directory HOSTDIR at POINT (e.g. /mnt/project) in the kernel's tree.

    Agents reach only what lies beneath HOSTDIR, and only with an fs: capability for POINT's
    paths; every change they make there is recorded (with what it replaces) before it is made."""
    with connect(home) as c:
        parent, made = posixpath.dirname(posixpath.normpath(point)), []
        while parent != "/":
            made.append(parent)
            parent = posixpath.dirname(parent)
        for d in reversed(made):
            try:
                c.call("mkdir", path=d)
            except Conflict:
                pass  # already there
        got = c.call("mount", source=os.path.abspath(hostdir), path=point, readonly=readonly)
    click.echo(f"mounted {got['source']} at {got['path']}{' (read-only)' if got['readonly'] else ''}")


@click.command()
@home_option
@click.argument("point")
def umount(home: str | None, point: str) -> None:
    """Unmount POINT (refused while files are open on it)."""
    with connect(home) as c:
        c.call("umount", path=point)
    click.echo(f"unmounted {point}")


@click.command()
@home_option
@json_option
def mounts(home: str | None, as_json: bool) -> None:
    """The mount table: the kernel's own (/dev, /proc, /tmp) and the host directories mounted."""
    with connect(home) as c:
        rows = c.call("mounts")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    body = [[r["path"], r["kind"], r["source"] or "-", "ro" if r["readonly"] else "rw"] for r in rows]
    click.echo(fmt.table(body, ["POINT", "KIND", "SOURCE", "MODE"]))


COMMANDS = [mount, umount, mounts]
