"""Turn an agent's stored source into a running coroutine.

The source is the copy read at spawn (a blob in the log), never the file on disk now, so a
resumed agent runs exactly the code it was started with. Module-level code runs here, in the
kernel process: only trusted code belongs in the kernel.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Coroutine
from typing import Any

from agentos.errors import InvalidArgument
from agentos.state.proc import Process


def module_name(pid: int) -> str:
    return f"agentos_agent_{pid}"


def instantiate(proc: Process, source: bytes, argv: list[str]) -> Coroutine[Any, Any, Any]:
    """Execute the agent module and call its entry point; raise on any load failure."""
    name = module_name(proc.pid)
    module = types.ModuleType(name)
    module.__file__ = proc.filename
    if proc.package:
        module.__package__ = proc.package
    sys.modules[name] = module  # dataclasses, pickling and typing look modules up here
    try:
        exec(compile(source, proc.filename, "exec"), module.__dict__)
        fn = module.__dict__.get(proc.entry)
        if fn is None:
            raise InvalidArgument(f"{proc.filename} has no function {proc.entry!r}")
        if not inspect.iscoroutinefunction(fn):
            raise InvalidArgument(f"{proc.entry} in {proc.filename} must be an 'async def' function")
        return fn(*argv)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def unload(pid: int) -> None:
    sys.modules.pop(module_name(pid), None)
