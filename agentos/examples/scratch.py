"""Looks at itself in /proc and keeps a scratch file in its private /tmp, which is gone when it exits."""

from agentos import sdk


async def status() -> dict[str, str]:
    fd = await sdk.open("/proc/self/status")
    text = (await sdk.read(fd, 1 << 16)).decode()
    await sdk.close(fd)
    return dict(line.split(": ", 1) for line in text.splitlines())


async def main(*words: str) -> int:
    me = await status()
    print(
        f"/proc/self/status: pid {me['pid']}, state {me['state']}, group {me['group']}, {me['fds']} fd(s) open"
    )
    fd = await sdk.open("/tmp/scratch.txt", ["read", "write", "create"])
    await sdk.write(fd, (" ".join(words) or "scratch").encode())
    await sdk.seek(fd, 0)
    text = (await sdk.read(fd, 1 << 16)).decode()
    await sdk.close(fd)
    held = (await status())["tmp_bytes"]
    print(
        f"/tmp (its own): {await sdk.readdir('/tmp')} holding {text!r}; {held} bytes of its memory quota, no events"
    )
    return 0
