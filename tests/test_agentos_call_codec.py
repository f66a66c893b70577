"""agentos-call's own msgpack codec and what keeps it honest: the same bytes as msgpack-python both
ways (hypothesis, and every size boundary), its constants and bytes-argument table against the
kernel's, and that the file runs with the standard library alone (``python3 -S -I`` on a copy)."""

from __future__ import annotations

import ast
import math
import shutil
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos import param
from agentos.kernel.syscall import SYSCALLS
from agentos.user import agentos_call
from agentos.user.agentos_call import packb, unpackb

SCRIPT = Path(agentos_call.__file__)
ROOT = Path(__file__).resolve().parent.parent


def msgpack_values(width: int) -> st.SearchStrategy[Any]:
    """The ABI's types, nested; floats of ``width`` bits."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats(width=width)
        | st.text()
        | st.binary()
    )
    keys = st.text() | st.integers(min_value=-(2**63), max_value=2**63)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=20) | st.dictionaries(keys, inner, max_size=20),
        max_leaves=60,
    )


def reference(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def same(a: Any, b: Any) -> bool:
    """Equal as msgpack values (NaN equals NaN: compare their canonical bytes)."""
    return msgpack.packb(a, use_bin_type=True) == msgpack.packb(b, use_bin_type=True)


@settings(max_examples=200, deadline=None)
@given(msgpack_values(64))
def test_encoding_is_byte_for_byte_msgpack_python_and_decoding_agrees(value: Any) -> None:
    ours = packb(value)
    assert ours == msgpack.packb(value, use_bin_type=True)
    assert same(unpackb(ours), reference(ours))


@settings(max_examples=200, deadline=None)
@given(msgpack_values(32))
def test_it_decodes_what_msgpack_python_writes_with_single_floats(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True, use_single_float=True)
    assert same(unpackb(data), reference(data))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_decodes_as_msgpack_python_does_or_is_a_value_error(data: bytes) -> None:
    try:
        expected = reference(data)
    except Exception:  # msgpack-python refuses it: so must we, with ValueError only
        with pytest.raises(ValueError):
            unpackb(data)
        return
    if "ExtType" in repr(expected) or "Timestamp" in repr(expected):
        with pytest.raises(ValueError, match="not used by the ABI"):
            unpackb(data)  # the ABI has no ext types: refused, not misread
    else:
        assert same(unpackb(data), expected)


@pytest.mark.parametrize("n", [0, 15, 16, 31, 32, 255, 256, 65535, 65536])
def test_every_length_boundary_matches(n: int) -> None:
    for value in (
        "é" * (n // 2) + "a" * (n % 2),
        "a" * n,
        b"\x00" * n,
        [None] * n,
        {str(i): i for i in range(n)},
    ):
        data = msgpack.packb(value, use_bin_type=True)
        assert packb(value) == data
        assert unpackb(data) == value


@pytest.mark.parametrize(
    "n", [127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -32, -33, -128, -129, -(2**63)]
)
def test_every_int_boundary_matches(n: int) -> None:
    assert packb(n) == msgpack.packb(n) and unpackb(packb(n)) == n


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(OverflowError):
        packb(2**64)
    with pytest.raises(OverflowError):
        packb(-(2**63) - 1)
    with pytest.raises(TypeError):
        packb({1, 2})
    assert math.isnan(unpackb(packb(float("nan"))))


def test_the_constants_are_the_kernels() -> None:
    assert agentos_call.ABI_VERSION == param.ABI_VERSION
    assert agentos_call.MAX_FRAME_BYTES == param.MAX_FRAME_BYTES


def _is_bytes(tp: Any) -> bool:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp is bytes or bytes in typing.get_args(tp)


def test_the_bytes_arguments_are_every_top_level_bytes_field_of_the_syscall_schemas() -> None:
    found: dict[str, set[str]] = {}
    for name, row in SYSCALLS.items():
        hints = typing.get_type_hints(row.schema, include_extras=True)
        fields = {f for f, tp in hints.items() if _is_bytes(tp)}
        if fields:
            found[name] = fields
    assert found == {k: set(v) for k, v in agentos_call.BYTES_ARGS.items()}


def test_the_file_imports_the_standard_library_only() -> None:
    tree = ast.parse(SCRIPT.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules - {"__future__"} <= sys.stdlib_module_names, modules - sys.stdlib_module_names


def test_a_copy_runs_without_site_packages(tmp_path: Path) -> None:
    copy = tmp_path / "agentos-call"
    shutil.copy(SCRIPT, copy)
    for argv, out in ((["--version"], f"agentos-call (ABI {param.ABI_VERSION})"), (["--help"], "exit: 0 ok")):
        done = subprocess.run(
            [sys.executable, "-S", "-I", str(copy), *argv], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0 and out in done.stdout, done.stderr
    # with no kernel on its home: the connection error, typed, exit 3
    done = subprocess.run(
        [sys.executable, "-S", "-I", str(copy), "getpid", "--home", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3 and done.stderr.startswith("agentos-call: ECONNREFUSED: no kernel is running")


def test_agentos_call_is_a_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["agentos-call"] == "agentos.user.agentos_call:main"
