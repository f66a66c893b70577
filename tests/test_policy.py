"""Policy files: the default parses, a full example reads back exactly, and every kind of mistake is
a PolicyError naming the file and line, never a silent allow (or a crash) whatever the text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos.caps.policy import (
    DEFAULT_POLICY_TOML,
    QUOTA_NAMES,
    CapSpec,
    Policy,
    PolicyError,
    default_policy,
    load_policy,
    parse_duration,
    parse_policy,
)
from agentos.errors import InvalidArgument

FULL = """\
# agents started from the CLI (agentos run) get these
[agent]
opaque = true

[[agent.caps]]
resource = "sys:proc"
rights = ["self", "wait", "spawn", "list"]
expires_in = "1h"
depth = 1
max_uses = 100

[[agent.caps]]
resource = "fs:/data/./x/../y"
rights = [
  "read",   # a comment
  "write",
]
expires_in = 90

[agent.quotas]
syscalls_per_second = 1000
spawns = 64
live_processes = 32
console_bytes = 10_000_000
file_bytes = 100_000_000
stored_bytes = 100_000_000
files = 100_000
memory_bytes = 268_435_456
cpu_seconds = 600
llm_tokens_in = 1_000_000
llm_tokens_out = 200_000
llm_spend_usd = 5.0
"""


def error_of(text: str, source: str = "p.toml") -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source)
    return info.value


def line_of(text: str) -> int:
    err = error_of(text)
    assert err.message.startswith(f"p.toml:{err.line}: ")
    return err.line


def test_the_default_policy_has_the_documented_caps_and_quotas() -> None:
    policy = default_policy()
    assert policy.source == "built-in default"
    assert policy.opaque is False
    assert {cap.resource: cap.rights for cap in policy.agent_caps} == {
        "sys:proc": ("list", "self", "spawn", "wait"),
        "sys:time": ("read",),
        "sys:random": ("read",),
        "sys:console": ("write",),
        "sys:cap": ("delegate", "list", "request", "revoke"),
        "proc:children": ("signal",),
        "sys:fd": ("use",),
        "fs:/shared": ("list", "read", "write"),
        "fs:/tmp": ("list", "read", "write"),
        "fs:/proc": ("list", "read"),
        "fs:/dev": ("list",),
        **{
            f"fs:/dev/{dev}": ("read", "write")
            for dev in ("null", "zero", "random", "urandom", "console", "tty")
        },
    }
    assert all(
        cap.depth == 0 and cap.expires_in is None and cap.max_uses is None for cap in policy.agent_caps
    )
    assert policy.agent_quotas == {
        "spawns": 10_000,
        "live_processes": 64,
        "console_bytes": 1_000_000_000,
        "stored_bytes": 1_000_000_000,
        "files": 1_000_000,
        "memory_bytes": 1_073_741_824,
    }
    assert not any(name.startswith("llm_") for name in policy.agent_quotas)
    assert parse_policy(DEFAULT_POLICY_TOML, "built-in default") == policy


def test_a_full_policy_parses_to_exact_values(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(FULL)
    policy = load_policy(path)
    assert policy == Policy(
        source=str(path),
        agent_caps=(
            CapSpec("sys:proc", ("list", "self", "spawn", "wait"), expires_in=3600.0, depth=1, max_uses=100),
            CapSpec("fs:/data/y", ("read", "write"), expires_in=90.0),
        ),
        agent_quotas={
            "syscalls_per_second": 1000,
            "spawns": 64,
            "live_processes": 32,
            "console_bytes": 10_000_000,
            "file_bytes": 100_000_000,
            "stored_bytes": 100_000_000,
            "files": 100_000,
            "memory_bytes": 268_435_456,
            "cpu_seconds": 600.0,
            "llm_tokens_in": 1_000_000,
            "llm_tokens_out": 200_000,
            "llm_spend_usd": 5.0,
        },
        opaque=True,
    )
    assert set(policy.agent_quotas) == QUOTA_NAMES
    assert len(QUOTA_NAMES) == 12
    assert isinstance(policy.agent_quotas["spawns"], int)
    hash(policy)  # frozen and hashable despite the quotas dict


@pytest.mark.parametrize("text", ["", "# nothing\n", "[agent]\n", "[agent]\ncaps = []\n[agent.quotas]\n"])
def test_no_agent_table_or_an_empty_one_means_no_caps_and_no_quotas(text: str) -> None:
    assert parse_policy(text, "p.toml") == Policy("p.toml", (), {}, False)


def test_the_inline_and_dotted_forms_mean_the_same() -> None:
    text = """\
agent.opaque = true
agent.caps = [{ resource = "sys:time", rights = ["read"], expires_in = "30m" }]
agent.quotas = { spawns = 3, llm_spend_usd = 1 }
"""
    assert parse_policy(text, "p.toml") == Policy(
        "p.toml",
        (CapSpec("sys:time", ("read",), expires_in=1800.0),),
        {"spawns": 3, "llm_spend_usd": 1.0},
        True,
    )


def test_policy_error_is_an_invalid_argument_naming_file_and_line() -> None:
    err = error_of("[agent]\nopaque = 1\n", source="/etc/aos/policy.toml")
    assert isinstance(err, InvalidArgument)
    assert (err.code, err.category) == ("EINVAL", "invalid")
    assert (err.source, err.line) == ("/etc/aos/policy.toml", 2)
    assert err.message.startswith("/etc/aos/policy.toml:2: ")
    assert "agent.opaque" in err.message
    assert PolicyError.default_code == "EINVAL"


# Each case: a policy with one mistake, and the line it is on.
BAD = {
    "syntax error": ("[agent]\nopaque = false\n\n[[agent.caps]\nresource = 'x'\n", 4),
    "syntax error in a value": ('[agent]\n[[agent.caps]]\nresource = "sys:time"\nrights = [read]\n', 4),
    "unterminated array at the end": ("[agent]\n[[agent.caps]]\nrights = [\n", 3),
    "duplicate key": ("[agent]\nopaque = true\nopaque = false\n", 3),
    "unknown key in a cap": (
        '[agent]\n[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\n\n'
        '[[agent.caps]]\nresource = "sys:time"\n# the typo:\nright = ["read"]\n',
        9,
    ),
    "bad pattern": (
        '[agent]\n[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\n'
        '[[agent.caps]]\nrights = ["read"]\nresource = "fs:relative/path"\n',
        7,
    ),
    "resource not a string": ('[[agent.caps]]\nresource = 5\nrights = ["read"]\n', 2),
    "bad right": ('[[agent.caps]]\nresource = "sys:time"\nrights = ["Read"]\n', 3),
    "empty rights": ('[[agent.caps]]\nresource = "sys:time"\nrights = []\n', 3),
    "rights not an array": ('[[agent.caps]]\nresource = "sys:time"\nrights = "read"\n', 3),
    "missing rights": ('[agent]\nopaque = false\n[[agent.caps]]\nresource = "sys:time"\n', 3),
    "bad duration": (
        '[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\n  expires_in = "1 hour"\n',
        4,
    ),
    "zero duration": ('[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\nexpires_in = 0\n', 4),
    "depth too big": ('[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\ndepth = 17\n', 4),
    "depth a bool": ('[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\ndepth = true\n', 4),
    "max_uses zero": ('[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\nmax_uses = 0\n', 4),
    "bool quota": ("[agent]\n\n[agent.quotas]\nspawns = 1\nlive_processes = true\n", 5),
    "bool float quota": ("[agent.quotas]\ncpu_seconds = false\n", 2),
    "negative quota": ("[agent.quotas]\nspawns = 4\nconsole_bytes = -1\n", 3),
    "negative float quota": ("[agent.quotas]\n\n\nllm_spend_usd = -0.5\n", 4),
    "infinite float quota": ("[agent.quotas]\ncpu_seconds = inf\n", 2),
    "float for an integer quota": ("[agent.quotas]\nspawns = 1.5\n", 2),
    "string quota": ("[agent.quotas]\nspawns = '10'\n", 2),
    "unknown quota name": ("[agent.quotas]\nspawns = 1\nspwans = 2\n", 3),
    "unknown top-level table": ("[agent]\nopaque = false\n\n[agents]\nopaque = true\n", 4),
    "unknown top-level key": ("# hi\nversion = 1\n[agent]\n", 2),
    "unknown key in agent": ("[agent]\nopaque = false\ncapabilities = []\n", 3),
    "unknown sub-table of agent": ("[agent]\n[agent.quota]\nspawns = 1\n", 2),
    "opaque not a bool": ("[agent]\nopaque = 'yes'\n", 2),
    "agent not a table": ("# x\nagent = 1\n", 2),
    "caps a table": ("[agent]\n[agent.caps]\nresource = 'sys:time'\n", 2),
    "quotas not a table": ("[agent]\nquotas = 5\n", 2),
    "dotted key in a cap": ('[[agent.caps]]\nresource = "sys:time"\nrights = ["read"]\nlimits.x = 1\n', 4),
    "inline quota table": ("[agent]\nopaque = false\nquotas = { spawns = -1 }\n", 3),
    "inline cap": ('[agent]\ncaps = [\n  { resource = "sys:x", rights = [] },\n]\n', 2),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_mistake_names_its_line(case: str) -> None:
    text, line = BAD[case]
    assert line_of(text) == line, error_of(text).message


def test_keys_inside_multiline_values_and_comments_do_not_fool_the_locator() -> None:
    text = """\
[[agent.caps]]
resource = "sys:time"
rights = [
  "read",  # depth = 99
  "write", { depth = 99 },
]
# depth = 3
depth = 99
"""
    assert line_of(text) == 3  # a table is no right
    text = text.replace(", { depth = 99 }", "")
    assert line_of(text) == 8
    text = "\n".join(
        [
            "[[agent.caps]]",
            'resource = """',
            "bogus = 1",
            '"""',
            "rights = ['''",
            "[agent.quotas]",
            "bogus = 3",
            "''']",
            "bogus = 2",
        ]
    )
    assert line_of(text) == 9  # unknown keys are checked first, in document order
    text = """\
[[agent.caps]]
resource = "sys:time"
rights = ["read"]
[[agent.caps]]
resource = "sys:time"
rights = ["read"]
[[ agent . caps ]]
'resource' = "sys:time"
"rights" = ["read"]
"depth" = -1
"""
    assert line_of(text) == 10


def test_the_messages_say_what_is_wrong() -> None:
    assert "spwans" in error_of("[agent.quotas]\nspwans = 1\n").message
    assert "right" in error_of('[[agent.caps]]\nresource = "sys:x"\nright = ["a"]\n').message
    assert "boolean" in error_of("[agent.quotas]\nspawns = true\n").message
    assert (
        "'1 hour'"
        in error_of('[[agent.caps]]\nresource = "sys:x"\nrights = ["a"]\nexpires_in = "1 hour"\n').message
    )
    assert "(column " in error_of("[agent\n").message


def test_a_missing_file_is_a_policy_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    assert info.value.message.startswith(f"{missing}:0: ")
    with pytest.raises(PolicyError) as info:
        load_policy(str(tmp_path))  # a directory
    assert info.value.message.startswith(f"{tmp_path}:0: ")


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b"[agent]\nopaque = false\n# caf\xe9\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.message.startswith(f"{path}:3: ")


def test_absurd_toml_is_a_policy_error_not_a_crash() -> None:
    assert error_of("a = " + "[" * 5000).line == 1
    assert error_of("# x\nagent = " + "1" * 5000 + "\n").line == 2


DURATIONS = [
    ("90s", 90.0),
    ("30m", 1800.0),
    ("1h", 3600.0),
    ("2d", 172800.0),
    ("1h30m", 5400.0),
    ("1d2h3m4s", 93784.0),
    ("1.5h", 5400.0),
    ("0.5s", 0.5),
    ("90", 90.0),
    (" 10m ", 600.0),
    (90, 90.0),
    (1.5, 1.5),
    ("3650d", 3650 * 86400.0),
]
BAD_DURATIONS: list[object] = [
    "",
    "   ",
    "0",
    "0s",
    "0h0m",
    "-5s",
    "-5",
    0,
    -1,
    -0.5,
    math.inf,
    math.nan,
    "inf",
    "nan",
    "1 hour",
    "1H",
    "30m1h",
    "1h1h",
    "h",
    "1.h",
    ".5h",
    "1e3",
    "5y",
    "3651d",
    "11000d",
    10**400,
    "9" * 400,
    True,
    None,
    ["1h"],
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_durations(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", BAD_DURATIONS, ids=repr)
def test_bad_durations_are_refused_quoting_the_value(text: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_duration(text)  # type: ignore[arg-type]
    assert info.value.message.startswith("bad duration ")
    assert (repr(text[:64]) if isinstance(text, str) else repr(text)[:64]) in info.value.message


def test_a_long_bad_duration_is_quoted_truncated() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_duration("x" * 1000)
    assert repr("x" * 64) in info.value.message
    assert "x" * 65 not in info.value.message


LINES = [
    "[agent]",
    "[agent.quotas]",
    "[[agent.caps]]",
    "[agent.caps]",
    "[other]",
    "opaque = true",
    "opaque = 1",
    'resource = "sys:time"',
    'resource = "fs:/a/../b"',
    "resource = 'Bad:x'",
    'rights = ["read", "write"]',
    "rights = []",
    'rights = ["*"]',
    'expires_in = "1h30m"',
    "expires_in = -3",
    "depth = 2",
    "depth = true",
    "max_uses = 0",
    "spawns = 10",
    "cpu_seconds = 1.5",
    "llm_spend_usd = nan",
    "caps = []",
    'caps = [{ resource = "sys:time", rights = ["read"] }]',
    "quotas = { spawns = 1 }",
    "agent.opaque = false",
    'rights = [\n  "read",\n]',
    'resource = """\nsys:time"""',
    "# comment",
    "",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LINES) | st.text(max_size=12), max_size=12))
def test_any_text_is_a_policy_or_a_policy_error(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        policy = parse_policy(text, "fuzz.toml")
    except PolicyError as e:
        assert e.message.startswith("fuzz.toml:")
        assert 1 <= e.line <= max(text.count("\n") + 1, 1)
    else:
        assert isinstance(policy, Policy)
        assert set(policy.agent_quotas) <= QUOTA_NAMES
        assert all(cap.rights for cap in policy.agent_caps)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text_is_a_policy_or_a_policy_error(text: str) -> None:
    try:
        assert isinstance(parse_policy(text, "fuzz.toml"), Policy)
    except PolicyError as e:
        assert e.message.startswith("fuzz.toml:")
