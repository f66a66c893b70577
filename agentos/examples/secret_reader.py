"""Reads a secret it was not given: refused, it asks a person for it (``cap_request``), then reads it.

Arguments: NAME (default DEMO_API_KEY), TIMEOUT (seconds to wait for an answer, default 300),
LINGER (seconds to stay alive after reading, default 0, so that ``agentos caps PID`` can still
show what it holds). Try it on a kernel with the secret set, answering from a second terminal::

    printf 'sk-demo-1234' | agentos secret set DEMO_API_KEY
    agentos run agentos/examples/secret_reader.py DEMO_API_KEY   # waits for a person...
    agentos approvals                                             # ...who, elsewhere, sees the request
    agentos approve 1 --for 5m                                    # and grants it for five minutes

It prints the secret's length, never its value: whatever an agent prints goes to its console,
which the kernel keeps in the event log. ``agentos deny 1`` instead ends it with status 1; no
answer within TIMEOUT seconds ends it with status 2.
"""

from agentos import sdk
from agentos.errors import PermissionDenied, TimedOut


async def main(name: str = "DEMO_API_KEY", timeout: str = "300", linger: str = "0") -> int:
    try:
        value = await sdk.secret(name)
    except PermissionDenied as err:
        await sdk.write_console(f"refused ({err.code}): {err.message}\n")
        await sdk.write_console(f"asking a person for secret:{name} [read]\n")
        try:
            grant = await sdk.cap_request(
                f"secret:{name}", ["read"], reason=f"to call the API {name} unlocks", timeout=float(timeout)
            )
        except PermissionDenied as denied:
            await sdk.write_console(f"denied: {denied.message}\n")
            return 1
        except TimedOut as late:
            await sdk.write_console(f"no answer: {late.message}\n")
            return 2
        await sdk.write_console(f"request {grant['outcome']}: now holding capability {grant['cap']}\n")
        value = await sdk.secret(name)
    await sdk.write_console(f"read secret {name}: {len(value)} bytes (the value itself is never printed)\n")
    if float(linger) > 0:
        await sdk.sleep(float(linger))
    return 0
