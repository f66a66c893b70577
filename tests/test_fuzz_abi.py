"""Fuzzing the kernel's untrusted inputs with hypothesis: bytes on the socket, syscall arguments from
clients, and syscall arguments from an in-kernel agent.

Whatever arrives, the kernel answers with typed errors (code, category, message; never the
``internal`` category, which would mean a kernel bug) or closes that one connection, and keeps
serving everyone else with nothing lost. The default run is bounded (~200 examples each); the
``soak`` variants run far more (``pytest -m soak``).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import selectors
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agentos import errors, param
from agentos.abi.frames import FrameDecoder, FrameTooLarge, encode_frame
from agentos.abi.syscalls import Args
from agentos.errors import AgentOSError, TimedOut
from agentos.kernel.syscall import SYSCALLS
from agentos.sdk.client import Client
from agentos.testing.kernelproc import KernelProcess
from agentos.testing.live import LiveKernel, live_kernel

# mount's source is a host directory named by the person (an admin call): fuzzed in
# test_vfs_hostmount.py against a scratch directory, never here, where it could mount the host's "/";
# export writes a host file: fuzzed in test_export.py against a scratch directory
FUZZED_CALLS = sorted(name for name in SYSCALLS if name not in ("shutdown", "mount", "export"))
# may park, or stream (follow); query, bisect and gc always park: they run on a worker thread
BLOCKING = frozenset({"sleep", "wait", "events", "logs", "watch", "query", "bisect", "gc", "verify"})
ENDS_AN_AGENT = frozenset({"exit", "continue_as_new", "kill", "sleep", "wait"})
ERROR_TYPES = {
    cls.__name__ for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, AgentOSError)
} | {"FrameTooLarge", "MalformedFrame", "StoreError"}

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SOAK = settings(FUZZ, max_examples=5_000)


# -- the kernel under test --------------------------------------------------------------------------


class Live(LiveKernel):
    """The shared kernel, plus the fuzzing agent's file beside its home."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.agent_dir = home.parent / "agents"
        self.agent_dir.mkdir()
        (self.agent_dir / "fuzz_agent.py").write_text(FUZZ_AGENT)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_kernel(Live) as lv:
        yield lv


def assert_typed(err: Any) -> None:
    assert isinstance(err, dict), err
    for field in ("code", "category", "message"):
        assert isinstance(err.get(field), str) and err[field], err
    assert err["category"] != "internal", f"a kernel bug surfaced as an internal error: {err}"


def assert_well_formed(frame: Any) -> None:
    assert isinstance(frame, dict) and "id" in frame, frame
    if "err" in frame:
        assert_typed(frame["err"])
    else:
        assert "ok" in frame or "more" in frame, frame


# -- strategies -----------------------------------------------------------------------------------

WIRE_INT = st.integers(-(2**63), 2**64 - 1)  # everything msgpack can carry
EDGE_INT = st.sampled_from(
    [-(2**63), -(2**31), -2, -1, 0, 1, 2, 2**31, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
)
EDGE_FLOAT = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, -1e-300, 5e-324, 1e308, -1.0, 0.5])
HUGE_STR = st.sampled_from([257, 4097, param.MAX_CONSOLE_WRITE + 1, param.MAX_ARG_BYTES + 1]).map(
    lambda n: "x" * n
)
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    WIRE_INT,
    EDGE_INT,
    st.floats(allow_nan=True, allow_infinity=True),
    EDGE_FLOAT,
    st.text(max_size=20),
    st.binary(max_size=20),
    HUGE_STR,
)
JUNK = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | WIRE_INT, inner, max_size=4)
    ),
    max_leaves=8,
)
KNOWN_TARGETS = st.sampled_from(
    [
        "agentos.examples.hello",
        "agentos.examples.failing",
        "agentos.examples",
        "agentos.examples.hello:nope",
        "/",
        "/nonexistent/agent.py",
        "a\x00.py",
        "x:y:z",
        "..py",
        "fuzz_agent.py:no_such_fn",
    ]
)


def defang_target(value: Any) -> Any:
    """Keep random text from naming a real module (spawn would execute it in the kernel)."""
    if isinstance(value, str) and value and all(p.isidentifier() for p in value.split(":")[0].split(".")):
        return "zz_no_such_module_" + value
    return value


def valid_for(t: Any, name: str) -> st.SearchStrategy[Any]:
    """Values of a schema field's type, biased towards its bounds."""
    ti = msgspec.inspect
    if name == "target":
        return KNOWN_TARGETS | st.text(max_size=20).map(defang_target)
    if name == "stream":
        return st.sampled_from(["stdout", "stderr", "stdout\n", "STDOUT", ""])
    if name == "sig":
        return st.sampled_from(["TERM", "HUP", "INT", "USR1", "CHLD", "CONT", "sigterm", "9", "0", 64])
    if isinstance(t, ti.IntType):
        lo = t.ge if t.ge is not None else -(2**63)
        hi = t.le if t.le is not None else 2**64 - 1
        return st.integers(lo, hi) | st.sampled_from([lo, hi, lo - 1, hi + 1]).filter(
            lambda v: -(2**63) <= v < 2**64
        )
    if isinstance(t, ti.FloatType):
        lo = t.ge if t.ge is not None else -1e308
        hi = t.le if t.le is not None else 1e308
        return st.floats(lo, hi) | st.sampled_from([lo, hi, lo - 1, hi * 2, 1e-9])
    if isinstance(t, ti.StrType):
        limit = t.max_length if t.max_length is not None else 1000
        return st.text(max_size=min(limit, 30)) | st.just("y" * (limit + 1)) | st.just("y" * limit)
    if isinstance(t, ti.BoolType):
        return st.booleans()
    if isinstance(t, ti.ListType):
        items = valid_for(t.item_type, "")
        limit = t.max_length if t.max_length is not None else 10
        return st.lists(items, max_size=4) | st.lists(st.just("a"), min_size=limit + 1, max_size=limit + 1)
    if isinstance(t, ti.UnionType):
        return st.one_of([valid_for(u, name) for u in t.types])
    if isinstance(t, ti.NoneType):
        return st.none()
    return JUNK


def near_miss(t: Any, name: str) -> st.SearchStrategy[Any]:
    return st.one_of(valid_for(t, name), EDGE_INT, EDGE_FLOAT, HUGE_STR, JUNK)


def schema_args(schema: type[Args]) -> st.SearchStrategy[dict[Any, Any]]:
    """Maps shaped like the schema: all fields valid, or all valid but one (near a bound, of a wrong
    type, huge, junk), or a free mix; sometimes with an unknown field as well."""
    fields = msgspec.inspect.type_info(schema).fields  # type: ignore[attr-defined]
    valid = {f.encode_name: valid_for(f.type, f.encode_name) for f in fields}
    required = {f.encode_name for f in fields if f.required}

    def shaped(mutate: str | None) -> st.SearchStrategy[dict[Any, Any]]:
        parts = {n: near_miss_for(fields, n) if n == mutate else s for n, s in valid.items()}
        return st.fixed_dictionaries(
            {n: s for n, s in parts.items() if n in required or n == mutate},
            optional={n: s for n, s in parts.items() if n not in required and n != mutate},
        )

    one_wrong = st.sampled_from(sorted(valid)).flatmap(shaped) if valid else st.just({})
    mixed = st.fixed_dictionaries(
        {}, optional={f.encode_name: near_miss(f.type, f.encode_name) for f in fields}
    )
    base = st.one_of(shaped(None), one_wrong, mixed)
    extra = st.dictionaries(st.text(max_size=8) | WIRE_INT, JUNK, min_size=1, max_size=2)
    return st.one_of(base, base, st.tuples(base, extra).map(lambda be: {**be[1], **be[0]}))


def near_miss_for(fields: Any, name: str) -> st.SearchStrategy[Any]:
    return next(near_miss(f.type, name) for f in fields if f.encode_name == name)


def args_for(name: str) -> st.SearchStrategy[Any]:
    return st.one_of(
        schema_args(SYSCALLS[name].schema),
        st.dictionaries(st.text(max_size=10) | WIRE_INT | st.binary(max_size=4), JUNK, max_size=5),
        JUNK,
    )


CALL_NAME = st.sampled_from(FUZZED_CALLS) | st.text(max_size=12).filter(
    lambda s: s not in ("shutdown", "mount")
)


@st.composite
def request_maps(draw: st.DrawFn) -> Any:
    name = draw(CALL_NAME | JUNK)
    message = draw(st.dictionaries(st.sampled_from(["id", "call", "args", "more", "ok"]), JUNK, max_size=3))
    message["call"] = name
    if draw(st.booleans()):
        message["args"] = draw(args_for(name) if isinstance(name, str) and name in SYSCALLS else JUNK)
    return message


def frame_of(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


HELLO = encode_frame({"id": 0, "call": "hello", "args": {"abi": param.ABI_VERSION, "client": "fuzz"}})

CHUNK = st.one_of(
    st.binary(max_size=64),  # raw garbage, header included
    st.binary(max_size=64).map(frame_of),  # a well-framed garbage body
    JUNK.map(packed).map(frame_of),  # a well-framed random msgpack value
    request_maps().map(packed).map(frame_of),  # something shaped like a request
    st.tuples(request_maps().map(packed).map(frame_of), st.integers(0, 50)).map(
        lambda fc: fc[0][: max(0, len(fc[0]) - 1 - fc[1])]  # truncated
    ),
    st.tuples(st.binary(max_size=16), st.integers(0, 2**32 - 1)).map(
        lambda bl: struct.pack(">I", bl[1]) + bl[0]  # a lying length header
    ),
)
STREAMS = st.tuples(st.booleans(), st.lists(CHUNK, min_size=1, max_size=6)).map(
    lambda hc: (HELLO if hc[0] else b"") + b"".join(hc[1])
)


# -- (a) arbitrary bytes at the socket ------------------------------------------------------------------


def exchange(home: Path, data: bytes, timeout: float = 10.0) -> list[Any]:
    """Send ``data``, half-close, and read every reply until the kernel closes the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(home / "kernel.sock"))
    sock.setblocking(False)
    decoder = FrameDecoder(max_frame=param.MAX_FRAME_BYTES)
    frames: list[Any] = []
    sel = selectors.DefaultSelector()
    if data:
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    else:
        sock.shutdown(socket.SHUT_WR)
        sel.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    try:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the kernel neither answered nor closed the connection"
            for _, mask in sel.select(remaining):
                if mask & selectors.EVENT_WRITE and view:
                    try:
                        view = view[sock.send(view) :]
                    except (BrokenPipeError, ConnectionResetError):
                        view = view[len(view) :]
                    if not view:
                        try:
                            sock.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        sel.modify(sock, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(1 << 16)
                    except ConnectionResetError:
                        chunk = b""
                    if not chunk:
                        return frames
                    frames += decoder.feed(chunk)
    finally:
        sel.close()
        sock.close()


def check_bytes_get_typed_answers(live: Live, data: bytes) -> None:
    for frame in exchange(live.home, data):
        assert_well_formed(frame)
    assert live.alive()


@pytest.fixture(scope="module")
def before_bytes(live: Live) -> dict[str, Any]:
    return live.snapshot()


@FUZZ
@given(data=STREAMS)
def test_arbitrary_bytes_get_typed_errors_or_a_close(
    live: Live, before_bytes: dict[str, Any], data: bytes
) -> None:
    check_bytes_get_typed_answers(live, data)


def test_kernel_serves_after_the_byte_fuzz(live: Live, before_bytes: dict[str, Any]) -> None:
    live.assert_serving(before_bytes)


@pytest.mark.soak
@SOAK
@given(data=STREAMS)
def test_arbitrary_bytes_soak(live: Live, data: bytes) -> None:
    check_bytes_get_typed_answers(live, data)


# -- (b) every syscall with fuzzed arguments, from a client -------------------------------------------


class Session:
    """One session connection reused across examples (reopened when a call parks or ends it)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.sock: socket.socket | None = None
        self.next_id = 0
        self.decoder = FrameDecoder()
        self.pending: list[Any] = []

    def open(self) -> None:
        self.close()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(str(self.home / "kernel.sock"))
        self.decoder, self.pending = FrameDecoder(), []
        self.sock.sendall(HELLO)
        hello = self.read()
        assert hello is not None and "ok" in hello, hello

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def read(self) -> Any | None:
        assert self.sock is not None
        while not self.pending:
            try:
                chunk = self.sock.recv(1 << 16)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.pending += self.decoder.feed(chunk)
        return self.pending.pop(0)

    def call(self, name: str, args: Any) -> None:
        """Make the call, then a getpid: replies come in order, so if the getpid answers first the
        call parked (or streams) rather than answered."""
        if self.sock is None:
            self.open()
        assert self.sock is not None
        self.next_id += 2
        a, b = self.next_id - 1, self.next_id
        try:
            request = encode_frame({"id": a, "call": name, "args": args})
        except FrameTooLarge:
            return  # the client refuses to send it; the kernel-side limit is tested in test_abi
        self.sock.sendall(request + encode_frame({"id": b, "call": "getpid", "args": {}}))
        answered = False
        while True:
            frame = self.read()
            if frame is None:  # the kernel closed this session: only killing itself can do that
                assert name == "kill" and not answered, (name, args)
                self.close()
                return
            assert_well_formed(frame)
            if frame["id"] == a and "more" not in frame:
                answered = True
            if frame["id"] == b:
                assert "ok" in frame, frame
                break
        if not answered:
            assert name in BLOCKING, f"{name}({args!r}) neither answered nor is a blocking call"
            self.close()  # drop the parked call or stream with its connection


@pytest.fixture(scope="module")
def session(live: Live) -> Iterator[Session]:
    s = Session(live.home)
    yield s
    s.close()


@pytest.fixture(scope="module")
def before_calls(live: Live) -> dict[str, Any]:
    return live.snapshot()


@pytest.mark.parametrize("name", FUZZED_CALLS)
@settings(FUZZ, max_examples=100, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_syscall_with_fuzzed_args_gives_typed_answers(
    live: Live, before_calls: dict[str, Any], session: Session, name: str, data: st.DataObject
) -> None:
    session.call(name, data.draw(args_for(name), label="args"))
    assert live.alive()


def test_kernel_serves_after_the_syscall_fuzz(live: Live, before_calls: dict[str, Any]) -> None:
    live.assert_serving(before_calls)


@pytest.mark.soak
@settings(SOAK, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_syscall_fuzz_soak(live: Live, session: Session, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(FUZZED_CALLS), label="name")
    session.call(name, data.draw(args_for(name), label="args"))
    assert live.alive()


# -- (c) fuzzed syscall arguments from an in-kernel agent ------------------------------------------------

FUZZ_AGENT = '''
"""Makes the traps named in argv (JSON) and reports what each one answered."""
import json

from agentos import sdk
from agentos.abi.traps import trap
from agentos.errors import AgentOSError


async def main(*argv):
    if len(argv) != 3 or argv[0] != "FUZZ":
        return 0  # restarted by a fuzzed continue_as_new
    nonce = argv[1]  # marks the report lines apart from the fuzzed console output
    parent = await sdk.getppid()
    for i, (name, args) in enumerate(json.loads(argv[2])):
        if name == "kill" and isinstance(args, dict) and args.get("pid") == parent:
            out = {"i": i, "skipped": True}  # never signal the test's own session
        else:
            try:
                await trap(name, args)
            except AgentOSError as e:
                out = {"i": i, "type": type(e).__name__, **e.to_wire()}
                out["message"] = out["message"][:200]  # it may quote a fuzzed name at length
            else:
                out = {"i": i, "ok": True}
        await sdk.write_console(f"\\n{nonce} {json.dumps(out)}\\n")
    return 0
'''

AGENT_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)  # lone surrogates too
AGENT_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    WIRE_INT,
    EDGE_INT,
    st.floats(allow_nan=False, allow_infinity=False),
    AGENT_TEXT,
    HUGE_STR,
)
AGENT_JUNK = st.recursive(
    AGENT_JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(AGENT_TEXT, inner, max_size=3),
    max_leaves=6,
)


def jsonable(value: Any) -> Any:
    """Agents get their fuzz through JSON: bytes become text, keys strings, floats finite."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float) and not math.isfinite(value):
        return 1e308
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


# Mostly real names; hypothesis favours a list's first element, so that one is harmless.
AGENT_CALL_NAMES = st.sampled_from(["getpid", *sorted(set(SYSCALLS) - {"getpid"})])


@st.composite
def agent_calls(draw: st.DrawFn) -> list[list[Any]]:
    calls = []
    for _ in range(draw(st.integers(1, 5))):
        name = draw(AGENT_CALL_NAMES if draw(st.integers(0, 9)) < 7 else AGENT_TEXT | AGENT_JUNK)
        if isinstance(name, str) and name in SYSCALLS:
            args = draw(args_for(name) | AGENT_JUNK.filter(lambda v: not isinstance(v, dict)))
        else:
            args = draw(AGENT_JUNK)
        calls.append([jsonable(name), jsonable(args)])
    return calls


def check_agent_sees_only_typed_errors(c: Client, live: Live, calls: list[list[Any]]) -> None:
    spec = json.dumps(calls)  # ascii: lone surrogates travel as escapes
    if len(spec) > param.MAX_ARG_BYTES:
        return
    nonce = secrets.token_hex(8)
    pid = c.call("spawn", target=str(live.agent_dir / "fuzz_agent.py"), argv=["FUZZ", nonce, spec])
    deadline = time.monotonic() + 5
    status = None
    while status is None:
        status = c.call("wait", pid=pid, nohang=True)
        if status is not None:
            break
        row = next(p for p in c.call("ps") if p["pid"] == pid)
        if row["state"] in ("blocked", "stopped"):  # parked in a call (or stopped): end it here
            c.call("kill", pid=pid, sig="KILL")
            try:
                status = c.call("wait", pid=pid, timeout=10)
            except TimedOut:
                pytest.fail(f"agent {pid} did not die on KILL: {row}")
            break
        if time.monotonic() > deadline:
            log = (live.home / "kernel.log").read_text()[-3000:]
            pytest.fail(f"agent {pid} neither finished nor blocked (dispatcher stalled?): {row}\n{log}")
        time.sleep(0.002)
    assert status["fault"] is None, f"the agent saw something other than a typed error: {status}"
    lines = [item["data"] for item in c.stream("logs", pid=pid)]
    results = [json.loads(m) for m in re.findall(f"^{nonce} (.*)$", "".join(lines), re.MULTILINE)]
    assert [r["i"] for r in results] == list(range(len(results)))
    for r in results:
        if "type" in r:
            assert r["type"] in ERROR_TYPES, r
            assert_typed(r)
    if len(results) < len(calls):
        assert calls[len(results)][0] in ENDS_AN_AGENT, (calls[len(results)], status)


@pytest.fixture(scope="module")
def agent_client(live: Live) -> Iterator[Client]:
    with Client.connect(live.home, "agent-fuzz") as c:
        yield c


@pytest.fixture(scope="module")
def before_agents(live: Live) -> dict[str, Any]:
    return live.snapshot()


# No shrinking: a failure here can leave the dispatcher broken for every later example, so the
# first failing example is the one that matters.
@settings(FUZZ, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(calls=agent_calls())
def test_agent_traps_with_fuzzed_args_see_only_typed_errors(
    live: Live, before_agents: dict[str, Any], agent_client: Client, calls: list[list[Any]]
) -> None:
    check_agent_sees_only_typed_errors(agent_client, live, calls)


PRINTS_BAD_TEXT = '''
"""Prints text that is not valid Unicode, then exits."""
from agentos import sdk


async def main():
    print("lone \\ud800 surrogate")
    await sdk.sched_yield()
    return 7
'''


def test_an_agent_printing_a_lone_surrogate_does_not_stop_other_agents(live: Live) -> None:
    path = live.agent_dir / "prints_bad_text.py"
    path.write_text(PRINTS_BAD_TEXT)
    with live.kp.client() as c:
        pid = c.call("spawn", target=str(path))
        assert c.call("wait", pid=pid, timeout=10)["status"] == 7
        assert "".join(item["data"] for item in c.stream("logs", pid=pid)) == "lone \\ud800 surrogate\n"
        other = c.call("spawn", target="agentos.examples.hello")
        assert c.call("wait", pid=other, timeout=10)["status"] == 0


ODD_TRAPS = '''
"""Makes traps that once stopped the dispatcher or bricked the log, reports the errors, then sleeps."""
from agentos import sdk
from agentos.abi.traps import trap
from agentos.errors import AgentOSError

ODD = [
    (5, {}),  # a call that is not a str was journaled as sys.done.call and broke every later boot
    ([], {}),  # unhashable: the journal lookup raised TypeError in the dispatcher
    (None, {}),
    ({"a": 1}, {}),
    ("nosuch\\ud800", {}),  # lone surrogates cannot be stored as UTF-8 JSON ...
    ("nosuch", {"\\ud800": 1}),
    ("random", {"\\ud800": 1}),  # ... not even quoted in an error message
    ("write_console", {"data": "\\ud800"}),
    ("spawn", {"target": "\\ud800.py"}),
]


async def main():
    for call, args in ODD:
        try:
            await trap(call, args)
        except AgentOSError as e:
            await sdk.write_console(f"{e.category} {e.code}\\n")
    await sdk.sleep(30)
'''


def test_odd_traps_get_typed_errors_and_the_home_still_boots(kernel: KernelProcess, agent_file: Any) -> None:
    path = agent_file(ODD_TRAPS, "odd_traps.py")
    with kernel.client() as c:
        pid = c.call("spawn", target=path)
        kernel.wait_for(lambda c: next(p for p in c.call("ps") if p["pid"] == pid)["state"] == "blocked")
        report = "".join(i["data"] for i in c.stream("logs", pid=pid)).splitlines()
        assert report == ["invalid ENOSYS"] * 6 + ["invalid EINVAL"] * 3
        other = c.call("spawn", target="agentos.examples.hello")  # the dispatcher still steps agents
        assert c.call("wait", pid=other, timeout=10)["status"] == 0
    kernel.kill9()
    kernel.boot()  # the journal holds only well-typed, encodable events, so the log replays
    with kernel.client() as c:
        assert c.call("verify")["ok"]
        assert pid in c.call("status")["resumed"]


def test_kernel_serves_after_the_agent_fuzz(live: Live, before_agents: dict[str, Any]) -> None:
    live.assert_serving(before_agents)
    with live.kp.client() as c:  # the dispatcher still steps agents
        pid = c.call("spawn", target="agentos.examples.hello")
        assert c.call("wait", pid=pid, timeout=10)["status"] == 0


@pytest.mark.soak
@SOAK
@given(calls=agent_calls())
def test_agent_fuzz_soak(live: Live, agent_client: Client, calls: list[list[Any]]) -> None:
    check_agent_sees_only_typed_errors(agent_client, live, calls)
