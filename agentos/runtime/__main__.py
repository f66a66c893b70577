"""``python -m agentos.runtime --home DIR``: the kernel process itself (what ``agentos boot`` runs).

The kernel fixes ``PYTHONHASHSEED`` per home so replayed agents see the same hash order: it
re-execs itself with the home's seed when the environment differs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from agentos.errors import AgentOSError
from agentos.runtime.daemon import serve, setup_logging
from agentos.store.home import Home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentos.runtime", description="Run an AgentOS kernel.")
    parser.add_argument("--home", required=True)
    parser.add_argument("--durability", choices=["normal", "full"], default=None)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument(
        "--policy", default=None, help="policy file (default: the home's policy.toml, else built in)"
    )
    args = parser.parse_args(argv)
    home = Home(args.home)
    try:
        home.create()
        seed = str(home.hash_seed())
        if os.environ.get("PYTHONHASHSEED") != seed:
            os.execve(
                sys.executable,
                [sys.executable, "-m", "agentos.runtime", *sys.argv[1:]],
                {**os.environ, "PYTHONHASHSEED": seed},
            )
        setup_logging(home, foreground=sys.stderr.isatty())
        return asyncio.run(
            serve(home, durability=args.durability, resume=not args.no_resume, policy=args.policy)
        )
    except AgentOSError as err:
        print(f"agentos: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
