"""Sandbox profiles: what confines a process agent (namespaces, files, rlimits, seccomp, Landlock).

A :class:`Profile` is policy, not a running thing; ``launch.launch`` turns it into a bubblewrap
command line plus the small exec'd stage (``stage.c``). Two presets:

``minimal``
    user, pid, mount, ipc and uts namespaces; *no* network namespace (creating one costs a few ms),
    so ``net="none"`` is enforced by seccomp instead: ``socket()`` only for ``AF_UNIX``. What the
    spawn benchmark against ``subprocess.run`` uses.
``full``
    every namespace bubblewrap offers (user, pid, mount, ipc, uts, net, cgroup); the network
    namespace has only ``lo`` (``net="loopback"``), so nothing can leave the machine.

Both: system directories read-only, the working directory read-write at ``/work``, a private
``/tmp``, ``/proc`` of the agent's own pid namespace, bubblewrap's minimal ``/dev``, a synthesized
``/etc/passwd`` and ``/etc/group`` (the host's user list is not the agent's business), rlimits,
the seccomp deny list (``seccomp.py``), ``no_new_privs`` and Landlock rules as a second wall.

Which ``/etc`` pieces and why (everything else in ``/etc`` stays hidden, secrets included):
``ld.so.cache``/``ld.so.conf*`` (the dynamic linker), ``alternatives`` (Debian's ``/usr/bin``
links point there), ``localtime`` (time zone), ``nsswitch.conf``/``hosts`` (name lookups of
``localhost``), ``mime.types`` and ``ssl`` (certificate bundles, public data). ``/lib``, ``/lib64``,
``/bin`` and ``/sbin`` follow the host: a symlink on a merged-/usr host, a read-only bind otherwise.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field, replace
from typing import Literal

NAMESPACES = ("user", "pid", "ipc", "uts", "net", "cgroup")  # mount is always unshared
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
ETC_PIECES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/mime.types",
    "/etc/ssl",
)
# every mechanism probe() reports; a profile's ``requires`` is a subset
MECHANISMS = ("bwrap", "userns", "seccomp", "landlock", "stage")
SANDBOX_WORKDIR = "/work"

# rlimits by name (resource.RLIMIT_*): the stage lowers them, never raises a hard limit. nproc is per
# *real uid* and root is exempt from it, so for agents run as root the pids cgroup is the real fence.
DEFAULT_RLIMITS: tuple[tuple[str, int], ...] = (
    ("core", 0),  # a crash dump could carry the agent's secrets out of the sandbox
    ("nofile", 1024),
    ("nproc", 4096),
    ("fsize", 1 << 32),  # one file at most 4 GiB
    ("memlock", 64 << 10),
    ("msgqueue", 0),
)


@dataclass(frozen=True)
class Bind:
    """An extra host path visible inside at ``dest`` (default: the same path)."""

    source: str
    dest: str | None = None
    writable: bool = False


@dataclass(frozen=True)
class Profile:
    """How a process agent is confined; see the module docstring for the presets."""

    name: str
    namespaces: frozenset[str] = frozenset({"user", "pid", "ipc", "uts"})
    # "none": no IP sockets at all; "loopback": a network namespace with only ``lo`` (needs "net")
    net: Literal["none", "loopback"] = "none"
    system_dirs: tuple[str, ...] = SYSTEM_DIRS
    etc: tuple[str, ...] = ETC_PIECES
    extra_binds: tuple[Bind, ...] = ()
    rlimits: tuple[tuple[str, int], ...] = DEFAULT_RLIMITS
    seccomp: bool = True
    # "errno": a denied call fails with EPERM and the agent goes on; "kill": it dies of SIGSYS
    # (typed fault "sys"). EPERM is the default: programs probe unshare/ptrace and cope.
    seccomp_action: Literal["errno", "kill"] = "errno"
    landlock: bool = True
    hostname: str = "agentos"
    # mechanisms whose absence refuses the launch (unless the caller passes allow_missing)
    requires: frozenset[str] = frozenset({"bwrap", "userns", "seccomp", "stage"})
    extra_seccomp_deny: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        unknown = set(self.namespaces) - set(NAMESPACES)
        if unknown:
            raise ValueError(f"unknown namespaces {sorted(unknown)}; known: {NAMESPACES}")
        if self.net == "loopback" and "net" not in self.namespaces:
            raise ValueError('net="loopback" needs the "net" namespace')
        if "pid" not in self.namespaces:
            raise ValueError("a process agent always gets its own pid namespace")
        if set(self.requires) - set(MECHANISMS):
            raise ValueError(f"unknown mechanisms in requires; known: {MECHANISMS}")
        for name, _ in self.rlimits:
            if not hasattr(resource, f"RLIMIT_{name.upper()}"):
                raise ValueError(f"unknown rlimit {name!r}")

    def rlimit_numbers(self) -> list[tuple[int, int]]:
        """The rlimits as (RLIMIT_* number, value) pairs for the stage's ``-l``."""
        return [(getattr(resource, f"RLIMIT_{n.upper()}"), v) for n, v in self.rlimits]

    def with_(self, **changes: object) -> Profile:
        """A copy with fields changed (``MINIMAL.with_(seccomp_action="kill")``)."""
        return replace(self, **changes)  # type: ignore[arg-type]


MINIMAL = Profile(name="minimal")
FULL = Profile(
    name="full",
    namespaces=frozenset(NAMESPACES),
    net="loopback",
    requires=frozenset({"bwrap", "userns", "seccomp", "stage", "landlock"}),
)
PRESETS: dict[str, Profile] = {"minimal": MINIMAL, "full": FULL}
