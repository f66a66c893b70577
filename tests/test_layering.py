"""The layering rules of ARCHITECTURE.md §2 and §4.3, checked statically and on a live kernel.

* userland (``agentos.user``) and the SDK reach the kernel only through the ABI;
* ``agentos.store`` imports nothing above it;
* only apsw ever touches SQLite: no module imports the stdlib ``sqlite3``, and a live kernel has
  one SQLite library loaded;
* every syscall row names a right and a schema, and the right is checked for every row;
* every module says what it is for.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import agentos
from agentos.abi.syscalls import Args, decode_args
from agentos.caps import pattern
from agentos.errors import PermissionDenied
from agentos.kernel.authz import Authority
from agentos.kernel.calls import Caller
from agentos.kernel.kernel import Kernel
from agentos.kernel.syscall import ADMIN, SYSCALLS
from agentos.state.world import State
from agentos.testing.helpers import minimal_args
from agentos.testing.kernelproc import KernelProcess

PACKAGE = Path(agentos.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module a source imports anywhere (functions and TYPE_CHECKING blocks included),
    relative imports resolved, plus constant names given to importlib.import_module/__import__."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def imports_of(path: Path) -> set[str]:
    return imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_import_collector_sees_every_kind_of_import() -> None:
    source = """
import os, agentos.kernel.kernel
from agentos.store import log
from .. import runtime
from .boot import boot_detached
import importlib
def later():
    from agentos.state.world import State
    importlib.import_module("agentos.store.home")
    __import__("sqlite3")
"""
    found = imported_modules(source, "agentos.user.cli")
    for expected in (
        "os",
        "agentos.kernel.kernel",
        "agentos.store.log",
        "agentos.runtime",
        "agentos.user.boot",
        "agentos.state.world",
        "agentos.store.home",
        "sqlite3",
    ):
        assert expected in found, expected
    assert "agentos.sdk.client" in imported_modules("from .client import Client", "agentos.sdk", True)


def userland_cases() -> list[Any]:
    cases = []
    for path in MODULES:
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith(("user/", "sdk/")):
            continue
        marks: list[Any] = []
        cases.append(pytest.param(path, id=rel, marks=marks))
    assert len(cases) >= 5
    return cases


@pytest.mark.parametrize("path", userland_cases())
def test_userland_and_sdk_never_import_the_kernel_runtime_or_store(path: Path) -> None:
    bad = {m for m in imports_of(path) if under(m, "agentos.kernel", "agentos.runtime", "agentos.store")}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_store_imports_nothing_above_it() -> None:
    store = [p for p in MODULES if p.relative_to(PACKAGE).parts[0] == "store"]
    assert len(store) >= 3
    for path in store:
        ours = {m for m in imports_of(path) if under(m, "agentos")}
        above = {m for m in ours if not under(m, "agentos.store", "agentos.errors", "agentos.param")}
        assert not above, f"{path.relative_to(PACKAGE)} imports {sorted(above)}"
        assert not {m for m in ours if m == "agentos"}, path  # not even the package root


def test_nothing_imports_the_stdlib_sqlite3() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(m for m in imports_of(p) if under(m, "sqlite3", "_sqlite3"))
        for p in MODULES
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(p.relative_to(PACKAGE)) for p in MODULES if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert missing == []


# -- the syscall table --------------------------------------------------------------------------------


def test_every_syscall_row_names_a_right_and_a_schema() -> None:
    assert SYSCALLS
    for name, row in SYSCALLS.items():
        assert row.name == name
        assert pattern.normalise_rights([row.right]) == (row.right,) and row.right != pattern.ANY, name
        resource = row.resource if isinstance(row.resource, str) else row.resource(minimal_struct(row.schema))
        assert pattern.normalise(resource) == resource and "*" not in resource, (name, resource)
        assert isinstance(row.schema, type) and issubclass(row.schema, Args), name
        assert msgspec.inspect.type_info(row.schema).forbid_unknown_fields, name  # type: ignore[attr-defined]
        assert callable(row.handler), name
        assert row.journal in ("result", "counter", "secret", "none"), name
        if row.resource == ADMIN:
            assert row.journal == "none", f"admin call {name} is never made by a replayed agent"
    admin = {name for name, row in SYSCALLS.items() if row.resource == ADMIN}
    assert {
        "status",
        "shutdown",
        "events",
        "state_hash",
        "verify",
        "logs",
        "caps",
        "audit",
        "approve",
    } <= admin


def minimal_struct(schema: type[Args]) -> Args:
    return decode_args(schema, minimal_args(schema))


@pytest.mark.parametrize("name", sorted(SYSCALLS))
def test_dispatch_checks_the_right_of_every_row_before_its_handler(name: str) -> None:
    # A kernel whose state holds no process and no capability: a handler that ran would fail on
    # it; the denial (deny by default) comes first.
    kernel = Kernel.__new__(Kernel)
    kernel.state = State()
    kernel.authority = Authority(kernel)
    audited: list[Any] = []
    kernel.emit = lambda payload, *a, **kw: audited.append(payload) or 0  # type: ignore[method-assign]
    caller = Caller(pid=99, kind="agent")
    with pytest.raises(PermissionDenied) as info:
        kernel.call(caller, name, minimal_args(SYSCALLS[name].schema))
    assert (info.value.code, info.value.category) == ("EACCES", "denied")
    assert [(a.pid, a.call) for a in audited] == [(99, name)]  # the denial is an audit event


def _jsonable(args: dict[str, Any]) -> dict[str, Any]:
    return {k: {"$bytes": v.decode()} if isinstance(v, bytes) else v for k, v in args.items()}


CALLS_EACH = '''
"""Calls each syscall named in argv (JSON [[name, args], ...]) and reports what happened."""
import json

from agentos import sdk
from agentos.abi.traps import trap
from agentos.errors import AgentOSError


async def main(spec):
    out = []
    for name, args in json.loads(spec):
        args = {k: v["$bytes"].encode() if isinstance(v, dict) and "$bytes" in v else v for k, v in args.items()}
        try:
            result = await trap(name, args)
        except AgentOSError as e:
            out.append([name, "err", type(e).__name__, e.code, e.category])
        else:
            out.append([name, "ok", repr(result)[:40]])
    await sdk.write_console(json.dumps(out) + "\\n")
    return 0
'''


def test_an_agent_is_denied_every_admin_syscall(kernel: KernelProcess, agent_file: Any) -> None:
    admin = sorted(name for name, row in SYSCALLS.items() if row.resource == ADMIN)
    spec = [[name, _jsonable(minimal_args(SYSCALLS[name].schema))] for name in admin] + [["getpid", {}]]
    path = agent_file(CALLS_EACH, "calls_each.py")
    with kernel.client() as c:
        os_pid = c.call("status")["os_pid"]
        pid = c.call("spawn", target=path, argv=[json.dumps(spec)])
        assert c.call("wait", pid=pid, timeout=20)["status"] == 0
        report = json.loads("".join(item["data"] for item in c.stream("logs", pid=pid)))
        assert report[:-1] == [[name, "err", "PermissionDenied", "EACCES", "denied"] for name in admin]
        assert report[-1] == ["getpid", "ok", str(pid)]  # the harness itself works
        # shutdown was refused: the same kernel still serves; and each denial is on the record
        status = c.call("status")
        assert status["os_pid"] == os_pid
        journal = [e["payload"] for e in c.stream("events", pid=pid, kind="sys.done", limit=1000)]
        denied = [d["call"] for d in journal if (d.get("error") or {}).get("code") == "EACCES"]
        assert denied == admin


def test_a_live_kernel_has_exactly_one_sqlite_library(kernel: KernelProcess) -> None:
    with kernel.client() as c:
        pids = [
            c.call("spawn", target="agentos.examples.family", argv=["2"]),
            c.call("spawn", target="agentos.examples.hello"),
        ]
        for pid in pids:
            assert c.call("wait", pid=pid, timeout=20)["status"] == 0
        assert len(list(c.stream("events", limit=10))) == 10  # the log read paths have run too
        status = c.call("status")
    assert status["sqlite_libraries"] == ["apsw"]
    # ... and, seen from outside the process, one library with SQLite in it is mapped: apsw's
    mapped = {line.split()[-1] for line in Path(f"/proc/{status['os_pid']}/maps").read_text().splitlines()}
    sqliteish = {m for m in mapped if "sqlite" in m.lower() or "apsw" in m.lower()}
    assert len(sqliteish) == 1 and "apsw" in next(iter(sqliteish)), sqliteish
