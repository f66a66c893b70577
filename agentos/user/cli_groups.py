"""``agentos groups`` and ``agentos limit``: resource groups, their limits and what they used."""

from __future__ import annotations

import json

import click

from agentos.user import format as fmt
from agentos.user.options import connect, fail, home_option, json_option


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def parse_limits(settings: tuple[str, ...], *, allow_removal: bool) -> dict[str, float]:
    """``NAME=VALUE`` words as limits (``NAME=none``, where allowed, removes one: sent as -1)."""
    limits: dict[str, float] = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep:
            fail(f"expected NAME=VALUE, not {setting!r}")
        if allow_removal and value.lower() == "none":
            limits[name] = -1.0
            continue
        try:
            limits[name] = float(value)
        except ValueError:
            fail(f"limit {name} needs a number{' (or none)' if allow_removal else ''}, not {value!r}")
    return limits


@click.command()
@home_option
@json_option
def groups(home: str | None, as_json: bool) -> None:
    """List resource groups: limits and usage (a group's usage includes its descendants')."""
    with connect(home) as c:
        rows = c.call("groups")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = []
    for r in rows:
        names = sorted(set(r["limits"]) | {k for k, v in r["usage"].items() if v})
        figures = [f"{n}={_figure(r['usage'].get(n, 0))}/{_figure(r['limits'].get(n))}" for n in names]
        members = ",".join(map(str, r["members"])) or "-"
        table.append([r["name"], members, " ".join(figures) or "-"])
    click.echo(fmt.table(table, ["GROUP", "PIDS", "USED/LIMIT"]))


@click.command()
@home_option
@click.argument("group")
@click.argument("settings", nargs=-1, required=True, metavar="NAME=VALUE...")
def limit(home: str | None, group: str, settings: tuple[str, ...]) -> None:
    """Set limits of GROUP, e.g. `agentos limit /agent-5 spawns=10 console_bytes=1e6` (NAME=none removes one)."""
    limits = parse_limits(settings, allow_removal=True)
    with connect(home) as c:
        out = c.call("group_limit", group=group, limits=limits)
    click.echo(
        f"{out['group']}: " + (" ".join(f"{k}={_figure(v)}" for k, v in out["limits"].items()) or "no limits")
    )
