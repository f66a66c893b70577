"""Where a key is in TOML text: ``tomllib`` gives values but no positions, so a policy error that
names a line finds it here, by scanning the text for the key's logical path (tables, arrays of
tables, dotted and quoted keys; the insides of multi-line strings and arrays are skipped)."""

from __future__ import annotations

import re

_KEY_PART = re.compile(r"""[ \t]*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')[ \t]*""")
KeyPath = tuple[str | int, ...]  # a logical position: keys, and indexes into arrays of tables


def _parse_key(line: str, i: int) -> tuple[list[str], int] | None:
    """A (dotted) key starting at ``line[i]``: its parts and where it ends, or None."""
    parts: list[str] = []
    while True:
        match = _KEY_PART.match(line, i)
        if match is None:
            return None
        parts.append(next(g for g in match.groups() if g is not None))
        i = match.end()
        if i < len(line) and line[i] == ".":
            i += 1
            continue
        return parts, i


def _scan_value(line: str, i: int, depth: int, multi: str | None) -> tuple[int, str | None]:
    """Follow brackets and strings to the end of ``line``, so that continuation lines of a
    multi-line array or string are not mistaken for keys or headers."""
    n = len(line)
    while i < n:
        if multi is not None:
            if multi == '"""' and line[i] == "\\":
                i += 2
            elif line.startswith(multi, i):
                multi, i = None, i + 3
            else:
                i += 1
            continue
        ch = line[i]
        if ch == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            multi, i = line[i : i + 3], i + 3
        elif ch in "\"'":
            i += 1
            while i < n and line[i] != ch:
                i += 2 if ch == '"' and line[i] == "\\" else 1
            i += 1
        else:
            depth += (ch in "[{") - (ch in "]}")
            i += 1
    return max(depth, 0), multi


def _key_lines(text: str) -> list[tuple[int, KeyPath]]:
    """Each header and key line of a valid TOML text, with the logical position it names."""
    out: list[tuple[int, KeyPath]] = []
    table: KeyPath = ()
    arrays: dict[KeyPath, int] = {}  # array of tables -> how many elements so far
    depth, multi = 0, None
    for lineno, line in enumerate(text.split("\n"), 1):  # tomllib counts only \n
        if depth or multi:
            depth, multi = _scan_value(line, 0, depth, multi)
            continue
        body = line.lstrip(" \t")
        is_array = body.startswith("[[")
        if body.startswith("["):
            key = _parse_key(body, 2 if is_array else 1)
            if key is None:
                continue
            logical: KeyPath = ()
            for k, part in enumerate(key[0]):
                logical += (part,)
                if is_array and k == len(key[0]) - 1:
                    arrays[logical] = arrays.get(logical, 0) + 1
                if logical in arrays:
                    logical += (arrays[logical] - 1,)
            table = logical
            out.append((lineno, table))
            continue
        key = _parse_key(line, 0)
        if key is None or key[1] >= len(line) or line[key[1]] != "=":
            continue
        out.append((lineno, table + tuple(key[0])))
        depth, multi = _scan_value(line, key[1] + 1, 0, None)
    return out


def locate(text: str, where: KeyPath) -> int:
    """The line of the key at ``where``, else of its nearest enclosing key or header, else 1."""
    try:
        lines = _key_lines(text)
    except Exception:  # a locator bug must not hide the real error behind another
        return 1
    for n in range(len(where), 0, -1):
        prefix = where[:n]
        for lineno, path in lines:
            if path == prefix:
                return lineno
        for lineno, path in lines:
            if path[:n] == prefix:
                return lineno
    return 1
