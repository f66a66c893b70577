"""Find an agent program and read its source: the host read that spawn captures in its event.

A target is ``path/to/agent.py``, ``path/to/agent.py:function``, ``package.module`` or
``package.module:function`` (the function defaults to ``main``). Relative paths resolve
against ``base_dir``: the client's working directory, or the spawning agent's own directory.
The source read here is stored as a blob at spawn; replay runs that copy, not the file on disk.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from agentos.errors import InvalidArgument, NotFound

MAX_SOURCE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Program:
    target: str
    filename: str
    entry: str
    package: str
    source: bytes


def _split(target: str) -> tuple[str, str]:
    head, sep, tail = target.rpartition(":")
    if sep and tail.isidentifier() and head:
        return head, tail
    return target, "main"


def resolve(target: str, base_dir: str | None) -> Program:
    where, entry = _split(target)
    if where.endswith(".py") or os.sep in where:
        path = os.path.normpath(os.path.join(base_dir or os.getcwd(), where))
        return Program(target, path, entry, "", _read(path))
    if not all(part.isidentifier() for part in where.split(".")):
        raise InvalidArgument(f"target {target!r} is neither a .py path nor module[:function]")
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError) as exc:
        raise NotFound(f"cannot find module {where!r}: {exc}") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise NotFound(f"cannot find a Python source file for module {where!r}")
    package = where if spec.submodule_search_locations else where.rpartition(".")[0]
    return Program(target, spec.origin, entry, package, _read(spec.origin))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(f"agent program {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidArgument(f"agent program {path} is a directory") from None
    except OSError as exc:
        raise NotFound(f"cannot read agent program {path}: {exc.strerror}") from None
    except ValueError:  # an embedded NUL byte
        raise InvalidArgument(f"agent program path {path!r} is not a valid path") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise InvalidArgument(f"agent program {path} is larger than {MAX_SOURCE_BYTES} bytes", code="E2BIG")
    return data
