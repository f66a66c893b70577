"""Small helpers the tests and benchmarks share: the smallest valid arguments of a syscall, polling,
and made-up text files."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec

from agentos.abi.syscalls import Args, decode_args


def minimal_args(schema: type[Args]) -> dict[str, Any]:
    """The smallest valid arguments for a schema: required fields at their lower bounds."""
    args: dict[str, Any] = {}
    for field in msgspec.inspect.type_info(schema).fields:  # type: ignore[attr-defined]
        if not field.required:
            continue
        t = field.type
        if isinstance(t, msgspec.inspect.IntType):
            args[field.encode_name] = max(t.ge if t.ge is not None else 1, 1)
        elif isinstance(t, msgspec.inspect.FloatType):
            args[field.encode_name] = t.ge if t.ge is not None else 0.0
        elif isinstance(t, msgspec.inspect.StrType):
            text = "x" * max(t.min_length or 1, 1)
            args[field.encode_name] = "/" + text if t.pattern and not re.search(t.pattern, text) else text
        elif isinstance(t, msgspec.inspect.BytesType):
            args[field.encode_name] = b"x" * max(t.min_length or 1, 1)
        elif isinstance(t, msgspec.inspect.StructType | msgspec.inspect.DictType):
            args[field.encode_name] = {}
        elif isinstance(t, msgspec.inspect.ListType):
            args[field.encode_name] = ["x"] * max(t.min_length or 0, 0)
        else:
            args[field.encode_name] = None
    decode_args(schema, args)  # a denial must not hide behind an argument error
    return args


def poll(fn: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns something truthy (returned), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def text_lines(rng: random.Random, size: int) -> list[str]:
    """Lines of words (a text file, as an agent writes one) adding up to exactly ``size`` bytes."""
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) + "\n"
        line = line[: size - total - 1] + "\n" if total + len(line) > size else line
        lines.append(line)
        total += len(line)
    return lines
