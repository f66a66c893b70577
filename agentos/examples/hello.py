"""Writes to its console, sleeps, and exits 0."""

from agentos import sdk


async def main(*argv: str) -> int:
    pid = await sdk.getpid()
    await sdk.write_console(f"hello from agent {pid}, argv={list(argv)}\n")
    print("print() goes to the console too")
    await sdk.sleep(0.05)
    return 0
