"""``agentos secret``: set, list and remove the home's secrets through the kernel.

The kernel owns the secret store; this is only a client of its ``secret_set``, ``secret_list``
and ``secret_rm`` syscalls. Values are read from stdin (or a no-echo prompt on a terminal) so
they never appear in argv, shell history or ``ps``, and nothing here ever prints one.

"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from agentos import param
from agentos.user import format as fmt
from agentos.user.options import Group, connect, fail, home_option, json_option


def read_value(stream: Any, name: str) -> bytes:
    """The secret's bytes: a hidden prompt on a terminal, else all of stdin less one trailing newline."""
    if stream.isatty():
        return click.prompt(f"value of secret {name}", hide_input=True, prompt_suffix=": ").encode()
    limit = param.MAX_ARG_BYTES
    data = stream.read(limit + 3)  # room for a trailing \r\n, and one byte to tell "too much"
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    if len(data) > limit:
        fail(f"the value on stdin is over {limit} bytes")
    return data


@click.group(cls=Group)
def secret() -> None:
    """Manage secrets kept by the kernel in its home (values never enter the event log)."""


@secret.command(name="set")
@home_option
@click.argument("name")
def set_secret(home: str | None, name: str) -> None:
    """Set secret NAME to the value read from stdin (prompted without echo on a terminal)."""
    value = read_value(click.get_binary_stream("stdin"), name)
    with connect(home) as c:
        c.call("secret_set", name=name, value=value)
    click.echo(f"secret {name} set ({len(value)} bytes)")


@secret.command(name="list")
@home_option
@json_option
def list_secrets(home: str | None, as_json: bool) -> None:
    """List secrets: names, sizes and when each was last set (never the values)."""
    with connect(home) as c:
        items = c.call("secret_list")
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    rows = [[item["name"], str(item["size"]), _local_time(item["updated_ns"])] for item in items]
    click.echo(fmt.table(rows, ["NAME", "SIZE", "UPDATED"]))


@secret.command(name="rm")
@home_option
@click.argument("name")
def remove_secret(home: str | None, name: str) -> None:
    """Remove secret NAME."""
    with connect(home) as c:
        c.call("secret_rm", name=name)
    click.echo(f"secret {name} removed")


def _local_time(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000).astimezone().isoformat(timespec="seconds")
