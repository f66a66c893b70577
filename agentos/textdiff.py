"""Unified diffs of two byte strings, as ``diff -u`` prints them: shared by ``agentos fs diff``
(userland, ``user/cli_versions.py``) and ``agentos diff A B`` (the kernel's ``pastdiff.py``), so
both show a change the same way. Pure: no I/O, no state."""

from __future__ import annotations

import difflib
from collections.abc import Iterator


def unified(left: bytes, right: bytes, a: str, b: str) -> Iterator[str] | None:
    """The lines of a unified diff from ``left`` (labelled ``a``) to ``right`` (``b``), each ending
    in a newline (a last line without one is followed by diff's marker); None if either side is
    not UTF-8 text (binary)."""
    try:
        old, new = left.decode(), right.decode()
    except UnicodeDecodeError:
        return None
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), a, b)
    return (line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
