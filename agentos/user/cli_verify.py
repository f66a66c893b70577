"""``agentos verify [--json] [--offline]``: check the hash chain and rebuild the state from the log.

Through the kernel when one serves HOME (the ``verify`` admin call, which also compares the rebuild
with the live state); else — or with ``--offline`` — by running ``python -m agentos.kernel.verify``,
which opens the log read-only (userland never opens the log itself, ARCHITECTURE.md §2). Either way
the report is the same, and says which it was. Exit status 0 when everything agrees, 1 when the
chain breaks or a state diverges.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import click

from agentos.errors import NetworkError
from agentos.user.boot import _seed_env
from agentos.user.options import connect, fail, home_option, json_option
from agentos.user.options import home_path as _home


def _offline(home: str | None) -> dict[str, Any]:
    path = _home(home)
    if not (path / "log.db").is_file():
        fail(f"no log at {path / 'log.db'}: not an AgentOS home")
    command = [sys.executable, "-m", "agentos.kernel.verify", "--home", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, env=_seed_env(path), check=False)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        fail(done.stderr.strip().removeprefix("agentos: ") or f"verify exited with status {done.returncode}")
    return json.loads(done.stdout)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _item(item: dict[str, Any]) -> str:
    first = item["first_seq"]
    return (
        f"{item['item']} (first changed at seq {first})" if first else f"{item['item']} (no event changed it)"
    )


def describe(r: dict[str, Any], home: str) -> list[str]:
    """The report as lines a person reads: the verdict first, then where it came from."""
    lines = [f"{'ok' if r['ok'] else 'FAILED'}: {r['detail']}"]
    if r["chain"]["first_bad_seq"] is not None:
        lines.append(f"  first bad seq: {r['chain']['first_bad_seq']}")
    if not r["chain"]["ok"]:
        lines.append("  the state was not rebuilt from it: an edited log proves nothing")
    d = r.get("divergence")
    if d is not None:
        lines.append("  differs: " + ", ".join(map(_item, d["differs"])))
        e = d["event"]
        agreed = f"seq {d['agreed_seq']}" if d["agreed_seq"] else "seq 0 (no earlier snapshot agreed)"
        if e is not None:
            lines.append(
                f"  first differing event: seq {e['seq']} {e['kind']} pid {e['pid']}"
                f" (changed {', '.join(e['touched'])}); they last agreed at {agreed}"
            )
        else:
            lines.append(
                f"  no event between {agreed} and seq {d['seq']} changed it:"
                f" the {d['what']} state holds a change no event made"
            )
    lines += [f"  also: {p}" for p in r["problems"][1:]]
    snaps = r["snapshots"]
    summary = [_count(r["events"], "event") + " checked", _count(snaps["compared"], "snapshot") + " compared"]
    if snaps["skipped"]:
        summary.append(f"{snaps['skipped']} of another projection version skipped")
    live = r.get("live")
    if live is not None:
        same = "equals" if live["hash"] == live["rebuilt"] else "DIFFERS FROM"
        summary.append(f"the rebuild {same} the live state at seq {live['seq']}")
    how = "via the kernel" if r["mode"] == "kernel" else f"log opened read-only: no kernel serves {home}"
    lines.append(f"{'; '.join(summary)} — {r['ms'] / 1000:.2f} s, {how}")
    return lines


@click.command()
@home_option
@json_option
@click.option("--offline", is_flag=True, help="read the log read-only even when a kernel serves HOME")
def verify(home: str | None, as_json: bool, offline: bool) -> None:
    """Check the log's hash chain and signed head, rebuild the state from the log alone and compare it
    with every stored snapshot (and the live state); a divergence names the first differing event."""
    report = None
    if not offline:
        try:
            with connect(home) as c:
                report = c.call("verify")
        except NetworkError as err:
            if "no kernel is running" not in str(err):
                raise
    if report is None:
        report = _offline(home)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(describe(report, str(_home(home)))))
    sys.exit(0 if report["ok"] else 1)


COMMANDS = [verify]
