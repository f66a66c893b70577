"""Resource patterns and rights: what a capability covers, and whether one is a narrowing of another.

A resource is ``kind:value`` — ``sys:proc`` (a syscall family), ``proc:42``, ``fs:/data/a.txt``,
``net:127.0.0.1:8080``, ``llm:gpt-4o``, ``svc:db``, ``secret:API_KEY``, ``admin``. A pattern is:

* ``*`` — every resource (the root capability init and sessions hold);
* ``kind:*`` — every resource of a kind;
* ``kind:prefix*`` — every value starting with ``prefix``;
* ``kind:value`` — that value; for hierarchical kinds (``fs``, ``svc``) also everything under
  ``value/`` (a path prefix on component boundaries: ``fs:/data`` covers ``/data/x``, not ``/database``);
* ``proc:children`` — the holder's descendants (relative: only the kernel can tell, given the holder).

Rights are short names (``read``, ``write``, ``spawn``, ``grant``, ...); ``*`` means all of them.
``subsumes(parent, child)`` is the attenuation rule: true only when every resource the child covers
the parent covers too, so a derived capability can never widen (hypothesis checks this).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable

from agentos.errors import InvalidArgument

ANY = "*"
HIERARCHICAL = frozenset({"fs", "svc"})
RELATIVE = {"proc": frozenset({"children"})}  # values resolved against the holder by the kernel
MAX_PATTERN = 512
MAX_RIGHTS = 16
_KIND = re.compile(r"[a-z][a-z0-9_]{0,15}")
_RIGHT = re.compile(r"\*|[a-z][a-z0-9_]{0,31}")

# (holder pid, kind, relative keyword, resource value) -> whether the relative pattern covers it
RelativeTest = Callable[[int, str, str, str], bool]


def split(resource: str) -> tuple[str, str]:
    kind, sep, value = resource.partition(":")
    return kind, value if sep else ""


def normalise(pattern: str) -> str:
    """Check an untrusted pattern and return its canonical form (paths normalised)."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
        raise InvalidArgument(f"a resource pattern is a non-empty string of at most {MAX_PATTERN} characters")
    if pattern == ANY:
        return ANY
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in pattern):
        raise InvalidArgument("a resource pattern may not contain control characters")
    kind, value = split(pattern)
    if not _KIND.fullmatch(kind):
        raise InvalidArgument(f"bad resource kind {kind[:32]!r}: lowercase letters, digits and _")
    if kind in HIERARCHICAL and not value:
        raise InvalidArgument(f"say {kind}:* for every {kind} resource, or name a path")
    if kind == "fs" and value != ANY:
        wild = value.endswith("*")
        path = value[:-1] if wild else value
        if not path.startswith("/"):
            raise InvalidArgument(f"an fs pattern is an absolute path, not {value[:64]!r}")
        if "*" in path:  # else '/a/*/.' (the directory named '*') would normalise to the wildcard '/a/*'
            raise InvalidArgument(f"'*' may only end an fs pattern, not {value[:64]!r}")
        if wild:  # resolve the directories only: the last, partial name is a prefix ('/data/.*': dot-files)
            head, _, tail = path.rpartition("/")
            value = "/" + posixpath.normpath(head or "/").lstrip("/")  # normpath keeps a leading '//'
            value = value.rstrip("/") + "/" + tail + "*"
        else:
            value = "/" + posixpath.normpath(path).lstrip("/")
    return f"{kind}:{value}" if value else kind


def normalise_rights(rights: Iterable[str]) -> tuple[str, ...]:
    out = set()
    for right in rights:
        if not isinstance(right, str) or not _RIGHT.fullmatch(right):
            raise InvalidArgument(f"bad right {str(right)[:32]!r}: lowercase letters, digits and _, or *")
        out.add(right)
    if not out or len(out) > MAX_RIGHTS:
        raise InvalidArgument(f"a capability grants 1 to {MAX_RIGHTS} rights")
    return (ANY,) if ANY in out else tuple(sorted(out))


def has_right(rights: list[str] | tuple[str, ...], right: str) -> bool:
    return right in rights or ANY in rights  # a list, never a str ('readwrite' holds no 'read')


def rights_within(child: Iterable[str], parent: Iterable[str]) -> bool:
    parent = set(parent)
    return ANY in parent or set(child) <= parent


def covers(pattern: str, resource: str, holder: int = 0, relative: RelativeTest | None = None) -> bool:
    """Whether ``pattern`` covers the concrete ``resource``."""
    if pattern == ANY:
        return True
    pkind, pvalue = split(pattern)
    rkind, rvalue = split(resource)
    if pkind != rkind:
        return False
    if pvalue == ANY:
        return True
    if pvalue in RELATIVE.get(pkind, ()):
        return relative is not None and relative(holder, pkind, pvalue, rvalue)
    if pvalue.endswith("*"):
        return rvalue.startswith(pvalue[:-1])
    if rvalue == pvalue:
        return True
    return pkind in HIERARCHICAL and rvalue.startswith(pvalue.rstrip("/") + "/")


def subsumes(parent: str, child: str) -> bool:
    """Whether every resource ``child`` covers is covered by ``parent`` (attenuation)."""
    if parent == ANY:
        return True
    if child == ANY:
        return False
    pkind, pvalue = split(parent)
    ckind, cvalue = split(child)
    if pkind != ckind:
        return False
    if pvalue == ANY:
        return True
    if cvalue == ANY:
        return False
    if pvalue in RELATIVE.get(pkind, ()) or cvalue in RELATIVE.get(ckind, ()):
        return pvalue == cvalue  # only the kernel knows what a relative pattern holds
    cwild = cvalue.endswith("*")
    cbase = cvalue[:-1] if cwild else cvalue
    if pvalue.endswith("*"):
        prefix = pvalue[:-1]
        if ckind in HIERARCHICAL and not cwild:  # it also covers everything under cbase/
            return cbase.startswith(prefix) and (cbase.rstrip("/") + "/").startswith(prefix)
        return cbase.startswith(prefix)
    if pkind in HIERARCHICAL:
        under = pvalue.rstrip("/") + "/"
        if cwild:
            return cbase.startswith(under)
        return cbase == pvalue or cbase.startswith(under)
    return not cwild and cbase == pvalue
