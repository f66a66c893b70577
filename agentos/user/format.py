"""Plain-text rendering of what the kernel returns: process tables, events, durations."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def exit_text(p: dict[str, Any]) -> str:
    if p.get("status") is None:
        return p.get("wait") or p.get("stop_reason") or ""
    text = f"exit {p['status']}"
    if p.get("signal"):
        text += f" ({p['signal']})"
    if p.get("fault"):
        text += f" [{p['fault']}]"
    return text


def ps_table(procs: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(p["pid"]),
            str(p["ppid"]),
            p["state"],
            p["kind"],
            f"{p['cpu_ms']:.1f}",
            str(p["syscalls"]),
            exit_text(p),
            " ".join([p["name"], *p.get("argv", [])])[:60],
        ]
        for p in procs
    ]
    return table(rows, ["PID", "PPID", "STATE", "KIND", "CPU_MS", "CALLS", "STATUS", "COMMAND"])


def when(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def event_line(e: dict[str, Any]) -> str:
    payload = json.dumps(e["payload"], separators=(",", ":"), sort_keys=False)
    if len(payload) > 100:
        payload = payload[:97] + "..."
    branch = f" b{e['branch']}" if e.get("branch", 1) != 1 else ""  # main's events are unmarked
    return f"{e['seq']:>7}{branch}  {when(e['ts'])}  {e['kind']:<20} pid={e['pid']:<4} {payload}"
