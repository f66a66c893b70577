"""Counts to N, one line every interval: the agent that survives a kill -9 of its kernel."""

from agentos import sdk


async def main(n: str = "10", interval: str = "0.2") -> int:
    for i in range(1, int(n) + 1):
        await sdk.write_console(f"tick {i}/{n}\n")
        await sdk.sleep(float(interval))
    await sdk.write_console("counter done\n")
    return 0
