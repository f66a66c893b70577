"""sys_* handlers for secrets: the person sets and removes them (admin), an agent reads one with a
capability for ``secret:NAME``.

Values live only in the home's secret store (``agentos/store/secrets.py``), never in an event:
``secret_get`` journals a reference (``{"secret": NAME}``, the ``secret`` journal rule) and a
replaying agent gets the value re-read from the store. The audit events name the secret and its
size, never its bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentos.abi import syscalls as sc
from agentos.kernel.calls import Caller, Done
from agentos.state import events as ev

if TYPE_CHECKING:
    from agentos.kernel.kernel import Kernel


def secret_resource(a: sc.SecretNameArgs) -> str:
    return f"secret:{a.name}"


def sys_secret_get(k: Kernel, c: Caller, a: sc.SecretNameArgs) -> Done:
    return Done(k.secrets.get(a.name), [ev.SecretRead(name=a.name, pid=c.pid)])


def sys_secret_set(k: Kernel, c: Caller, a: sc.SecretSetArgs) -> Done:
    info = k.secrets.set(a.name, a.value)
    return Done(info, [ev.SecretChanged(name=a.name, size=info["size"], by=c.pid)])


def sys_secret_rm(k: Kernel, c: Caller, a: sc.SecretNameArgs) -> Done:
    k.secrets.remove(a.name)
    return Done(None, [ev.SecretChanged(name=a.name, size=0, by=c.pid, removed=True)])


def sys_secret_list(k: Kernel, c: Caller, a: sc.NoArgs) -> Done:
    return Done(k.secrets.list())
