"""Edits a project mounted from the host (``agentos mount DIR /mnt/project``): appends a line to its
README and writes a CHANGES file. Each change reaches the host only after the kernel has durably
recorded what it replaces, so ``agentos fs history`` shows it and ``agentos undo --pid`` reverts it.
It needs a capability for the mount: ``agentos run --cap 'fs:/mnt/project/*=read,write,list' ...``."""

from agentos import sdk


async def main(root: str = "/mnt/project", *words: str) -> int:
    line = (" ".join(words) or "edited by an agent") + "\n"
    fd = await sdk.open(f"{root}/README", ["write", "append", "create"])
    await sdk.write(fd, line.encode())
    await sdk.close(fd)  # here the host file changes: recorded first, then written atomically
    fd = await sdk.open(f"{root}/CHANGES", ["write", "create", "truncate"])
    await sdk.write(fd, b"- README: one line added\n")
    await sdk.close(fd)
    print(f"edited {root}/README and wrote {root}/CHANGES")
    return 0
