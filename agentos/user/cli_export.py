"""``agentos export NAME FILE``, ``agentos import FILE``, ``agentos gc --keep-since POINT|DURATION``.

``export`` and ``gc`` are clients of the admin calls in ``kernel/exports.py`` and ``kernel/gc.py``.
``import`` runs with no kernel on the home, into a new or empty one (pids, inodes and capability ids
are never reused in a home), by running ``python -m agentos.kernel.importer`` (userland never opens
the log itself, ARCHITECTURE.md §2); ``agentos boot`` then resumes the imported agents by replay.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from agentos.user.boot import _seed_env
from agentos.user.options import connect, fail, home_option, json_option
from agentos.user.options import home_path as _home


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.command()
@home_option
@json_option
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="replace FILE if it exists")
def export(home: str | None, as_json: bool, name: str, file: str, force: bool) -> None:
    """Write checkpoint NAME (its world, the blobs it needs, its live agents' journals) to FILE."""
    with connect(home) as c:
        got = c.call("export", name=name, path=str(Path(file).absolute()), force=force)
    if as_json:
        click.echo(json.dumps(got))
        return
    n = got["counts"]
    click.echo(
        f"exported checkpoint {got['name']} (branch {got['branch']}, seq {got['seq']}) to {got['path']}"
    )
    click.echo(
        f"  {_size(got['bytes'])}: {n['processes']} processes ({n['agents']} SDK agents, "
        f"{n['journal']} journal records), {n['files']} files, {n['blobs']} blobs"
    )
    click.echo(f"  sha256 {got['sha256']}\n  world  {got['world_hash']}")


@click.command(name="import")
@home_option
@json_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_(home: str | None, as_json: bool, file: str) -> None:
    """Bring an exported checkpoint FILE into a new or empty home (no kernel running on it)."""
    path = _home(home)
    command = [
        sys.executable,
        "-m",
        "agentos.kernel.importer",
        "--home",
        str(path),
        str(Path(file).absolute()),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=_seed_env(path), check=False)
    if done.returncode != 0:
        try:
            fail(json.loads(done.stderr.strip().splitlines()[-1])["error"])
        except (ValueError, KeyError, IndexError):
            fail(done.stderr.strip() or f"import exited with status {done.returncode}")
    got: dict[str, Any] = json.loads(done.stdout)
    if as_json:
        click.echo(json.dumps(got))
        return
    n = got["counts"]
    click.echo(
        f"imported checkpoint {got['name']} (branch {got['branch']}, seq {got['seq']}) into {got['home']}"
    )
    click.echo(f"  world {got['world_hash']} (verified); {n['agents']} SDK agents resume by replay at boot")
    if not got["hash_seed_matches"]:
        click.echo("  note: this home's PYTHONHASHSEED differs from the source's; replay may diverge")
    click.echo(f"  agentos boot --home {got['home']} to run it")


@click.command()
@home_option
@json_option
@click.option(
    "--keep-since", "keep", required=True, metavar="POINT|DURATION", help="e.g. 1200, a checkpoint, 7d"
)
@click.option("--dry-run", is_flag=True, help="report what would be dropped; change nothing")
def gc(home: str | None, as_json: bool, keep: str, dry_run: bool) -> None:
    """Compact the history before POINT (or DURATION ago) behind a base event; report bytes freed."""
    with connect(home) as c:
        got = c.call("gc", keep_since=keep, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(got))
        return
    what = "would drop" if dry_run else "dropped"
    click.echo(
        f"{what} {got['dropped']} events before seq {got['seq']} ({_size(got['dropped_payload_bytes'])} of payload)"
        f" and {got['blobs']} blobs ({_size(got['blob_bytes'])}); kept {got['kept']} (audit, live agents' journals)"
    )
    click.echo(f"  base worlds for branches {', '.join(map(str, got['branches']))}")
    if not dry_run:
        click.echo(
            f"  base event at seq {got['base_event']}; log {_size(got['bytes_before'])} -> "
            f"{_size(got['bytes_after'])}: {_size(got['bytes_freed'])} freed"
        )


COMMANDS = [export, import_, gc]
