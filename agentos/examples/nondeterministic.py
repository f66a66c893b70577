"""Breaks the one rule: decides what to do from the host clock instead of sdk.time().

Run it, kill -9 the kernel while it sleeps, boot again: replay notices that it asks for a
different call than its journal recorded and ends it with a ReplayDivergence fault.
"""

import time

from agentos import sdk


async def main() -> int:
    if int(time.time() * 1000) % 2 == 0:  # host clock: differs between runs
        await sdk.write_console("even millisecond\n")
    else:
        await sdk.getppid()
    await sdk.sleep(30)
    return 0
