"""Spawns children (each exits at once) until its resource group's spawn quota stops it."""

from agentos import sdk
from agentos.errors import QuotaExceeded


async def main(*argv: str) -> int:
    spawned = 0
    try:
        while spawned < 1000:
            await sdk.wait(await sdk.spawn("agentos.examples.greedy:child"))
            spawned += 1
    except QuotaExceeded as err:
        print(f"spawned {spawned} children, then: {err}")
        return 0
    return 1


async def child(*argv: str) -> int:
    return 0
