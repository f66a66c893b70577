"""A parent that spawns children, waits for each, and reports how they ended."""

from agentos import sdk


async def child(label: str, status: str = "0") -> int:
    await sdk.write_console(
        f"  child {label} (pid {await sdk.getpid()}, parent {await sdk.getppid()}) working\n"
    )
    await sdk.sleep(0.05)
    return int(status)


async def main(count: str = "3") -> int:
    pids = [await sdk.spawn("family.py:child", f"#{i}", str(i), name=f"child-{i}") for i in range(int(count))]
    await sdk.write_console(f"parent {await sdk.getpid()} spawned {pids}\n")
    for _ in pids:
        st = await sdk.wait()
        await sdk.write_console(f"parent reaped child {st['pid']}: exit {st['status']}\n")
    return 0
