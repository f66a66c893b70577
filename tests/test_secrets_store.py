"""The secret store on a real directory: permissions, atomic writes, name rules, and no value in any error."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.errors import AgentOSError, InvalidArgument, NotFound, SecurityViolation
from agentos.store.secrets import MAX_SECRET_BYTES, SecretStore

VALUE = b"s3cr3t-VALUE-9f1c"
BAD_NAMES = [
    "../x",
    ".hidden",
    "a/b",
    "",
    "a" * 65,
    "/etc/passwd",
    "..",
    ".",
    "1abc",
    "-x",
    "a\nb",
    "é",
    "a\x00b",
]


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aos-sec-") as d:
        yield Path(d)


@pytest.fixture
def store(tmp: Path) -> SecretStore:
    return SecretStore(tmp / "secrets")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)


def assert_no_value(err: BaseException) -> None:
    for text in (str(err), repr(err), getattr(err, "message", "")):
        assert VALUE.decode() not in text
        assert "s3cr3t" not in text


def test_round_trip(store: SecretStore) -> None:
    info = store.set("API_KEY", VALUE)
    assert info["name"] == "API_KEY" and info["size"] == len(VALUE) and info["updated_ns"] > 0
    assert set(info) == {"name", "size", "updated_ns"}
    assert store.get("API_KEY") == VALUE
    assert store.exists("API_KEY") and not store.exists("OTHER")
    store.set("API_KEY", b"\x00\xffnew")  # replacing works, binary values too
    assert store.get("API_KEY") == b"\x00\xffnew"
    store.remove("API_KEY")
    assert not store.exists("API_KEY")
    assert store.list() == []


def test_directory_and_files_are_private(tmp: Path, store: SecretStore) -> None:
    assert mode(tmp / "secrets") == 0o700
    old = os.umask(0o000)  # a permissive umask must not loosen anything
    try:
        store.set("token", VALUE)
    finally:
        os.umask(old)
    assert mode(tmp / "secrets" / "token") == 0o600
    assert (tmp / "secrets" / "token").read_bytes() == VALUE  # plain 0600 files, as documented


def test_loose_directory_permissions_are_tightened(tmp: Path) -> None:
    d = tmp / "secrets"
    d.mkdir()
    os.chmod(d, 0o755)
    store = SecretStore(d)
    assert mode(d) == 0o700
    os.chmod(d, 0o777)  # loosened behind the store's back: the next operation fixes it
    store.set("x", VALUE)
    assert mode(d) == 0o700


def test_parents_are_created(tmp: Path) -> None:
    store = SecretStore(tmp / "home" / "secrets")
    store.set("x", VALUE)
    assert store.get("x") == VALUE


def test_atomic_replace_leaves_no_temp_files(tmp: Path, store: SecretStore) -> None:
    for i in range(20):
        store.set("k", VALUE + str(i).encode())
    store.set("other", VALUE)
    assert sorted(os.listdir(tmp / "secrets")) == ["k", "other"]
    assert store.get("k") == VALUE + b"19"


def test_temp_and_stray_files_are_ignored_by_list(tmp: Path, store: SecretStore) -> None:
    store.set("b", VALUE)
    (tmp / "secrets" / ".tmp-deadbeef").write_bytes(VALUE)
    (tmp / "secrets" / "subdir").mkdir()
    assert [item["name"] for item in store.list()] == ["b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected(tmp: Path, store: SecretStore, name: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: store.set(name, VALUE),
        lambda: store.get(name),
        lambda: store.remove(name),
        lambda: store.exists(name),
    ]
    for op in operations:
        with pytest.raises(InvalidArgument) as info:
            op()
        assert info.value.code == "EINVAL"
        assert repr(name[:64]) in info.value.message
        assert name[64:] == "" or repr(name) not in info.value.message  # truncated to 64
        assert_no_value(info.value)
    assert sorted(os.listdir(tmp)) == ["secrets"] and os.listdir(tmp / "secrets") == []


def test_a_non_string_name_is_rejected(store: SecretStore) -> None:
    with pytest.raises(InvalidArgument):
        store.set(b"bytes-name", VALUE)  # type: ignore[arg-type]


def test_names_at_the_limits_are_accepted(store: SecretStore) -> None:
    for name in ("a", "_", "A" * 64, "a.b-c_d", "x..y"):
        store.set(name, VALUE)
        assert store.get(name) == VALUE


def test_values_are_bounded(store: SecretStore) -> None:
    store.set("max", b"x" * MAX_SECRET_BYTES)
    assert store.get("max") == b"x" * MAX_SECRET_BYTES
    with pytest.raises(InvalidArgument) as info:
        store.set("big", VALUE * (MAX_SECRET_BYTES // len(VALUE) + 1))
    assert info.value.code == "E2BIG"
    assert_no_value(info.value)
    with pytest.raises(InvalidArgument) as info:
        store.set("empty", b"")
    with pytest.raises(InvalidArgument) as info:
        store.set("text", VALUE.decode())  # type: ignore[arg-type]
    assert_no_value(info.value)
    assert not store.exists("big") and not store.exists("empty") and not store.exists("text")


def test_missing_secrets_are_not_found(store: SecretStore) -> None:
    store.set("present", VALUE)
    for op in (lambda: store.get("absent"), lambda: store.remove("absent")):
        with pytest.raises(NotFound) as info:
            op()
        assert info.value.code == "ENOENT"
        assert "'absent'" in info.value.message
        assert_no_value(info.value)
    store.remove("present")
    with pytest.raises(NotFound):
        store.remove("present")


def test_list_is_sorted_and_holds_no_values(store: SecretStore) -> None:
    for name in ("zeta", "Alpha", "_under", "beta"):
        store.set(name, VALUE + name.encode())
    items = store.list()
    assert [i["name"] for i in items] == sorted(["zeta", "Alpha", "_under", "beta"])
    for item in items:
        assert set(item) == {"name", "size", "updated_ns"}
        assert item["size"] == len(VALUE) + len(item["name"])
        assert isinstance(item["updated_ns"], int) and item["updated_ns"] > 0
    assert "s3cr3t" not in repr(items)


def test_symlinks_are_never_followed(tmp: Path, store: SecretStore) -> None:
    target = tmp / "outside"
    target.write_bytes(VALUE)
    os.symlink(target, tmp / "secrets" / "link")
    with pytest.raises(SecurityViolation) as info:
        store.get("link")
    assert_no_value(info.value)
    assert not store.exists("link") and [i["name"] for i in store.list()] == []
    store.set("link", b"replaced")  # the link itself is replaced; its target is untouched
    assert target.read_bytes() == VALUE and store.get("link") == b"replaced"
    # a symlinked store directory is refused too
    os.symlink(tmp / "secrets", tmp / "alias")
    with pytest.raises(SecurityViolation):
        SecretStore(tmp / "alias")


def test_no_error_ever_contains_the_value(tmp: Path, store: SecretStore) -> None:
    store.set("real", VALUE)
    errors: list[AgentOSError] = []
    provocations: list[Callable[[], object]] = [
        lambda: store.set("../escape", VALUE),
        lambda: store.set("big", VALUE * 5000),
        lambda: store.set("empty", b""),
        lambda: store.set("str", VALUE.decode()),  # type: ignore[arg-type]
        lambda: store.get("missing"),
        lambda: store.remove("missing"),
    ]
    # a non-regular entry, a file over the limit planted out of band, and an unwritable store
    (tmp / "secrets" / "adir").mkdir()
    provocations.append(lambda: store.get("adir"))
    provocations.append(lambda: store.remove("adir"))
    provocations.append(lambda: store.set("adir", VALUE))
    (tmp / "secrets" / "huge").write_bytes(VALUE * 5000)
    provocations.append(lambda: store.get("huge"))
    (tmp / "file").write_bytes(VALUE)
    provocations.append(lambda: SecretStore(tmp / "file"))
    for op in provocations:
        with pytest.raises(AgentOSError) as info:
            op()
        errors.append(info.value)
    assert len(errors) == len(provocations)
    for err in errors:
        assert_no_value(err)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=80), st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,70}", fullmatch=True)))
def test_any_name_either_works_or_is_refused_and_nothing_escapes(tmp: Path, name: str) -> None:
    d = tmp / "secrets"
    store = SecretStore(d)
    before = sorted(os.listdir(tmp))
    try:
        info = store.set(name, VALUE)
    except InvalidArgument as err:
        assert_no_value(err)
    else:
        assert info["name"] == name
        assert store.get(name) == VALUE
        assert (d / name).is_file() and (d / name).parent == d
        store.remove(name)
    assert sorted(os.listdir(tmp)) == before == ["secrets"]
    assert os.listdir(d) == []
