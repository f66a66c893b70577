"""Policy files: the default capabilities and quotas of agents started from the CLI.

The kernel loads a policy at boot (``agentos boot --policy FILE``, else the home's ``policy.toml``
if present, else :data:`DEFAULT_POLICY_TOML`). A policy is TOML::

    # agents started from the CLI (agentos run) get these
    [agent]
    opaque = false            # optional: true = the agent cannot list its own capabilities

    [[agent.caps]]
    resource = "sys:proc"     # a resource pattern (see agentos.caps.pattern)
    rights = ["self", "wait", "spawn", "list"]   # 1 to 16 rights, "*" for all
    expires_in = "1h"         # optional duration (see parse_duration)
    depth = 1                 # optional: further delegations allowed, int 0..16 (default 0)
    max_uses = 100            # optional positive int: how many calls it may authorise

    [agent.quotas]            # limits of each CLI-started agent's resource group (all optional)
    syscalls_per_second = 1000
    spawns = 64               # total spawns over the group's life
    live_processes = 32
    console_bytes = 10_000_000
    file_bytes = 100_000_000
    stored_bytes = 100_000_000
    files = 100_000           # files, directories and symlinks its processes created that exist now
    memory_bytes = 268_435_456
    cpu_seconds = 600         # int or float
    llm_tokens_in = 1_000_000
    llm_tokens_out = 200_000
    llm_spend_usd = 5.0       # int or float

A file without an ``[agent]`` table is valid: no capabilities, no quotas. Everything else is strict,
because a policy that is silently misread grants the wrong things: an unknown table or key (a typo
such as ``right = [...]``), a wrong type (``true`` where a number belongs, though Python's bool is an
int), a bad pattern, right or duration, an empty ``rights`` list or a negative quota are all a
:class:`PolicyError` whose message starts ``FILE:LINE:``. tomllib reports no positions for valid
TOML, so the line of an offending key is found by a small scan of the text (:mod:`agentos.caps.tomlpos`);
for forms it cannot follow (inline tables, say) it names the nearest enclosing key or header.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentos.caps import pattern
from agentos.caps.tomlpos import KeyPath, locate
from agentos.errors import InvalidArgument

QUOTA_NAMES: frozenset[str] = frozenset(
    {
        "syscalls_per_second",
        "spawns",
        "live_processes",
        "console_bytes",
        "file_bytes",
        "stored_bytes",
        "files",
        "memory_bytes",
        "cpu_seconds",
        "llm_tokens_in",
        "llm_tokens_out",
        "llm_spend_usd",
    }
)
FLOAT_QUOTAS: frozenset[str] = frozenset({"cpu_seconds", "llm_spend_usd"})  # the rest are integers
MAX_INT = 2**63 - 1  # what SQLite and msgpack can carry
MAX_DEPTH = 16
MAX_CAPS = 256
MAX_DURATION = 10 * 365 * 86400.0  # ten 365-day years: anything longer is a typo, not a policy
MAX_POLICY_BYTES = 1 << 20
BUILT_IN = "built-in default"

AGENT_KEYS = frozenset({"opaque", "caps", "quotas"})
CAP_KEYS = frozenset({"resource", "rights", "expires_in", "depth", "max_uses"})

DEFAULT_POLICY_TOML = """\
# The built-in policy: what an agent started from the CLI (agentos run) may do by default.
[agent]
opaque = false

[[agent.caps]]
resource = "sys:proc"
rights = ["self", "wait", "spawn", "list"]

[[agent.caps]]
resource = "sys:time"
rights = ["read"]

[[agent.caps]]
resource = "sys:random"
rights = ["read"]

[[agent.caps]]
resource = "sys:console"
rights = ["write"]

[[agent.caps]]
resource = "sys:cap"
rights = ["list", "delegate", "revoke", "request"]

[[agent.caps]]
resource = "proc:children"
rights = ["signal"]

# files: fds (each then held to the mode it was opened with), the shared scratch directory,
# the agent's private /tmp, /proc (what ps and cap_list show) and the harmless devices
[[agent.caps]]
resource = "sys:fd"
rights = ["use"]

[[agent.caps]]
resource = "fs:/shared"
rights = ["read", "write", "list"]

[[agent.caps]]
resource = "fs:/tmp"
rights = ["read", "write", "list"]

[[agent.caps]]
resource = "fs:/proc"
rights = ["read", "list"]

[[agent.caps]]
resource = "fs:/dev"
rights = ["list"]

[[agent.caps]]
resource = "fs:/dev/null"
rights = ["read", "write"]

[[agent.caps]]
resource = "fs:/dev/zero"
rights = ["read", "write"]

[[agent.caps]]
resource = "fs:/dev/random"
rights = ["read", "write"]

[[agent.caps]]
resource = "fs:/dev/urandom"
rights = ["read", "write"]

[[agent.caps]]
resource = "fs:/dev/console"
rights = ["read", "write"]

[[agent.caps]]
resource = "fs:/dev/tty"
rights = ["read", "write"]

# Guards against a runaway agent, not a budget: no rate or CPU limit (an in-kernel agent makes
# ~100k syscalls a second; a service runs for days). Set those in a policy of your own.
[agent.quotas]
spawns = 10_000
live_processes = 64
console_bytes = 1_000_000_000
stored_bytes = 1_000_000_000
files = 1_000_000
memory_bytes = 1_073_741_824
"""


class PolicyError(InvalidArgument):
    """A policy file that cannot be used; the message names ``file:line`` so it can be fixed."""

    default_code = "EINVAL"
    source: str = ""
    line: int = 0

    @classmethod
    def at(cls, source: str, line: int, message: str) -> PolicyError:
        err = cls(f"{source}:{line}: {message}")
        err.source = source
        err.line = line
        return err


@dataclass(frozen=True)
class CapSpec:
    """One capability every CLI-started agent receives (resource and rights already canonical)."""

    resource: str
    rights: tuple[str, ...]
    expires_in: float | None = None  # seconds from the grant
    depth: int = 0
    max_uses: int | None = None


@dataclass(frozen=True)
class Policy:
    """The parsed policy; ``source`` is the file as given, or ``"built-in default"``."""

    source: str
    agent_caps: tuple[CapSpec, ...]
    agent_quotas: dict[str, float] = field(hash=False)  # name -> limit; absent means unlimited
    opaque: bool = False


# --- durations ---------------------------------------------------------------------------------

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_PLAIN = re.compile(_NUMBER)
_DURATION = re.compile(
    rf"(?:(?P<d>{_NUMBER})d)?(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m)?(?:(?P<s>{_NUMBER})s)?"
)
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def _show(value: object) -> str:
    """A bad value for a message, short enough that a huge one cannot flood the log."""
    return repr(value[:64]) if isinstance(value, str) else repr(value)[:64]


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration: a positive number of seconds, or units in the order d, h, m, s.

    ``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1h30m"``, ``"1.5h"`` (each unit may have a
    fraction), ``"90"``, ``90``, ``1.5``. Zero, negatives, non-finite values and anything over ten
    years are refused, so a typo cannot mean "never" or "forever".
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise InvalidArgument(f"bad duration {_show(text)}: a number of seconds or a string like '1h30m'")
    if isinstance(text, str):
        stripped = text.strip()
        if _PLAIN.fullmatch(stripped):
            seconds = float(stripped)
        else:
            match = _DURATION.fullmatch(stripped)
            if not stripped or match is None:
                raise InvalidArgument(
                    f"bad duration {_show(text)}: seconds, or units d h m s in that order, as '90s' or '1h30m'"
                )
            seconds = sum(float(v) * _UNIT[unit] for unit, v in match.groupdict().items() if v is not None)
    else:
        seconds = float(text) if abs(text) < 1e300 else math.inf  # float(huge int) would overflow
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgument(f"bad duration {_show(text)}: it must be positive and finite")
    if seconds > MAX_DURATION:
        raise InvalidArgument(f"bad duration {_show(text)}: longer than ten years")
    return seconds


# --- parsing -----------------------------------------------------------------------------------


class _Bad(Exception):
    """A semantic error at a logical position, turned into a PolicyError once its line is known."""

    def __init__(self, where: KeyPath, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def _name(where: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(where))


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _int(value: object, where: KeyPath, low: int, high: int) -> int:
    wanted = (
        f"an integer {low}..{high}"
        if high < MAX_INT
        else ("a positive integer", "a non-negative integer")[low == 0]
    )
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(where, f"{_name(where)} must be {wanted}, not {_kind(value)}")
    if not low <= value <= high:
        raise _Bad(where, f"{_name(where)} must be {wanted}, not {_show(value)}")
    return value


def _unknown(table: dict[str, Any], allowed: frozenset[str], where: KeyPath) -> None:
    for key in table:
        if key not in allowed:
            raise _Bad(
                where + (key,),
                f"unknown key {_show(key)} {f'in {_name(where)}' if where else 'at the top level'}"
                f" (expected one of {', '.join(sorted(allowed))})",
            )


def _cap(entry: object, where: KeyPath) -> CapSpec:
    if not isinstance(entry, dict):
        raise _Bad(where, f"{_name(where)} must be a table, not {_kind(entry)}")
    _unknown(entry, CAP_KEYS, where)
    for key in ("resource", "rights"):
        if key not in entry:
            raise _Bad(where, f"{_name(where)} has no {key}")
    resource, rights = entry["resource"], entry["rights"]
    if not isinstance(resource, str):
        raise _Bad(where + ("resource",), f"{_name(where)}.resource must be a string, not {_kind(resource)}")
    try:
        resource = pattern.normalise(resource)
    except InvalidArgument as e:
        raise _Bad(where + ("resource",), f"{_name(where)}.resource: {e.message}") from None
    if not isinstance(rights, list) or not rights:
        raise _Bad(where + ("rights",), f"{_name(where)}.rights must be a non-empty array of rights")
    try:
        rights = pattern.normalise_rights(rights)
    except InvalidArgument as e:
        raise _Bad(where + ("rights",), f"{_name(where)}.rights: {e.message}") from None
    expires_in = None
    if "expires_in" in entry:
        try:
            expires_in = parse_duration(entry["expires_in"])
        except InvalidArgument as e:
            raise _Bad(where + ("expires_in",), f"{_name(where)}.expires_in: {e.message}") from None
    depth = _int(entry.get("depth", 0), where + ("depth",), 0, MAX_DEPTH)
    max_uses = None
    if "max_uses" in entry:
        max_uses = _int(entry["max_uses"], where + ("max_uses",), 1, MAX_INT)
    return CapSpec(resource, rights, expires_in, depth, max_uses)


def _quota(name: str, value: object, where: KeyPath) -> float:
    if name not in FLOAT_QUOTAS:
        return _int(value, where, 0, MAX_INT)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(where, f"{_name(where)} must be a non-negative number, not {_kind(value)}")
    if not (math.isfinite(value) and 0 <= value <= MAX_INT):
        raise _Bad(where, f"{_name(where)} must be a non-negative finite number, not {_show(value)}")
    return float(value)


def _build(data: dict[str, Any], source: str) -> Policy:
    _unknown(data, frozenset({"agent"}), ())
    if "agent" not in data:
        return Policy(source, (), {})
    agent = data["agent"]
    where: KeyPath = ("agent",)
    if not isinstance(agent, dict):
        raise _Bad(where, f"agent must be a table ([agent]), not {_kind(agent)}")
    _unknown(agent, AGENT_KEYS, where)
    opaque = agent.get("opaque", False)
    if not isinstance(opaque, bool):
        raise _Bad(("agent", "opaque"), f"agent.opaque must be true or false, not {_kind(opaque)}")
    caps = agent.get("caps", [])
    if not isinstance(caps, list):
        raise _Bad(
            ("agent", "caps"), f"agent.caps must be an array of tables ([[agent.caps]]), not {_kind(caps)}"
        )
    if len(caps) > MAX_CAPS:
        raise _Bad(("agent", "caps", MAX_CAPS), f"at most {MAX_CAPS} [[agent.caps]] entries")
    specs = tuple(_cap(entry, ("agent", "caps", i)) for i, entry in enumerate(caps))
    quotas = agent.get("quotas", {})
    if not isinstance(quotas, dict):
        raise _Bad(("agent", "quotas"), f"agent.quotas must be a table ([agent.quotas]), not {_kind(quotas)}")
    _unknown(quotas, QUOTA_NAMES, ("agent", "quotas"))
    limits = {name: _quota(name, value, ("agent", "quotas", name)) for name, value in quotas.items()}
    return Policy(source, specs, limits, opaque)


_TOML_AT = re.compile(r"(.*) \(at line (\d+), column (\d+)\)", re.DOTALL)
_TOML_END = re.compile(r"(.*) \(at end of document\)", re.DOTALL)
_LONG_NUMBER = re.compile(r"[0-9_]{4000,}")


def _syntax_error(e: Exception, text: str, source: str) -> PolicyError:
    """A tomllib failure as ``source:line: message`` (tomllib puts the position at the end)."""
    message = str(e)
    if match := _TOML_AT.fullmatch(message):
        return PolicyError.at(source, int(match[2]), f"{match[1]} (column {match[3]})")
    if match := _TOML_END.fullmatch(message):
        return PolicyError.at(source, max(text.count("\n") + (not text.endswith("\n")), 1), match[1])
    if isinstance(e, RecursionError):
        return PolicyError.at(source, 1, "arrays or tables nested too deeply")
    line = next((n for n, ln in enumerate(text.split("\n"), 1) if _LONG_NUMBER.search(ln)), 1)
    return PolicyError.at(source, line, f"invalid TOML: {message[:200]}")


def parse_policy(text: str, source: str) -> Policy:
    """Parse and check a policy's text; any problem is a PolicyError naming ``source:line``."""
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as e:  # TOMLDecodeError, or int() of a 4300+ digit literal
        raise _syntax_error(e, text, source) from None
    try:
        return _build(data, source)
    except _Bad as bad:
        raise PolicyError.at(source, locate(text, bad.where), bad.message) from None


def load_policy(path: str | Path) -> Policy:
    """Read and parse a policy file; an unreadable or undecodable one is a PolicyError too."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except OSError as e:
        raise PolicyError.at(source, 0, f"cannot read the policy file: {e.strerror or e}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError.at(source, 0, f"a policy file is at most {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PolicyError.at(source, line, "the policy file is not UTF-8") from None
    return parse_policy(text, source)


def default_policy() -> Policy:
    """The built-in policy, parsed by the same code as any file so the two cannot drift apart."""
    return parse_policy(DEFAULT_POLICY_TOML, BUILT_IN)
