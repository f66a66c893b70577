"""Capability resource patterns and rights (``agentos.caps.pattern``): a derived capability must never widen.

The key property is the soundness of attenuation: whenever ``subsumes(parent, child)`` holds, every
resource the child covers the parent covers too. Patterns and resources are drawn from a tiny grammar
(a few kinds, values over ``a``, ``b``, ``/``, ``.``, a trailing ``*``) so that prefixes, path-component
boundaries and trailing slashes collide often; table-driven cases pin what a person checks by hand.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentos.caps.pattern import (
    ANY,
    MAX_PATTERN,
    MAX_RIGHTS,
    covers,
    has_right,
    normalise,
    normalise_rights,
    rights_within,
    subsumes,
)
from agentos.errors import InvalidArgument

PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

KINDS = ("fs", "svc", "sys", "proc", "net", "secret")
HOLDER = 1
DESCENDANTS = frozenset({"7", "42"})  # what proc:children resolves to for HOLDER


def relative(holder: int, kind: str, keyword: str, value: str) -> bool:
    """The kernel's resolver for relative patterns: a fixed process tree."""
    assert (holder, kind, keyword) == (HOLDER, "proc", "children")
    return value in DESCENDANTS


def cov(pattern: str, resource: str) -> bool:
    return covers(pattern, resource, HOLDER, relative)


def try_normalise(pattern: str) -> str | None:
    try:
        return normalise(pattern)
    except InvalidArgument:
        return None


# -- the grammar ----------------------------------------------------------------------------------------

kinds = st.sampled_from(KINDS)
pattern_kinds = st.sampled_from(("fs", "svc", *KINDS))  # hierarchical kinds have the most to get wrong
# values built from a tiny alphabet, so prefixes, component boundaries and doubled slashes collide
values = st.builds(
    lambda body, tail: "".join(body) + tail,
    st.lists(st.sampled_from(("a", "b", "/", ".")), max_size=4),
    st.sampled_from(("", "", "/", "//")),
)
fs_values = st.one_of(values.map(lambda v: "/" + v), values)  # mostly absolute; the rest are rejected
proc_values = st.one_of(values, st.sampled_from(("1", "7", "42", "children", "child")))
star = st.booleans().map(lambda wild: "*" if wild else "")


@st.composite
def raw_patterns(draw: st.DrawFn) -> str:
    kind = draw(pattern_kinds)
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return ANY
    if shape == 1:
        return f"{kind}:*"
    if shape == 2:
        return kind  # a kind with no value
    if shape == 3:
        return "proc:children"
    value = draw({"fs": fs_values, "proc": proc_values}.get(kind, values))
    return f"{kind}:{value}{draw(star)}"


patterns = raw_patterns().map(try_normalise).filter(lambda p: p is not None)


def base_of(pattern: str) -> tuple[str, str]:
    """A pattern's kind and its value without a trailing '*'."""
    kind, _, value = pattern.partition(":")
    return kind, value[:-1] if value.endswith("*") else value


@st.composite
def narrower(draw: st.DrawFn, parent: str) -> str:
    """A pattern likely, but not certain, to be subsumed by ``parent``: its base plus a suffix."""
    shape = draw(st.integers(0, 4))
    if parent == ANY or shape == 0:
        return draw(patterns)
    kind, base = base_of(parent)
    suffix = "" if shape <= 2 else draw(values)  # the same base, with or without the '*', or longer
    child = try_normalise(f"{kind}:{base}{suffix}{draw(star)}")
    return child if child is not None else draw(patterns)


@st.composite
def resources(draw: st.DrawFn, near: str | None = None) -> str:
    """A concrete resource (not normalised), often just inside or just outside ``near``'s boundary."""
    if near is not None and near != ANY and draw(st.integers(0, 3)) > 0:
        kind, base = base_of(near)
        base = base[: len(base) - draw(st.integers(0, min(2, len(base))))]  # cut short: /ab -> /a, a// -> a/
        return f"{kind}:{base}{draw(values)}"
    kind = draw(kinds)
    if draw(st.integers(0, 9)) == 0:
        return kind
    value = draw(st.one_of(values, st.text(alphabet="ab/.*7", max_size=6), proc_values))
    return f"{kind}:{'/' + value if kind == 'fs' and draw(st.booleans()) else value}"


# -- 1. soundness of attenuation ------------------------------------------------------------------------


@settings(PROPS, max_examples=800)
@given(parent=patterns, data=st.data())
def test_attenuation_never_widens(parent: str, data: st.DataObject) -> None:
    child = data.draw(narrower(parent), label="child")
    resource = data.draw(resources(near=child), label="resource")
    if subsumes(parent, child) and cov(child, resource):
        assert cov(parent, resource), f"{parent!r} subsumes {child!r}, which covers {resource!r}"


def small_scope() -> dict[str, tuple[list[str], list[str]]]:
    """Per kind: every normalised pattern and every resource with a value of up to 3 (4) characters."""

    def words(n: int) -> list[str]:
        return ["".join(w) for k in range(n + 1) for w in itertools.product("a/.", repeat=k)]

    scope: dict[str, tuple[list[str], list[str]]] = {}
    for kind in KINDS:
        raw = [ANY, kind, f"{kind}:*", "proc:children"]
        raw += [f"{kind}:{pre}{w}{wild}" for pre in ("", "/") for w in words(3) for wild in ("", "*")]
        pats = sorted({p for p in map(try_normalise, raw) if p is not None})
        res = [kind] + [f"{kind}:{pre}{w}" for pre in ("", "/") for w in words(4)]
        res += [f"{kind}:{v}" for v in ("1", "7", "42", "children", "*", "a*")]
        scope[kind] = pats, res
    return scope


def test_attenuation_and_transitivity_in_the_small() -> None:
    """Exhaustively, over a small scope: subsumes implies covers-inclusion, and subsumes is transitive."""
    widenings: list[tuple[str, str, list[str]]] = []
    intransitive: list[tuple[str, str, list[str]]] = []
    for pats, res in small_scope().values():
        covered = {p: frozenset(r for r in res if cov(p, r)) for p in pats}
        below = {p: frozenset(c for c in pats if subsumes(p, c)) for p in pats}
        for parent in pats:
            assert parent in below[parent]
            for child in below[parent]:
                if not covered[child] <= covered[parent]:
                    widenings.append((parent, child, sorted(covered[child] - covered[parent])[:3]))
                if not below[child] <= below[parent]:
                    intransitive.append((parent, child, sorted(below[child] - below[parent])[:3]))
    assert not widenings, f"subsumes(parent, child) yet child covers more: {widenings[:10]}"
    assert not intransitive, f"subsumes(a, b), subsumes(b, c), not subsumes(a, c): {intransitive[:10]}"


# a hierarchical literal covers value.rstrip('/') + '/...': svc:a// covers svc:a/x, which svc:a//* does not
@pytest.mark.parametrize(
    ("parent", "child", "resource"), [("svc:a//*", "svc:a//", "svc:a/x"), ("svc://*", "svc://", "svc:/x")]
)
def test_attenuation_trailing_slashes(parent: str, child: str, resource: str) -> None:
    assert normalise(parent) == parent and normalise(child) == child
    if subsumes(parent, child) and cov(child, resource):
        assert cov(parent, resource)


# -- 2./3. transitivity and reflexivity ----------------------------------------------------------------


@settings(PROPS, max_examples=400)
@given(a=patterns, data=st.data())
def test_subsumes_is_transitive(a: str, data: st.DataObject) -> None:
    b = data.draw(narrower(a), label="b")
    c = data.draw(narrower(b), label="c")
    if subsumes(a, b) and subsumes(b, c):
        assert subsumes(a, c), f"{a!r} > {b!r} > {c!r}"


@settings(PROPS, max_examples=200)
@given(p=patterns)
def test_subsumes_is_reflexive(p: str) -> None:
    assert subsumes(p, p)


@settings(PROPS, max_examples=200)
@given(p=patterns, data=st.data())
def test_star_subsumes_and_covers_everything(p: str, data: st.DataObject) -> None:
    resource = data.draw(resources(near=p))
    assert subsumes(ANY, p) and cov(ANY, resource)
    assert subsumes(p, ANY) == (p == ANY)


# -- 4. rights ------------------------------------------------------------------------------------------

right_names = st.sampled_from(("read", "write", "spawn", "grant", "kill", ANY))
rights_sets = st.lists(right_names, min_size=1, max_size=6).map(normalise_rights)


@settings(PROPS, max_examples=300)
@given(child=rights_sets, parent=rights_sets, right=right_names)
def test_rights_never_widen(child: tuple[str, ...], parent: tuple[str, ...], right: str) -> None:
    if rights_within(child, parent) and has_right(child, right):
        assert has_right(parent, right)
    if rights_within(child, parent) and ANY in child:
        assert ANY in parent


@settings(PROPS, max_examples=200)
@given(raw=st.lists(right_names, min_size=1, max_size=6))
def test_normalise_rights_is_canonical(raw: list[str]) -> None:
    rights = normalise_rights(raw)
    assert rights == ((ANY,) if ANY in raw else tuple(sorted(set(raw))))
    assert normalise_rights(rights) == rights
    assert all(has_right(rights, r) for r in raw)


def test_rights_by_hand() -> None:
    assert has_right(("read",), "read") and not has_right(("read",), "write")
    assert has_right((ANY,), "write") and has_right((ANY,), ANY)
    assert not has_right(("read", "write"), ANY)  # holding every named right is not holding '*'
    assert rights_within(("read",), ("read", "write"))
    assert rights_within(("read", "write"), (ANY,))
    assert rights_within((ANY,), (ANY,))
    assert not rights_within((ANY,), ("read", "write"))
    assert not rights_within(("read", "grant"), ("read", "write"))


@pytest.mark.parametrize(
    "raw",
    [
        [],
        [""],
        ["Read"],
        ["re ad"],
        ["1read"],
        ["read*"],
        ["**"],
        ["a" * 33],
        [7],
        [f"r{i}" for i in range(MAX_RIGHTS + 1)],
    ],
)
def test_normalise_rights_rejects(raw: list[object]) -> None:
    with pytest.raises(InvalidArgument):
        normalise_rights(raw)  # type: ignore[arg-type]


def test_normalise_rights_accepts_and_collapses() -> None:
    assert normalise_rights([f"r{i}" for i in range(MAX_RIGHTS)]) == tuple(
        sorted(f"r{i}" for i in range(MAX_RIGHTS))
    )
    assert normalise_rights(["write", "read", "read"]) == ("read", "write")
    assert normalise_rights(["read", ANY, "write"]) == (ANY,)
    assert normalise_rights([ANY]) == (ANY,)
    assert normalise_rights(iter(["spawn"])) == ("spawn",)


# -- 5. by hand -----------------------------------------------------------------------------------------

COVERS = [
    ("fs:/data", "fs:/data", True),
    ("fs:/data", "fs:/data/x", True),
    ("fs:/data", "fs:/data/x/y", True),
    ("fs:/data", "fs:/database", False),
    ("fs:/data", "fs:/dat", False),
    ("fs:/data", "svc:/data", False),
    ("fs:/data/*", "fs:/data/x", True),
    ("fs:/data/*", "fs:/data", False),
    ("fs:/data*", "fs:/database", True),
    ("fs:/", "fs:/etc/passwd", True),
    ("fs:/*", "fs:/etc/passwd", True),
    ("fs:*", "fs:/etc/passwd", True),
    ("fs:*", "svc:db", False),
    ("svc:db", "svc:db/replica", True),
    ("svc:db", "svc:dbx", False),
    ("sys:*", "sys:proc", True),
    ("sys:proc", "sys:proc", True),
    ("sys:proc", "sys:procx", False),
    ("sys:proc", "sys:proc/x", False),  # sys is not hierarchical
    ("sys:proc", "proc:proc", False),
    ("secret:API*", "secret:API_KEY", True),
    ("secret:API*", "secret:api_key", False),
    ("secret:API_KEY", "secret:API_KEY2", False),
    ("net:127.0.0.1:8080", "net:127.0.0.1:8080", True),
    ("net:127.0.0.1:8080", "net:127.0.0.1:80", False),
    ("proc:42", "proc:42", True),
    ("proc:42", "proc:420", False),
    ("proc:children", "proc:7", True),
    ("proc:children", "proc:42", True),
    ("proc:children", "proc:1", False),  # the holder itself is not its own child
    ("proc:children", "proc:children", False),
    ("proc:*", "proc:1", True),
    ("admin", "admin", True),
    ("admin", "admin:x", False),
]


@pytest.mark.parametrize(("pattern", "resource", "expected"), COVERS)
def test_covers_by_hand(pattern: str, resource: str, expected: bool) -> None:
    assert normalise(pattern) == pattern
    assert cov(pattern, resource) is expected


@pytest.mark.parametrize("resource", ["fs:/etc/passwd", "svc:db", "sys:proc", "proc:1", "admin", "secret:K"])
def test_star_covers_everything(resource: str) -> None:
    assert cov(ANY, resource)
    assert covers(ANY, resource)  # no holder, no resolver


def test_relative_pattern_without_resolver_covers_nothing() -> None:
    assert not covers("proc:children", "proc:7")
    assert not covers("proc:children", "proc:7", HOLDER, None)


SUBSUMES = [
    ("*", "*", True),
    ("*", "fs:/data", True),
    ("fs:/data", "*", False),
    ("fs:*", "fs:/data", True),
    ("fs:/data", "fs:*", False),
    ("fs:/data", "fs:/data", True),
    ("fs:/data", "fs:/data/x", True),
    ("fs:/data", "fs:/data/*", True),
    ("fs:/data", "fs:/data/x*", True),
    ("fs:/data", "fs:/data*", False),  # /data* covers /database
    ("fs:/data", "fs:/database", False),
    ("fs:/data", "fs:/dat", False),
    ("fs:/data", "fs:/", False),
    ("fs:/data", "fs:/*", False),
    ("fs:/data/*", "fs:/data", False),  # /data itself
    ("fs:/data/*", "fs:/data/x", True),
    ("fs:/data*", "fs:/data", True),
    ("fs:/data*", "fs:/database/x", True),
    ("fs:/", "fs:/data", True),
    ("fs:/*", "fs:/data", True),
    ("fs:/*", "fs:/", True),
    ("sys:*", "sys:proc", True),
    ("sys:proc", "sys:proc", True),
    ("sys:proc", "sys:procx", False),
    ("sys:proc", "sys:proc*", False),
    ("sys:proc*", "sys:proc", True),
    ("sys:proc*", "sys:procx*", True),
    ("sys:procx*", "sys:proc*", False),
    ("sys:proc", "svc:proc", False),
    ("secret:API*", "secret:API_KEY", True),
    ("secret:API_KEY", "secret:API*", False),
    ("proc:children", "proc:children", True),
    ("proc:children", "proc:7", False),  # only the kernel knows whether 7 is a child
    ("proc:children", "proc:*", False),
    ("proc:children", "proc:child*", False),
    ("proc:child*", "proc:children", False),  # the relative keyword is not the literal value
    ("proc:c*", "proc:children", False),
    ("proc:7", "proc:children", False),
    ("proc:*", "proc:children", True),
    ("*", "proc:children", True),
    ("svc:db", "svc:db/replica", True),
    ("svc:db", "svc:dbx", False),
    ("svc:db*", "svc:db", True),
]


@pytest.mark.parametrize(("parent", "child", "expected"), SUBSUMES)
def test_subsumes_by_hand(parent: str, child: str, expected: bool) -> None:
    assert normalise(parent) == parent and normalise(child) == child
    assert subsumes(parent, child) is expected


NORMALISE = [
    ("*", "*"),
    ("fs:/a/../b/./c", "fs:/b/c"),
    ("fs:/a/b/", "fs:/a/b"),
    ("fs://a//b", "fs:/a/b"),
    ("fs:/..", "fs:/"),
    ("fs:/", "fs:/"),
    ("fs:/a/*", "fs:/a/*"),
    ("fs:/a//*", "fs:/a/*"),
    ("fs:/a/b/../*", "fs:/a/*"),
    ("fs:/*", "fs:/*"),
    ("fs:*", "fs:*"),
    ("sys:proc", "sys:proc"),
    ("svc:db", "svc:db"),
    ("secret:API*", "secret:API*"),
    ("net:127.0.0.1:8080", "net:127.0.0.1:8080"),
    ("admin", "admin"),
    ("proc:children", "proc:children"),
    ("a" * 16 + ":x", "a" * 16 + ":x"),
    ("fs:/" + "a" * (MAX_PATTERN - 4), "fs:/" + "a" * (MAX_PATTERN - 4)),  # exactly 512
]


@pytest.mark.parametrize(("raw", "expected"), NORMALISE)
def test_normalise_by_hand(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "fs:relative",
        "fs:relative*",
        "fs:**",
        "BAD:x",
        "Fs:/a",
        ":x",
        "1fs:/a",
        "a" * 17 + ":x",
        "fs:/a\nb",
        "sys:proc\x00",
        "secret:K\x7f",
        "\t",
        "fs:/" + "a" * (MAX_PATTERN - 3),  # 513 characters
        "x" * (MAX_PATTERN + 1),
        None,
        42,
    ],
)
def test_normalise_rejects(raw: object) -> None:
    with pytest.raises(InvalidArgument):
        normalise(raw)  # type: ignore[arg-type]


# normalise must not change what a pattern means beyond resolving '.', '..' and '//' in its directories:
# a wildcard's last, partial name is a prefix ('/data/.*' = dot-files in /data), and a literal never
# turns into a wildcard ('/data/*/.' is the directory named '*', not everything in /data).
@pytest.mark.parametrize(
    ("raw", "outside"),
    [
        ("fs:/data/.*", "fs:/database"),
        ("fs:/data/..*", "fs:/etc/passwd"),
        ("fs:/.*", "fs:/etc/passwd"),
        ("fs:/data/*/.", "fs:/data/x"),
        ("fs:/*/.", "fs:/etc/passwd"),
    ],
)
def test_normalise_never_widens(raw: str, outside: str) -> None:
    norm = try_normalise(raw)
    assert norm is None or not cov(norm, outside), f"{raw!r} -> {norm!r} covers {outside!r}"


names = st.text(alphabet="ab.", min_size=1, max_size=3).filter(lambda n: n not in (".", ".."))


@settings(PROPS, max_examples=200)
@given(
    dirs=st.lists(names, max_size=3),
    last=st.text(alphabet="ab.", max_size=3),
    wild=st.booleans(),
    data=st.data(),
)
def test_normalise_keeps_clean_fs_patterns(
    dirs: list[str], last: str, wild: bool, data: st.DataObject
) -> None:
    """A path with nothing to resolve in it covers, normalised, exactly what it covered as written."""
    if not wild and last in ("", ".", ".."):
        last = "a"
    raw = "fs:/" + "/".join([*dirs, last]) + ("*" if wild else "")
    norm = normalise(raw)
    resource = data.draw(resources(near=raw))
    assert cov(norm, resource) == cov(raw, resource), f"{raw!r} -> {norm!r} on {resource!r}"


# -- 6. fuzz --------------------------------------------------------------------------------------------

pattern_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k}:{v}", st.sampled_from(KINDS), st.text(alphabet="ab/.*:\n ", max_size=12)),
    st.builds(lambda v: f"fs:/{v}", st.text(alphabet="ab/.*", max_size=12)),
    st.text(alphabet="a:/*", min_size=MAX_PATTERN - 2, max_size=MAX_PATTERN + 2),
)


@settings(PROPS, max_examples=600)
@given(raw=pattern_text)
@example(raw="fs:/a/*/.")
@example(raw="fs:/a/.*")
@example(raw="fs://*")
def test_normalise_fuzz(raw: str) -> None:
    try:
        norm = normalise(raw)
    except InvalidArgument:
        return
    assert isinstance(norm, str) and 0 < len(norm) <= MAX_PATTERN
    assert normalise(norm) == norm
    assert subsumes(norm, norm)
    if not raw.endswith("*"):
        assert not norm.endswith("*"), f"the literal {raw!r} became the wildcard {norm!r}"
