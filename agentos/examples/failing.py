"""Exits with a non-zero status after saying why."""

from agentos import sdk


async def main(status: str = "3") -> int:
    await sdk.write_console(f"something went wrong; exiting with status {status}\n", stream="stderr")
    return int(status)
