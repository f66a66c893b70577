"""Appends a note to /shared/notes.txt and its place to /shared/notes.index in one fs_transaction: the two
files change together, or neither does (a crash between them cannot leave the index pointing wrong)."""

from agentos import sdk
from agentos.errors import NotFound

NOTES, INDEX = "/shared/notes.txt", "/shared/notes.index"


async def main(*words: str) -> int:
    line = ((" ".join(words) or "a note") + "\n").encode()
    try:
        offset = (await sdk.stat(NOTES))["size"]
    except NotFound:
        offset = 0
    done = await sdk.fs_transaction(
        [
            {"op": "write", "path": NOTES, "data": line, "append": True},
            {"op": "write", "path": INDEX, "data": f"{offset} {len(line)}\n".encode(), "append": True},
        ]
    )
    print(f"{NOTES} and {INDEX} changed together: events {done['first_seq']}..{done['last_seq']}")
    return 0
