"""What every ``agentos`` command shares: ``--home`` and ``--json``, connecting, and typed errors
printed as ``agentos: message`` with exit status 1."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from agentos.errors import AgentOSError
from agentos.sdk.client import Client


def home_path(value: str | None) -> Path:
    """--home, else $AGENTOS_HOME, else ~/.agentos."""
    return Path(value or os.environ.get("AGENTOS_HOME") or Path.home() / ".agentos").expanduser().absolute()


def home_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--home",
        "home",
        default=None,
        metavar="DIR",
        help="kernel home (default $AGENTOS_HOME or ~/.agentos)",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="print JSON")(fn)


def connect(home: str | None, name: str = "agentos-cli") -> Client:
    return Client.connect(home_path(home), name)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"agentos: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Typed errors become ``agentos: message`` on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentOSError as err:
            fail(str(err))
