"""Appends a line to /shared/notes.txt in the kernel's versioned file system, then reads the file back."""

from agentos import sdk


async def main(*words: str) -> int:
    line = (" ".join(words) or "a note") + "\n"
    fd = await sdk.open("/shared/notes.txt", ["write", "append", "create"])
    await sdk.write(fd, line.encode())
    await sdk.close(fd)  # a version is cut here: who, when, which call
    fd = await sdk.open("/shared/notes.txt", ["read"])
    text = (await sdk.read(fd, 1 << 20)).decode()
    await sdk.close(fd)
    print(f"/shared/notes.txt now has {text.count(chr(10))} line(s); the last: {text.splitlines()[-1]!r}")
    return 0
