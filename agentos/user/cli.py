"""The ``agentos`` command: boot a kernel, run agents, look at processes and history.

Every command takes ``--home DIR`` (default ``$AGENTOS_HOME`` or ``~/.agentos``) and every
listing command takes ``--json``. Errors go to stderr with a non-zero exit code. All of it is
a client of the socket ABI except ``boot``, which starts the kernel.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from agentos.errors import AgentOSError, NetworkError
from agentos.user import (
    cli_at,
    cli_caps,
    cli_diff,
    cli_export,
    cli_fs,
    cli_groups,
    cli_mount,
    cli_query,
    cli_replay,
    cli_secret,
    cli_time,
    cli_undo,
    cli_verify,
    cli_versions,
)
from agentos.user import format as fmt
from agentos.user.options import Group, connect, fail, home_option, json_option
from agentos.user.options import home_path as _home

TRUSTED_NOTICE = "agentos: running {target} inside the kernel — only trusted code belongs there (it can reach everything in the kernel process)"


@click.group(cls=Group)
@click.version_option(package_name="agentos")
def cli() -> None:
    """AgentOS: an operating system for AI agents."""


# -- the kernel ----------------------------------------------------------------------------


@cli.command()
@home_option
@click.option("--detach", is_flag=True, help="run in the background; return once it serves")
@click.option(
    "--durability",
    type=click.Choice(["normal", "full"]),
    default=None,
    help="normal survives kill -9; full also survives power loss",
)
@click.option("--no-resume", is_flag=True, help="boot without resuming any agent")
@click.option(
    "--policy",
    default=None,
    metavar="FILE",
    help="policy file: default capabilities and quotas of CLI-started agents (default: HOME/policy.toml, else built in)",
)
def boot(home: str | None, detach: bool, durability: str | None, no_resume: bool, policy: str | None) -> None:
    """Boot the kernel on HOME (foreground unless --detach)."""
    from agentos.caps.policy import default_policy, load_policy
    from agentos.user.boot import boot_detached, boot_foreground

    path = _home(home)
    if policy is not None:
        policy = str(Path(policy).expanduser().absolute())
    # checked here too, so a malformed policy is a clear error before any kernel starts
    chosen = policy or (str(path / "policy.toml") if (path / "policy.toml").exists() else None)
    source = load_policy(chosen).source if chosen else default_policy().source
    click.echo(f"agentos: policy: {source}", err=True)
    if detach:
        pid = boot_detached(path, durability=durability, resume=not no_resume, policy=policy)
        click.echo(f"agentos: kernel running (pid {pid}) on {path}")
    else:
        sys.exit(boot_foreground(path, durability=durability, resume=not no_resume, policy=policy))


@cli.command()
@home_option
@json_option
def status(home: str | None, as_json: bool) -> None:
    """Show the kernel's status."""
    with connect(home) as c:
        st = c.call("status")
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    for key, value in st.items():
        click.echo(f"{key:>16}: {value}")


@cli.command()
@home_option
@click.option("--kill", "kill_agents", is_flag=True, help="terminate agents instead of suspending them")
def shutdown(home: str | None, kill_agents: bool) -> None:
    """Stop the kernel; live agents are suspended and resume at the next boot (or --kill)."""
    try:
        c = connect(home)
    except NetworkError as err:
        fail(str(err))
    os_pid = c.call("status")["os_pid"]
    c.call("shutdown", kill=kill_agents)
    c.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(os_pid):
        time.sleep(0.02)
    click.echo("agentos: kernel stopped" + (" (agents terminated)" if kill_agents else " (agents suspended)"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours (the demo boots kernels as children) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


# -- processes -----------------------------------------------------------------------------


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@home_option
@click.option("--detach", "-d", is_flag=True, help="print the pid and return at once")
@click.option("--name", default=None, help="process name")
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=VALUE",
    help="a limit of the agent's resource group, over the policy's (repeatable): --limit spawns=10",
)
@click.option(
    "--cap",
    "caps",
    multiple=True,
    metavar="RESOURCE=RIGHTS",
    help="a capability over the policy's (repeatable): --cap 'fs:/mnt/project/*=read,write,list'",
)
@click.option(
    "--process", "process", is_flag=True, help="run a real program, confined: run --process -- CMD ARGS..."
)
@click.option(
    "--restart",
    type=click.Choice(["never", "on-failure", "always"]),
    default=None,
    help="with --process: restart it when it ends (with backoff); default never",
)
@click.option(
    "--profile",
    type=click.Choice(["minimal", "full"]),
    default=None,
    help="with --process: the sandbox preset",
)
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(
    home: str | None,
    detach: bool,
    name: str | None,
    limits: tuple[str, ...],
    caps: tuple[str, ...],
    process: bool,
    restart: str | None,
    profile: str | None,
    target: str,
    args: tuple[str, ...],
) -> None:
    """Run an SDK agent (FILE.py[:func] or module:func), or with --process a real program, and
    stream its console."""
    from agentos.user.cli_groups import parse_limits
    from agentos.user.runner import run_agent

    grants = []
    for spec in caps:
        resource, _, rights = spec.partition("=")
        if not resource or not rights:
            raise click.UsageError(f"--cap {spec!r}: say RESOURCE=RIGHT[,RIGHT...]")
        grants.append({"resource": resource, "rights": rights.split(",")})
    if not process and (restart or profile):
        raise click.UsageError("--restart and --profile go with --process")
    if not process:
        click.echo(TRUSTED_NOTICE.format(target=target), err=True)
    group_limits = parse_limits(limits, allow_removal=False)
    extra = {"kind": "process", "restart": restart, "profile": profile} if process else {}
    sys.exit(
        run_agent(
            _home(home),
            target,
            list(args),
            name=name,
            detach=detach,
            limits=group_limits,
            grants=grants,
            **extra,
        )
    )


@cli.command()
@home_option
@json_option
@click.option("--all", "-a", "show_all", is_flag=True, help="include reaped (dead) processes")
def ps(home: str | None, as_json: bool, show_all: bool) -> None:
    """List processes."""
    with connect(home) as c:
        procs = c.call("ps", all=show_all)
    click.echo(json.dumps(procs, indent=2) if as_json else fmt.ps_table(procs))


@cli.command()
@home_option
@click.option(
    "-s", "--signal", "sig", default="TERM", help="TERM, KILL, STOP, CONT, INT, HUP, USR1, USR2 or a number"
)
@click.argument("pid", type=int)
def kill(home: str | None, sig: str, pid: int) -> None:
    """Send a signal to a process."""
    with connect(home) as c:
        c.call("kill", pid=pid, sig=int(sig) if sig.isdigit() else sig)


@cli.command()
@home_option
@json_option
@click.argument("pid", type=int)
def wait(home: str | None, as_json: bool, pid: int) -> None:
    """Wait for a process to exit and exit with its status."""
    with connect(home) as c:
        st = c.call("wait", pid=pid)
    if as_json:
        click.echo(json.dumps(st))
    else:
        click.echo(f"process {pid}: {fmt.exit_text(st)}")
    sys.exit(st["status"] if st and st.get("status") is not None else 0)


@cli.command()
@home_option
@click.option("--follow", "-f", is_flag=True, help="keep printing until the process exits")
@json_option
@click.argument("pid", type=int)
def logs(home: str | None, follow: bool, as_json: bool, pid: int) -> None:
    """Show a process's console."""
    with connect(home) as c:
        for item in c.stream("logs", pid=pid, follow=follow):
            if as_json:
                click.echo(json.dumps(item))
            else:
                out = sys.stderr if item["stream"] == "stderr" else sys.stdout
                out.write(item["data"])
                out.flush()


@cli.command()
@home_option
@json_option
@click.option("--since", type=int, default=0, help="only events after this sequence number")
@click.option("--limit", type=int, default=1000)
@click.option("--pid", type=int, default=None)
@click.option("--kind", default=None, help="only events of this kind (e.g. proc.exited)")
@click.option("--follow", "-f", is_flag=True, help="keep printing new events")
@click.option("--branch", type=int, default=None, help="the history branch B sees (agentos branches)")
def events(
    home: str | None,
    as_json: bool,
    since: int,
    limit: int,
    pid: int | None,
    kind: str | None,
    follow: bool,
    branch: int | None,
) -> None:
    """Show the event log (every branch's events, or --branch B's history)."""
    with connect(home) as c:
        args: dict[str, Any] = {"since": since, "limit": limit, "follow": follow}
        for key, value in (("pid", pid), ("kind", kind), ("branch", branch)):
            if value is not None:
                args[key] = value
        try:
            for e in c.stream("events", **args):
                click.echo(json.dumps(e) if as_json else fmt.event_line(e))
        except KeyboardInterrupt:
            pass


@cli.command(name="state-hash")
@home_option
@json_option
def state_hash(home: str | None, as_json: bool) -> None:
    """Print the digest of the kernel's live state."""
    with connect(home) as c:
        result = c.call("state_hash")
    click.echo(json.dumps(result) if as_json else f"{result['hash']}  (seq {result['seq']})")


@cli.command()
@click.option(
    "--home", "home", default=None, metavar="DIR", help="state directory (default: a fresh temporary one)"
)
def demo(home: str | None) -> None:
    """Boot a kernel on a fresh home and tour what it does (about half a minute)."""
    from agentos.user.demo import run_demo

    sys.exit(run_demo(Path(home).absolute() if home else None))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except AgentOSError as err:
        fail(str(err))
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()


for _command in (
    *cli_caps.COMMANDS,
    *cli_versions.COMMANDS,
    *cli_undo.COMMANDS,
    *cli_mount.COMMANDS,
    *cli_at.COMMANDS,
    *cli_query.COMMANDS,
    *cli_diff.COMMANDS,
    *cli_replay.COMMANDS,
    *cli_time.COMMANDS,
    *cli_verify.COMMANDS,
    *cli_export.COMMANDS,
    cli_secret.secret,
    cli_groups.groups,
    cli_groups.limit,
    cli_fs.fs,
):
    cli.add_command(_command)
