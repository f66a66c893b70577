"""Sleeps for a long time; cleans up when it is terminated."""

from agentos import sdk


async def main(seconds: str = "3600") -> int:
    await sdk.write_console(f"sleeping {seconds}s (send TERM to stop me)\n")
    try:
        await sdk.sleep(float(seconds))
    except sdk.AgentCancelled:
        await sdk.write_console("got TERM: cleaning up\n")
        raise
    return 0
