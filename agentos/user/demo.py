"""``agentos demo``: a first-minute tour on a fresh home, narrated for a person.

Boots a real kernel process, runs the sample agents in ``agentos.examples`` (a console
writer, a parent with children, a failing agent, one terminated by a signal, one that
survives a real ``kill -9`` of its kernel by replay, one refused a secret until the demo,
acting as the person, approves its request for a capability), prints the process table and a
summary of the event log, and shuts the kernel down cleanly.
"""

from __future__ import annotations

import collections
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentos.errors import AgentOSError
from agentos.sdk.client import Client
from agentos.user import format as fmt
from agentos.user.boot import boot_detached

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, title: str) -> None:
    say(f"\n{BOLD}{n}. {title}{RESET}")


def show_console(c: Client, pid: int, indent: str = "   │ ") -> None:
    for item in c.stream("logs", pid=pid, follow=True):
        for line in item["data"].splitlines():
            say(f"{indent}{line}")


def run_and_wait(c: Client, target: str, *argv: str) -> dict[str, Any]:
    pid = c.call("spawn", target=target, argv=list(argv))
    show_console(c, pid)
    st = c.call("wait", pid=pid)
    say(f"   → process {pid}: {fmt.exit_text(st)}")
    return st


def wait_gone(os_pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(os_pid, os.WNOHANG)
            if done == os_pid:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{os_pid}"):
                return
        time.sleep(0.01)


def run_demo(home: Path | None) -> int:
    temp = None
    if home is None:
        temp = tempfile.mkdtemp(prefix="agentos-demo-")
        home = Path(temp) / "home"
    try:
        return _tour(home)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _tour(home: Path) -> int:
    say(f"{BOLD}AgentOS demo{RESET} — an operating system for AI agents, in one minute.")
    step(1, "Boot a kernel")
    os_pid = boot_detached(home)
    say(f"   kernel running as OS process {os_pid}; state in {home}")
    say(f"   {DIM}every state change is an event in {home / 'log.db'} (SQLite, WAL, hash-chained){RESET}")
    c = Client.connect(home, "demo")

    step(2, "An agent writes to its console (and print() goes there too)")
    run_and_wait(c, "agentos.examples.hello", "from", "the", "demo")

    step(3, "A parent agent spawns three children and reaps them with wait()")
    run_and_wait(c, "agentos.examples.family", "3")

    step(4, "An agent that fails exits non-zero")
    run_and_wait(c, "agentos.examples.failing", "3")

    step(5, "An agent is terminated by a signal")
    pid = c.call("spawn", target="agentos.examples.sleeper", argv=["3600"])
    _wait_state(c, pid, "blocked")
    say(f"   process {pid} is asleep for an hour; sending it TERM")
    c.call("kill", pid=pid, sig="TERM")
    show_console(c, pid)
    say(f"   → process {pid}: {fmt.exit_text(c.call('wait', pid=pid))}")

    step(6, "An agent survives kill -9 of its kernel")
    pid = c.call("spawn", target="agentos.examples.counter", argv=["8", "0.25"])
    seen: list[str] = []
    for item in c.stream("logs", pid=pid, follow=True):
        for line in item["data"].splitlines():
            say(f"   │ {line}")
            seen.append(line)
        if len(seen) >= 3:
            break
    c.close()
    os.kill(os_pid, signal.SIGKILL)
    wait_gone(os_pid)
    say(f"   {BOLD}kill -9 {os_pid}{RESET}: the kernel is gone mid-run")
    t0 = time.perf_counter()
    os_pid = boot_detached(home)
    c = Client.connect(home, "demo")
    st = c.call("status")
    say(
        f"   rebooted as OS process {os_pid} in {(time.perf_counter() - t0) * 1000:.0f} ms (boot {st['boot']}, {st['seq']} events)"
    )
    say(
        f"   {DIM}the counter is re-run from its start, each syscall answered from its journal, then goes on live:{RESET}"
    )
    lines = [item["data"] for item in c.stream("logs", pid=pid, follow=True)]
    new_lines = "".join(lines).splitlines()[len(seen) :]
    for line in new_lines:
        say(f"   │ {line}")
    st = c.call("wait", pid=pid)
    say(f"   → process {pid}: {fmt.exit_text(st)}; every tick printed exactly once across the crash")

    step(7, "Capabilities: an agent is refused a secret, asks a person, and gets it for five minutes")
    secret_kept = _capabilities(c, home)

    step(8, "Quotas: an agent started with a budget of 4 spawns in its resource group")
    _quotas(c)

    step(9, "Files: two agents append to /shared/notes.txt in the kernel's versioned file system")
    after_first = 0
    for words in (("first", "note"), ("second", "note")):
        run_and_wait(c, "agentos.examples.notes", *words)
        after_first = after_first or c.call("status")["durable_seq"]
    st = c.call("stat", path="/shared/notes.txt")
    say(
        f"   agentos fs stat /shared/notes.txt: {st['size']} bytes, last version cut at seq {st['version_seq']}"
    )
    then = c.call("at", point=str(after_first), what="cat", args={"path": "/shared/notes.txt"})
    say(
        f"   agentos at {after_first} fs cat /shared/notes.txt: {then['result'].decode()!r} (the past, read-only)"
    )
    d = c.call("diff", a=str(after_first), b="now", content=False)
    born, changed = d["processes"]["born"]["count"], [e["path"] for e in d["files"]["changes"]]
    say(f"   agentos diff {after_first} now: {born} process(es) born since, changed: {', '.join(changed)}")
    say(f"   {DIM}an agent reads /proc/self/status and writes to its private /tmp (kernel memory){RESET}")
    run_and_wait(c, "agentos.examples.scratch", "thrown", "away")
    say(
        f"   agentos fs ls /tmp: {c.call('readdir', path='/tmp')} (this session's own; the agent's went with it)"
    )

    _host_mount(c, home)

    step(10, "Time travel: a checkpoint, a rewind while an agent runs, and back again")
    _time_travel(c)

    step(11, "A real Linux program as a process agent, confined (namespaces, seccomp, its own cgroup)")
    _process_agent(c)

    step(12, "The process table (ps -a)")
    for line in fmt.ps_table(c.call("ps", all=True)).splitlines():
        say(f"   {line}")

    step(13, "The event log")
    events = list(c.stream("events", limit=100_000))
    kinds = collections.Counter(e["kind"] for e in events)
    say(f"   {len(events)} events, sequence 1..{events[-1]['seq']} with no gap:")
    for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        say(f"     {n:>5}  {kind}")
    sql = "SELECT name, count(*), round(max(duration_ms)) FROM syscalls GROUP BY name ORDER BY 3 DESC LIMIT 3"
    slow = ", ".join(f"{n} {ms:g} ms ({k} calls)" for n, k, ms in c.call("query", sql=sql)["rows"])
    say(f"   agentos query (SQL over the log): the agents' slowest calls: {slow}")
    check = c.call("verify")
    say(f"   hash chain: {'verified' if check['ok'] else 'FAILED'} ({check['detail']})")

    step(14, "Shut down cleanly")
    c.call("shutdown", kill=False)
    c.close()
    wait_gone(os_pid)
    say("   kernel stopped; a snapshot was written, so the next boot starts from it")
    say(
        "\nNext: agentos boot --detach, then agentos run agentos/examples/counter.py 5 — see the README's tour (capabilities and secrets too)."
    )
    return 0 if check["ok"] and secret_kept else 1


def _notes(c: Client) -> int:
    got = c.call("at", point="now", what="cat", args={"path": "/shared/notes.txt"})["result"]
    return got.count(b"\n")


def _time_travel(c: Client) -> None:
    """Checkpoint, let a counter run on, rewind to the checkpoint (the counter resumes there by
    replay), see both branches, switch back."""
    pid = c.call("spawn", target="agentos.examples.counter", argv=["6", "0.15"])
    _wait_calls(c, pid, 4)
    made = c.call("checkpoint", name="demo")
    say(f"   agentos checkpoint demo: branch {made['branch']}, seq {made['seq']} (counter {pid} is running)")
    run_and_wait(c, "agentos.examples.notes", "a", "regretted", "note")
    before = _notes(c)
    got = c.call("rewind", point="demo", name="demo-retry")
    say(
        f"   agentos rewind demo: now on branch {got['branch']}; notes.txt has {_notes(c)} line(s) again"
        f" (was {before}); agents resumed there by replay: {got['agents']}"
    )
    done = c.call("wait", pid=pid)
    say(f"   the counter went on from the checkpoint and exited {done['status']} on the new branch")
    rows = c.call("branches")
    say(
        "   agentos branches: "
        + "; ".join(f"{'*' if r['current'] else ''}{r['branch']} {r['name']}" for r in rows)
    )
    back = c.call("switch", branch=1)
    say(
        f"   agentos switch 1: back at branch 1's head (seq {back['head']}): notes.txt has {_notes(c)} line(s)"
    )


def _process_agent(c: Client) -> None:
    script = "echo hello from $(uname -n) as pid $$, seeing $(ls -d /proc/[0-9]* | wc -l) processes; exit 4"
    try:
        pid = c.call("spawn", target="sh", argv=["-c", script], kind="process")
    except AgentOSError as err:  # a host without bubblewrap or cgroups: say so, go on
        say(f"   {DIM}not on this host: {err}{RESET}")
        return
    show_console(c, pid)
    st = c.call("wait", pid=pid)
    say(
        f"   → process {pid}: {fmt.exit_text(st)} (it saw its own pid namespace; agentos status lists the sandbox)"
    )


def _wait_calls(c: Client, pid: int, calls: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = next((p for p in c.call("ps", all=True) if p["pid"] == pid), None)
        if p is not None and p["syscalls"] >= calls:
            return
        time.sleep(0.02)


def _host_mount(c: Client, home: Path) -> None:
    """A host directory mounted at /mnt/project; an agent edits it; history shows who; undo reverts
    it on the host — each host change recorded (with what it replaced) before it was made."""
    project = home / "project"
    project.mkdir(exist_ok=True)
    (project / "README").write_text("my project\n")
    c.call("mkdir", path="/mnt")
    c.call("mount", source=str(project), path="/mnt/project")
    say(f"   agentos mount {project} /mnt/project   {DIM}(agents reach only what lies beneath it){RESET}")
    caps = [
        {"resource": r, "rights": ["read", "write", "list"]} for r in ("fs:/mnt/project", "fs:/mnt/project/*")
    ]
    pid = c.call("spawn", target="agentos.examples.editor", argv=["/mnt/project"], grants=caps)
    show_console(c, pid)
    say(f"   → process {pid}: {fmt.exit_text(c.call('wait', pid=pid))}")
    say(
        f"   on the host, README: {(project / 'README').read_text()!r}; CHANGES exists: {(project / 'CHANGES').exists()}"
    )
    for v in c.call("fs_history", path="/mnt/project/README")["versions"]:
        say(
            f"   agentos fs history /mnt/project/README: seq {v['seq']} {v['op']} by pid {v['pid']} ({v['process']}), at {v['cut']}"
        )
    out = c.call("fs_undo", pid=pid)
    say(
        f"   agentos undo --pid {pid}: {out['reverted_count']} change(s) reverted, {out['conflicts_count']} conflict(s)"
    )
    say(
        f"   on the host, README: {(project / 'README').read_text()!r}; CHANGES exists: {(project / 'CHANGES').exists()}"
    )


def _quotas(c: Client) -> None:
    """An agent in a group of its own with ``spawns = 4`` (itself included) is refused the fourth
    child with a typed quota error; ``agentos groups`` shows the usage, which no rewind refunds."""
    pid = c.call("spawn", target="agentos.examples.greedy", limits={"spawns": 4})
    say(
        f"   agentos run --limit spawns=4 greedy  (the socket's spawn with limits={{'spawns': 4}}): process {pid}"
    )
    show_console(c, pid)
    say(f"   → process {pid}: {fmt.exit_text(c.call('wait', pid=pid))}")
    group = next(g for g in c.call("groups") if g["name"] == f"/agent-{pid}")
    say(
        f"   agentos groups: {group['name']} spawns {group['usage'].get('spawns', 0):g} of "
        f"{group['limits']['spawns']:g}; console_bytes {group['usage'].get('console_bytes', 0):g}"
        " (counted in the ledger: never refunded)"
    )


SECRET = "DEMO_API_KEY"


def _capabilities(c: Client, home: Path) -> bool:
    """The person sets a secret; an agent holding no capability for it is refused, asks for one
    with cap_request, and the demo approves it through the admin call ``agentos approve`` makes.
    True when the secret's value is nowhere in the log, as it must be."""
    value = secrets.token_urlsafe(24).encode()  # random and never printed: looked for in the log below
    say(
        f"   {DIM}the demo plays the person: its session (pid {c.pid}) acts with init's root capability{RESET}"
    )
    info = c.call("secret_set", name=SECRET, value=value)
    say(f"   agentos secret set {SECRET}: {info['size']} bytes, kept as a 0600 file in {home / 'secrets'}")
    pid = c.call("spawn", target="agentos.examples.secret_reader", argv=[SECRET, "30"])
    request = _wait_request(c, pid)
    shown = [line for item in c.call("logs", pid=pid) for line in item["data"].splitlines()]
    for line in shown:
        say(f"   │ {line}")
    say(
        f"   agentos approvals: request {request['id']} from process {pid} wants {request['resource']}"
        f" [{','.join(request['rights'])}] — {request['reason']!r}"
    )
    out = c.call("approve", id=request["id"], duration=300.0)
    say(
        f"   agentos approve {request['id']} --for 5m: process {pid} holds capability {out['cap']} for 5 minutes"
    )
    lines = "".join(item["data"] for item in c.stream("logs", pid=pid, follow=True)).splitlines()
    for line in lines[len(shown) :]:
        say(f"   │ {line}")

    say(f"   agentos caps {pid}: what it holds, each with the chain it was derived through")
    for cap in c.call("caps", pid=pid):
        rights = "[" + ",".join(cap["rights"]) + "]"
        chain = " ← ".join(
            f"cap {a['cap']} {a.get('resource', '?')} ({a.get('origin')})" for a in cap["chain"]
        )
        left = f", {(cap['expires_ns'] - time.time_ns()) / 60e9:.0f} min left" if cap["expires_ns"] else ""
        say(f"     cap {cap['cap']:<3} {cap['resource']:<20} {rights:<31} {cap['origin']}{left} ← {chain}")
    say(f"   agentos audit --pid {pid}: every decision about it, from the log")
    rows = c.call("audit", pid=pid)
    policy = [r for r in rows if r["kind"] == "cap.granted" and r["payload"]["origin"] == "policy"]
    if policy:
        say(
            f"     grant caps {policy[0]['payload']['cap']}-{policy[-1]['payload']['cap']}: the policy's, at spawn"
        )
    for row in rows:
        if row not in policy:
            say(f"     {_audit_text(row)}")

    journal = [
        e["payload"]["result"]
        for e in c.stream("events", kind="sys.done", pid=pid)
        if e["payload"]["call"] == "secret_get" and "result" in e["payload"]
    ]
    stored = b"".join(f.read_bytes() for f in home.glob("log.db*") if f.is_file())
    leaked = value in stored
    say(
        f"   its journal records the read as {journal[-1] if journal else '?'}, a reference replay re-reads;"
        f" the value itself in log.db: {'FOUND' if leaked else 'nowhere'}"
    )
    say(f"   → process {pid}: {fmt.exit_text(c.call('wait', pid=pid))}")
    c.call("secret_rm", name=SECRET)
    return not leaked


def _wait_request(c: Client, pid: int, timeout: float = 10) -> dict[str, Any]:
    """The pending approval request process ``pid`` made (as ``agentos approvals`` lists it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in c.call("approvals"):
            if request["pid"] == pid:
                return request
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} asked for no capability within {timeout:.0f} s")


def _audit_text(row: dict[str, Any]) -> str:
    p = row["payload"]
    kind = row["kind"]
    if kind == "audit.denied":
        return f"DENIED {p['call']}: needs {p['right']!r} on {p['resource']}"
    if kind == "approval.requested":
        return f"request {p['id']}: {p['resource']} [{','.join(p['rights'])}]"
    if kind == "approval.decided":
        return f"request {p['id']} {p['outcome']} by process {p['by']}" + (
            f" → cap {p['cap']}" if p.get("cap") else ""
        )
    if kind == "cap.granted":
        rights = ",".join(p["rights"])
        return f"grant cap {p['cap']} {p['resource']} [{rights}] ({p['origin']}, from cap {p['parent']})"
    return f"{kind} {p}"


def _wait_state(c: Client, pid: int, state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p["pid"] == pid and p["state"] == state for p in c.call("ps")):
            return
        time.sleep(0.01)
