"""``agentos replay PID [--step]``, ``agentos record export PID FILE`` and
``agentos replay --fixture FILE TARGET [ARGS...]``.

``replay PID`` lists an agent's recorded calls (admin call ``replay_steps``, ``kernel/sysreplay.py``):
each call, its arguments, its result and the state changes it caused; ``--step`` walks them one at a
time, forward and backward (commands from stdin, line by line, when it is not a terminal). The log
keeps only a digest of each call's arguments, so they are recovered by re-running the agent's stored
code against its journal offline (``--no-args`` skips that). ``record export`` writes a fixture
(``runtime/fixture.py``); ``replay --fixture`` runs code against one, offline, and reports the first
divergence: exit status 0 when it matches, 1 when it diverges.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from agentos import param
from agentos.errors import InternalError, error_from_wire
from agentos.sdk.client import Client
from agentos.user import format as fmt
from agentos.user.options import connect, fail, home_option, json_option

HELP = "commands: Enter or n next, b or p back, g N go to call N, l list, q quit"


def offline(request: dict[str, Any], seed: str | None, timeout: float) -> dict[str, Any]:
    """Ask ``python -m agentos.runtime.fixture`` (agent code runs there, never in this client), under
    the recording's PYTHONHASHSEED so that set order matches it."""
    env = {**os.environ, "PYTHONHASHSEED": seed} if seed else dict(os.environ)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agentos.runtime.fixture"],
            input=json.dumps({**request, "timeout": timeout}).encode(),
            capture_output=True,
            env=env,
            timeout=timeout + 30,
        )
    except subprocess.TimeoutExpired:
        raise InternalError(
            f"the offline replay did not finish in {timeout + 30:g}s", code="ETIMEDOUT"
        ) from None
    try:
        reply = json.loads(done.stdout)
    except ValueError:
        tail = done.stderr.decode("utf-8", "replace")[-2000:]
        raise InternalError(f"the offline replay failed (status {done.returncode}): {tail}") from None
    if "error" in reply:
        raise error_from_wire(reply["error"])
    return reply


def fetch(c: Client, pid: int, upto: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An agent's header and its recorded calls 0..``upto`` (None: all), with their journal records."""
    steps: list[dict[str, Any]] = []
    start: int | None = 0
    head: dict[str, Any] = {}
    while start is not None and (upto is None or start < upto):
        head = c.call("replay_steps", pid=pid, start=start, limit=param.REPLAY_MAX_STEPS, raw=True)
        steps += head.pop("steps")
        start = head.pop("next")
    shown = steps if upto is None else [s for s in steps if s["n"] < upto]
    head["truncated"] = start is not None or len(shown) < len(steps)  # calls after ``upto`` exist
    return head, shown


def _recording(
    c: Client, pid: int, upto: int | None, timeout: float, op: str | None, file: Path | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """Header, steps and (``op``: recover or export) the offline re-run that recovered their arguments."""
    seed = c.call("status").get("hash_seed")
    head, steps = fetch(c, pid, upto)
    if op is None:
        return head, steps, None
    source = c.call("replay_steps", pid=pid, code=True)["source"]
    cut = {**head, "exit": None} if head["truncated"] else head  # the run goes on past these calls
    request = {"op": op, "head": cut, "steps": steps, "hash_seed": seed}
    request["source"] = base64.b64encode(bytes(source)).decode()
    if file is not None:
        request["file"] = str(file.absolute())
    rerun = offline(request, seed, timeout)
    for s in steps:
        s["args"] = rerun["args"].get(str(s["n"]))
    known = {s["n"]: s for s in steps}
    for key, call in rerun["names"].items():  # getpid, sched_yield: fixed results, nothing journaled
        n = int(key)
        if upto is not None and n >= upto:
            continue
        if n not in known:
            steps.append({**_unjournaled(n, call), "args": rerun["args"][key]})
        elif known[n]["call"] is None:  # only print() output recorded before it
            kept = ("seq", "effects", "effects_total")
            known[n].update({k: v for k, v in _unjournaled(n, call).items() if k not in kept})
            known[n]["args"] = rerun["args"][key]
    steps.sort(key=lambda s: s["n"])
    return head, steps, rerun


def _seed_of(path: Path) -> str | None:
    """The fixture's hash seed, read without trusting the file (the offline run verifies it)."""
    try:
        seed = json.loads(path.read_bytes()).get("hash_seed")
    except (OSError, ValueError, AttributeError):
        return None
    return seed if isinstance(seed, str) and seed.isdigit() else None


def _unjournaled(n: int, call: str) -> dict[str, Any]:
    return {
        "n": n,
        "call": call,
        "seq": None,
        "ok": True,
        "result": "(not journaled: fixed for the caller)",
        "error": None,
        "cancelled": None,
        "blocked": None,
        "duration_ms": None,
        "args_digest": None,
        "effects": [],
        "effects_total": 0,
    }


def _who(head: dict[str, Any]) -> str:
    ended = head["exit"]
    how = fmt.exit_text(ended) if ended else head["state"]
    return f"agent {head['pid']} ({' '.join([head['target'], *head['argv']])[:80]}): {how}"


def _changes(step: dict[str, Any], width: int = 60) -> str:
    text = "; ".join(f"{e['kind']} {e['summary']}" for e in step["effects"])
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(steps: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(s["n"]),
            str(s["seq"] or ""),
            s["call"] or "-",
            (s.get("args") or ("?" if s["call"] else ""))[:50],
            (s["result"] or ("(blocked)" if s["blocked"] else ""))[:40],
            "" if s["duration_ms"] is None else f"{s['duration_ms']:.2f}",
            _changes(s),
        ]
        for s in steps
    ]
    return fmt.table(rows, ["N", "SEQ", "CALL", "ARGS", "RESULT", "MS", "CHANGES"])


def _show(step: dict[str, Any], last: int) -> str:
    lines = [f"call {step['n']} of {last}  (seq {step['seq']}, {step['duration_ms'] or 0:.2f} ms)"]
    if step["call"]:
        lines.append(f"  {step['call']}({step.get('args') or '?'})")
        if step["result"] is not None:
            lines.append(f"  -> {step['result']}")
        elif step["blocked"]:
            lines.append("  -> (blocked: never answered; the run ended inside this call)")
    else:
        lines.append("  (no call: what the code did after its last call)")
    if step["effects"]:
        lines.append("  changed:")
        lines += [f"    {e['kind']:<16} {e['summary']}" for e in step["effects"]]
        if step["effects_total"] > len(step["effects"]):
            lines.append(f"    ... {step['effects_total'] - len(step['effects'])} more")
    else:
        lines.append("  changed: nothing")
    return "\n".join(lines)


def _commands() -> Any:
    """Commands typed at a terminal, else read line by line from stdin; EOF quits."""
    while True:
        if sys.stdin.isatty():
            try:
                line = input("replay> ")
            except EOFError:
                return
        else:
            line = sys.stdin.readline()
            if not line:
                return
        yield line.strip()


def _walk(head: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    click.echo(_who(head))
    if not steps:
        click.echo("(no recorded calls)")
        return
    click.echo(HELP)
    i, last = 0, steps[-1]["n"]
    by_n = {s["n"]: k for k, s in enumerate(steps)}
    click.echo(_show(steps[i], last))
    for cmd in _commands():
        word, _, rest = cmd.partition(" ")
        if word in ("", "n"):
            if i + 1 >= len(steps):
                click.echo("(at the last call; b goes back, q quits)")
                continue
            i += 1
        elif word in ("b", "p"):
            if i == 0:
                click.echo("(at the first call)")
                continue
            i -= 1
        elif word == "g" and rest.strip().isdigit() and int(rest) in by_n:
            i = by_n[int(rest)]
        elif word == "l":
            click.echo(_table(steps))
            continue
        elif word == "q":
            return
        else:
            click.echo(f"? {cmd[:40]!r}: {HELP}")
            continue
        click.echo(_show(steps[i], last))


def _verdict(out: dict[str, Any], where: str, target: str) -> str:
    fx = out["fixture"]
    who = f"agent {fx['pid']} ({fx['target']})"
    if out["matched"]:
        how = (
            "reached the end of the recording (the recorded run was cut short there)"
            if out["how"] == "recording-end"
            else f"ended ({out['how']}) with status {out['status']}, as recorded"
        )
        return f"agentos: replay matches: {target} answered all {out['calls']} calls recorded in {where} from {who} and {how}."
    n = out["calls"]
    return (
        f"agentos: replay DIVERGED {out['report']}. That is {target} run against {where} (recorded from {who}); "
        f"{n} call{'' if n == 1 else 's'} matched before it."
    )


@click.command(context_settings={"ignore_unknown_options": True})
@home_option
@click.option(
    "--fixture", "fixture_file", default=None, metavar="FILE", help="run TARGET offline against FILE"
)
@click.option("--step", is_flag=True, help="walk the calls one at a time (" + HELP + ")")
@json_option
@click.option("--start", default=0, show_default=True, help="the first call listed")
@click.option("--limit", default=param.REPLAY_STEPS, show_default=True, help="calls listed at most")
@click.option(
    "--no-args", is_flag=True, help="skip recovering arguments (re-running the stored code offline)"
)
@click.option("--timeout", default=60.0, show_default=True, help="seconds the offline run may take")
@click.argument("what", metavar="PID | TARGET")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def replay(
    home: str | None,
    fixture_file: str | None,
    step: bool,
    as_json: bool,
    start: int,
    limit: int,
    no_args: bool,
    timeout: float,
    what: str,
    args: tuple[str, ...],
) -> None:
    """Walk an agent's recorded calls (PID), or run TARGET [ARGS...] offline against a fixture (--fixture
    FILE; ARGS default to the recorded argv): exit 0 when it matches, 1 at the first divergence."""
    if fixture_file is not None:
        request = {"op": "run", "fixture": str(Path(fixture_file).absolute()), "target": what}
        request["argv"] = list(args) if args else None
        out = offline(request, _seed_of(Path(fixture_file)), timeout)
        report = _verdict(out, fixture_file, what)
        if as_json:
            keep = ("matched", "calls", "status", "how", "divergence")
            click.echo(json.dumps({**{k: out[k] for k in keep}, "report": report}, indent=2))
        else:
            click.echo(report)
        sys.exit(0 if out["matched"] else 1)
    if not what.isdigit() or args:
        fail("say a PID, or --fixture FILE TARGET [ARGS...]", 2)
    with connect(home) as c:
        head, steps, rerun = _recording(c, int(what), start + limit, timeout, None if no_args else "recover")
    steps = [s for s in steps if s["n"] >= start]
    if rerun is not None and rerun["divergence"] is not None and not as_json:
        click.echo(
            f"agentos: arguments recovered only up to there: re-running the code diverged {rerun['report']}",
            err=True,
        )
    if as_json:
        shown = [{f: v for f, v in s.items() if f not in ("done", "intent")} for s in steps]
        click.echo(json.dumps({**head, "steps": shown}, indent=2, default=str))
    elif step:
        _walk(head, steps)
    else:
        click.echo(_who(head))
        click.echo(_table(steps))


@click.group()
def record() -> None:
    """Turn an agent's recorded run into a fixture: regression tests for agents, with no model calls."""


@record.command("export")
@home_option
@click.option("--timeout", default=60.0, show_default=True, help="seconds recovering the arguments may take")
@click.argument("pid", type=int)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export(home: str | None, timeout: float, pid: int, file: Path) -> None:
    """Write agent PID's code, argv and journal to FILE (JSON, with a content hash inside)."""
    with connect(home) as c:
        head, _, rerun = _recording(c, pid, None, timeout, "export", file)
    assert rerun is not None
    if rerun["divergence"] is not None:
        click.echo(
            f"agentos: warning: the stored code does not reproduce its own recording: {rerun['report']}; "
            "the fixture keeps the recording, with arguments up to there",
            err=True,
        )
    click.echo(f"agentos: wrote {file}: {rerun['saved']} calls of {_who(head)}; {rerun['sha256'][:19]}")


COMMANDS = [replay, record]
