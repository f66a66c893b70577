"""``agentos diff A B``: what changed between two points — processes, files (with content diffs),
capabilities, quota usage, LLM calls.

A client of the ``diff`` admin call (``kernel/pastdiff.py``); A and B are POINTs as ``agentos at``
takes them (a seq, a time, ``now``), A not after B. The text is a summary, then the unified diffs;
``--json`` prints the whole reply. Exit status 0 whatever changed (a kernel always changes).
"""

from __future__ import annotations

import json
from typing import Any

import click

from agentos.user import format as fmt
from agentos.user.options import connect, home_option, json_option

AT_SPAWN = frozenset({"policy", "spawn", "session", "boot"})  # grants a spawn or a connection brings


@click.command()
@home_option
@json_option
@click.option("--files-only", is_flag=True, help="Only the files section.")
@click.option("--no-content", is_flag=True, help="No unified diffs (sizes and hashes stay).")
@click.option("--max-files", type=int, default=None, help="List at most this many changed files.")
@click.option("--max-diff-bytes", type=int, default=None, help="Unified diff text, all files together.")
@click.argument("a")
@click.argument("b", default="now")
def diff(
    home: str | None,
    as_json: bool,
    files_only: bool,
    no_content: bool,
    max_files: int | None,
    max_diff_bytes: int | None,
    a: str,
    b: str,
) -> None:
    """What changed from point A to point B (default: now). A point is a seq (`agentos events`),
    a time (ISO 8601, or @ and Unix seconds) or `now`; A must not be after B."""
    args: dict[str, Any] = {"a": a, "b": b, "files_only": files_only, "content": not no_content}
    args |= {k: v for k, v in (("max_files", max_files), ("max_diff_bytes", max_diff_bytes)) if v is not None}
    with connect(home) as c:
        got = c.call("diff", **args)
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    click.echo("\n".join(render(got)))
    if any(entry.get("diff") for entry in got["files"]["changes"]):
        click.echo()
    for entry in got["files"]["changes"]:
        if entry.get("diff"):
            click.echo(entry["diff"], nl=False)
            if entry.get("diff_truncated"):
                click.echo("... (diff cut here: --max-diff-bytes)")


def render(got: dict[str, Any]) -> list[str]:
    """The summary of a ``diff`` reply, one line a change."""
    span = f"{fmt.when(got['ts_a'])} → {fmt.when(got['ts_b'])} UTC" if got["ts_a"] and got["ts_b"] else ""
    out = [f"diff seq {got['a']} → {got['b']} ({got['events']} events{'; ' + span if span else ''})"]
    if "processes" in got:
        out += _processes(got["processes"])
    out += _files(got["files"])
    if "capabilities" in got:
        out += _capabilities(got["capabilities"])
        out += _usage(got["usage"])
        llm = got["llm_calls"]
        out += ["", f"llm calls: {llm['count'] or 'none'}" + ("" if llm["count"] else f" — {llm['note']}")]
    return out


def _more(section: dict[str, Any], what: str) -> list[str]:
    left = section["count"] - len(section["rows"])
    return [f"  ... and {left} more {what} (--json lists the first {len(section['rows'])})"] if left else []


def _processes(p: dict[str, Any]) -> list[str]:
    out = ["", f"processes (alive {p['alive'][0]} → {p['alive'][1]})"]
    sessions = [0, 0]
    for r in p["born"]["rows"]:
        if r["kind"] == "session":
            sessions[0] += 1
        else:
            out.append(f"  + {r['pid']:<5} {r['name']} ({r['kind']}, parent {r['ppid']})  seq {r['seq']}")
    out += _more(p["born"], "born")
    for r in p["exited"]["rows"]:
        if r["kind"] == "session":
            sessions[1] += 1
        else:
            out.append(f"  - {r['pid']:<5} {r['name']}  {fmt.exit_text(r)}  seq {r['seq']}")
    out += _more(p["exited"], "exited")
    if any(sessions):
        out.append(f"  sessions (clients): {sessions[0]} connected, {sessions[1]} gone")
    return out if len(out) > 2 else [*out, "  (no change)"]


def _files(f: dict[str, Any]) -> list[str]:
    out = ["", "files"]
    for e in f["changes"]:
        out.append(f"  {_letter(e):<2} {_file_line(e)}")
    if f["truncated"]:
        out.append(f"  ... {f['count'] - len(f['changes'])} more changed (--max-files)")
    for t in f["transient"]:
        gone = f"removed at seq {t['removed']}" if t["removed"] else "gone"
        out.append(f"  ~  {t['path']}  ({t['kind']}: created at seq {t['created']}, {gone})")
    if f["transient_count"] > len(f["transient"]):
        out.append(f"  ... {f['transient_count'] - len(f['transient'])} more came and went")
    for m in f["mounts"]["added"]:
        out.append(f"  +  mount {m['path']} ({m['kind']} {m['source']})")
    for m in f["mounts"]["removed"]:
        out.append(f"  -  mount {m['path']} ({m['kind']} {m['source']})")
    if f["host_changes"]:
        out.append(f"  {f['host_changes']} changes to host-mount files (agentos fs history PATH)")
    if len(out) == 2:
        out.append("  (no change)")
    return out


def _letter(e: dict[str, Any]) -> str:
    if e["status"] != "changed":
        return "A" if e["status"] == "created" else "D"
    changed = e["content"] or {"mode", "target", "links"} & e.keys()
    return ("R" if "from" in e else "") + ("M" if changed else "")


def _file_line(e: dict[str, Any]) -> str:
    path = f"{e['from']} → {e['path']}" if "from" in e else e["path"]
    if e["kind"] == "dir":
        path += "/"
    notes = []
    old, new = e["size"]
    if e["kind"] == "file" and (e["content"] or e["status"] != "changed"):
        notes.append(
            f"{old if old is not None else new} bytes" if None in (old, new) else f"{old} → {new} bytes"
        )
        if e.get("text") is False and "sha256" in e:
            hashes = " → ".join((h or "-")[:12] for h in e["sha256"])
            notes.append(f"binary, sha256 {hashes}")
        if e.get("compared") is False:
            notes.append("too large to compare")
    if "mode" in e and e["status"] == "changed":
        notes.append("mode " + " → ".join(f"{m:o}" for m in e["mode"]))
    if "target" in e:
        notes.append("→ " + " ⇒ ".join(t if t is not None else "-" for t in e["target"]))
    if "links" in e:
        notes.append("links " + " → ".join(str(n) for n in e["links"]))
    return path + (f"  ({', '.join(notes)})" if notes else "")


def _capabilities(caps: dict[str, Any]) -> list[str]:
    out = ["", f"capabilities (held {caps['held'][0]} → {caps['held'][1]})"]
    brought: dict[int, list[str]] = {}
    for r in caps["granted"]["rows"]:
        if r["origin"] in AT_SPAWN:
            brought.setdefault(r["holder"], []).append(r["origin"])
        else:
            out.append(f"  + cap {r['cap']:<4} {_cap(r)}  ({r['origin']} by {r['by']}, seq {r['seq']})")
    for holder, origins in brought.items():
        out.append(
            f"  + pid {holder}: {len(origins)} capabilities at its start ({', '.join(sorted(set(origins)))})"
        )
    out += _more(caps["granted"], "granted")
    for r in caps["revoked"]["rows"]:
        why = f": {r['reason']}" if r["reason"] else ""
        cut = f"; cut off with it: {', '.join(map(str, r['cut_off']))}" if r["cut_off"] else ""
        out.append(f"  - cap {r['cap']:<4} {_cap(r)}  revoked by {r['by']} at seq {r['seq']}{why}{cut}")
    out += _more(caps["revoked"], "revoked")
    for r in caps["expired"]["rows"]:
        out.append(f"  - cap {r['cap']:<4} {_cap(r)}  expired (noticed at seq {r['seq']})")
    for r in caps["transferred"]["rows"]:
        out.append(f"  ~ cap {r['cap']:<4} given by {r['from']} to {r['to']} at seq {r['seq']}")
    return out if len(out) > 2 else [*out, "  (no change)"]


def _cap(r: dict[str, Any]) -> str:
    return f"pid {r['holder']}  {r['resource']} [{','.join(r['rights'])}]"


def _usage(u: dict[str, Any]) -> list[str]:
    out = ["", "quota usage (consumed between the points)"]
    for name, row in u["groups"].items():
        used = "  ".join(f"{m} {_signed(d)}" for m, d in row.items())
        new = "  (new group)" if name in u["groups_created"] else ""
        out.append(f"  {name:<12} {used}{new}")
    out.append(f"  cpu {u['cpu_ns'] / 1e9:+.3f} s; denied calls {u['denials']:+d}")
    return out


def _signed(d: float) -> str:
    return f"{d:+.3f}" if d != int(d) else f"{int(d):+d}"


COMMANDS = [diff]
