#!/usr/bin/env python3
"""agentos-call: make AgentOS syscalls from shell scripts (docs/abi.md#agentos-call).

ONE file, standard library only, so that a sandboxed program can run it with the system's
``python3`` (``python3 agentos_call.py getpid``), where AgentOS and msgpack are not installed: it
carries a small msgpack codec for the ABI's types, the 4-byte big-endian frame and the hello. The
constants below copy ``agentos.param``'s (a test checks that they agree).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import socket
import struct
import sys
from typing import Any, BinaryIO

ABI_VERSION = 1  # agentos.param.ABI_VERSION
MAX_FRAME_BYTES = 4 * 1024 * 1024  # agentos.param.MAX_FRAME_BYTES
SOCKET_NAME = "kernel.sock"
B64 = "$b64"  # {"$b64": "..."}: bytes, in JSON on the way in and out
REF = "$ref"  # {"$ref": N}: in --batch, the result of the N-th call (1-based)
# bytes arguments: `key=text` is the text's UTF-8 (a test checks this against agentos/abi/syscalls.py)
BYTES_ARGS: dict[str, frozenset[str]] = {"write": frozenset({"data"}), "secret_set": frozenset({"value"})}
# calls that may answer in {id, more} frames: printed one JSON line per item, in either form
STREAMING = frozenset({"events", "logs"})
# exit statuses by the error's category: stable, where codes may grow
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3
EXIT_BY_CATEGORY = {"usage": EXIT_USAGE, "network": EXIT_CONNECT, "not-found": 4, "denied": 5, "invalid": 6}
EXIT_BY_CATEGORY |= {"conflict": 7, "quota": 8, "timeout": 9, "would-block": 9, "io": 10, "security": 11}


class CallError(Exception):
    """A typed error; ``args[0]`` is the kernel's ``err`` object, or one made here in its shape."""


def error(code: str, category: str, message: str) -> CallError:
    return CallError({"code": code, "category": category, "message": message, "retryable": False})


def usage(message: str) -> CallError:
    return error("EUSAGE", "usage", message)  # a bad command line


def lost(why: object = "it closed the connection") -> CallError:
    return error("ECONNRESET", "network", f"lost the kernel: {why}")


# -- msgpack: nil, bool, int, float, str, bin, array, map (the bytes msgpack-python writes) --------

_UINTS = ((0xCC, ">B"), (0xCD, ">H"), (0xCE, ">I"), (0xCF, ">Q"))
_INTS = ((0xD0, ">b"), (0xD1, ">h"), (0xD2, ">i"), (0xD3, ">q"))
# a length header: (the fix form's type byte, the bound below which it is used, the sized forms)
_HEADS: dict[type, tuple[int, int, tuple[tuple[int, str], ...]]] = {
    str: (0xA0, 32, ((0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I"))),
    bytes: (0xC4, 0, ((0xC4, ">B"), (0xC5, ">H"), (0xC6, ">I"))),
    list: (0x90, 16, ((0xDC, ">H"), (0xDD, ">I"))),
    dict: (0x80, 16, ((0xDE, ">H"), (0xDF, ">I"))),
}


def packb(obj: Any) -> bytes:
    out = bytearray()
    _pack(obj, out, 0)
    return bytes(out)


def _pack(o: Any, out: bytearray, depth: int) -> None:
    if depth > 512:
        raise ValueError("value nested too deeply")
    if o is None or o is True or o is False:
        out.append({None: 0xC0, False: 0xC2, True: 0xC3}[o])
    elif isinstance(o, int):
        if -32 <= o < 0x80:  # a fixint: the type byte is the value
            out += struct.pack(">b" if o < 0 else ">B", o)
        else:
            _fit(out, o, _UINTS if o >= 0 else _INTS)
    elif isinstance(o, float):
        out += b"\xcb" + struct.pack(">d", o)
    else:
        kind = next((k for k in (str, bytes, list, dict) if isinstance(o, k)), None)
        kind = bytes if isinstance(o, bytearray | memoryview) else list if isinstance(o, tuple) else kind
        if kind is None:
            raise TypeError(f"cannot encode {type(o).__name__} in msgpack")
        body = o.encode("utf-8") if kind is str else bytes(o) if kind is bytes else o
        fix, bound, forms = _HEADS[kind]
        if len(body) < bound:
            out.append(fix | len(body))
        else:
            _fit(out, len(body), forms)
        if kind is dict:
            for k, v in body.items():
                _pack(k, out, depth + 1)
                _pack(v, out, depth + 1)
        elif kind is list:
            for item in body:
                _pack(item, out, depth + 1)
        else:
            out += body


def _fit(out: bytearray, n: int, forms: tuple[tuple[int, str], ...]) -> None:
    """The smallest form that holds ``n``, as msgpack-python picks."""
    for tag, fmt in forms:
        try:
            packed = struct.pack(fmt, n)
        except struct.error:
            continue
        out.append(tag)
        out += packed
        return
    raise OverflowError(f"{n} does not fit in msgpack")


_FIXED = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q"}
_FIXED |= {0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
_SIZED = {0xC4: (">B", bytes), 0xC5: (">H", bytes), 0xC6: (">I", bytes), 0xD9: (">B", str)}
_SIZED |= {0xDA: (">H", str), 0xDB: (">I", str), 0xDC: (">H", list), 0xDD: (">I", list)}
_SIZED |= {0xDE: (">H", dict), 0xDF: (">I", dict)}


def unpackb(data: bytes) -> Any:
    """One msgpack value, the whole of ``data`` (ValueError on anything else)."""
    try:
        value, end = _unpack(memoryview(data), 0, 0)
    except (IndexError, ValueError, struct.error) as exc:  # ValueError: UnicodeDecodeError too
        raise ValueError(f"not valid msgpack: {exc}") from None
    if end != len(data):
        raise ValueError(f"not valid msgpack: {len(data) - end} bytes after the value")
    return value


def _unpack(b: memoryview, i: int, depth: int) -> tuple[Any, int]:
    if depth > 512:
        raise ValueError("nested too deeply")
    t = b[i]
    i += 1
    if t < 0x80 or t >= 0xE0:  # fixints
        return (t if t < 0x80 else t - 0x100), i
    if t in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[t], i
    if t in _FIXED:
        return struct.unpack_from(_FIXED[t], b, i)[0], i + struct.calcsize(_FIXED[t])
    if t < 0xC0:  # fixmap 0x80, fixarray 0x90, fixstr 0xA0
        n, kind = (t & 0x0F, dict) if t < 0x90 else (t & 0x0F, list) if t < 0xA0 else (t & 0x1F, str)
    elif t in _SIZED:
        fmt, kind = _SIZED[t]
        n, i = struct.unpack_from(fmt, b, i)[0], i + struct.calcsize(fmt)
    else:
        raise ValueError(f"type byte 0x{t:02x} (ext or reserved) is not used by the ABI")
    if kind is bytes or kind is str:
        if i + n > len(b):
            raise IndexError("truncated")
        raw = bytes(b[i : i + n])
        return (raw.decode("utf-8") if kind is str else raw), i + n
    values = []
    for _ in range(2 * n if kind is dict else n):
        value, i = _unpack(b, i, depth + 1)
        values.append(value)
    if kind is list:
        return values, i
    keys = (tuple(k) if isinstance(k, list) else k for k in values[::2])
    return dict(zip(keys, values[1::2], strict=True)), i


# -- the connection ------------------------------------------------------------------------------

STREAMED = object()  # Channel.call's answer when a stream's items went to on_item


class Channel:
    """Frames over one stream socket: a session's connection, or a process agent's fd."""

    def __init__(self, sock: socket.socket, tag: str | None) -> None:
        # request ids: 1, 2, ... on a connection of our own; "<tag>:<n>" on a shared channel
        self.sock, self.tag, self.n = sock, tag, 0

    def call(self, call: str, args: dict[str, Any], cap: int | None = None, on_item: Any = None) -> Any:
        """The result of one call; a streamed answer's items go to ``on_item`` as they come (the
        result is then STREAMED), or without one make the result, a list."""
        self.n += 1
        req_id: int | str = self.n if self.tag is None else f"{self.tag}:{self.n}"
        body = packb({"id": req_id, "call": call, "args": args} | ({} if cap is None else {"cap": cap}))
        if len(body) > MAX_FRAME_BYTES:
            raise error("E2BIG", "invalid", f"request of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
        try:
            self.sock.sendall(struct.pack(">I", len(body)) + body)
        except OSError as exc:
            raise lost(exc) from None
        items: list[Any] = []
        while True:
            msg = self.read()
            if not isinstance(msg, dict) or msg.get("id") not in (req_id, None):
                continue  # an answer to a request that a killed earlier run left on the channel
            if "err" in msg:
                raise CallError(msg["err"] if isinstance(msg["err"], dict) else {"message": str(msg["err"])})
            if "more" not in msg:
                ok = msg.get("ok")
                return ok if not (items and ok is None) else items if on_item is None else STREAMED
            items.append(msg["more"] if on_item is None else on_item(msg["more"]))

    def read(self) -> Any:
        (length,) = struct.unpack(">I", self._exact(4))
        if length > MAX_FRAME_BYTES:
            raise error("E2BIG", "invalid", f"reply frame of {length} bytes")
        try:
            return unpackb(self._exact(length))
        except ValueError as exc:
            raise error("EBADMSG", "internal", f"malformed reply from the kernel: {exc}") from None

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:  # recv, not a buffered file: never read past our frames on a shared fd
            try:
                chunk = self.sock.recv(n - len(buf))
            except TimeoutError:
                raise error("ETIMEDOUT", "network", "the kernel did not answer in time") from None
            except OSError as exc:
                raise lost(exc) from None
            if not chunk:
                raise lost()
            buf += chunk
        return bytes(buf)


def connect(home: str | None, timeout: float | None) -> Channel:
    """The kernel of ``home`` (a session), else the channel on $AGENTOS_FD, else $AGENTOS_HOME's."""
    fd_text = os.environ.get("AGENTOS_FD", "")
    if home is None and fd_text:
        try:
            sock = socket.socket(fileno=int(fd_text))
        except (ValueError, OSError) as exc:
            raise error("EBADF", "network", f"AGENTOS_FD={fd_text!r} is not a socket ({exc})") from None
        # one caller at a time on a shared channel (a shell's background jobs inherit the same fd);
        # a POSIX lock is per process and goes away with it, even on kill -9
        fcntl.lockf(sock.fileno(), fcntl.LOCK_EX)
        sock.settimeout(timeout)
        ch = Channel(sock, f"c{os.getpid()}.{os.urandom(4).hex()}")
        ch.call("hello", {"abi": ABI_VERSION})
        return ch
    home = home or os.environ.get("AGENTOS_HOME") or os.path.expanduser("~/.agentos")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        dirfd = os.open(home, os.O_PATH | os.O_DIRECTORY)  # any length of home path (docs/abi.md)
        try:
            sock.connect(f"/proc/self/fd/{dirfd}/{SOCKET_NAME}")
        finally:
            os.close(dirfd)
    except OSError as exc:
        sock.close()
        raise error("ECONNREFUSED", "network", f"no kernel is running on {home}: {exc.strerror}") from None
    ch = Channel(sock, None)
    ch.call("hello", {"abi": ABI_VERSION, "client": "agentos-call", "cwd": os.getcwd()})
    return ch


# -- arguments and output -----------------------------------------------------------------------


def from_json(value: Any) -> Any:
    """JSON to call arguments: ``{"$b64": "..."}`` becomes bytes."""
    if isinstance(value, dict):
        if set(value) == {B64} and isinstance(value[B64], str):
            return base64.b64decode(value[B64], validate=True)
        return {k: from_json(v) for k, v in value.items()}
    return [from_json(v) for v in value] if isinstance(value, list) else value


def to_json(value: Any) -> Any:
    """A result to JSON: bytes become ``{"$b64": "..."}``, map keys strings."""
    if isinstance(value, bytes):
        return {B64: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(to_json(k)): to_json(v) for k, v in value.items()}
    return [to_json(v) for v in value] if isinstance(value, list | tuple) else value


def parse_pairs(call: str, pairs: list[str], base: dict[str, Any], stdin: BinaryIO) -> dict[str, Any]:
    """``key=value`` (JSON when it parses, else a string), ``key:s=`` a string, ``key:b=`` UTF-8
    bytes, ``key:b64=`` base64 bytes; a value ``-`` is stdin's bytes."""
    args, used_stdin = dict(base), False
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key, _, kind = key.partition(":")
        if not sep or not key or kind not in ("", "s", "b", "b64"):
            raise usage(f"argument {pair!r} is not key=value, key:s=, key:b= or key:b64=")
        if text == "-" and kind in ("", "b"):
            if used_stdin:
                raise usage("only one argument can read stdin")
            args[key], used_stdin = stdin.read(), True
        elif kind == "s":
            args[key] = text
        elif kind == "b" or (kind == "" and key in BYTES_ARGS.get(call, ())):
            args[key] = text.encode("utf-8", "surrogateescape")
        elif kind == "b64":
            try:
                args[key] = base64.b64decode(text, validate=True)
            except ValueError:
                raise usage(f"{key}: not base64") from None
        else:
            try:
                args[key] = from_json(json.loads(text))
            except ValueError:
                args[key] = text
    return args


def show(out: BinaryIO, raw: bool, value: Any) -> None:
    """One result or item: a JSON line; with ``raw``, bytes and strings as they are (None: nothing)."""
    if raw and isinstance(value, bytes | str):
        out.write(value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape"))
    elif not (raw and value is None):
        out.write(json.dumps(to_json(value), ensure_ascii=False).encode("utf-8", "surrogateescape") + b"\n")
    out.flush()  # as it comes: `events follow=true` never ends


def run_one(ch: Channel, call: str, args: dict[str, Any], opts: argparse.Namespace, out: BinaryIO) -> None:
    ok = ch.call(call, args, opts.cap, on_item=lambda item: show(out, opts.raw, item))
    if ok is STREAMED or (ok is None and call in STREAMING):
        return  # its items are out already (or there were none)
    for value in ok if isinstance(ok, list) and (opts.lines or call in STREAMING) else [ok]:
        show(out, opts.raw, value)


def run_batch(ch: Channel, stdin: BinaryIO, cap: int | None, out: BinaryIO) -> None:
    """Each stdin line ``{"call": C, "args": {...}}`` or ``[C, {...}]``; one ``{"ok": R}`` line per
    call; ``{"$ref": N}`` anywhere in args is the N-th call's result. Stops at the first error."""
    results: list[Any] = []

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {REF}:
            if not isinstance(value[REF], int) or not 1 <= value[REF] <= len(results):
                raise usage(f"batch line {len(results) + 1}: no result {value[REF]!r} yet")
            return results[value[REF] - 1]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return [resolve(v) for v in value] if isinstance(value, list) else value

    for line in stdin.read().decode("utf-8").splitlines():
        try:
            req = json.loads(line)
            call, args = (req["call"], req.get("args") or {}) if isinstance(req, dict) else req
            assert isinstance(call, str) and isinstance(args, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise usage(f"batch line {len(results) + 1}: not a call: {line[:200]!r}") from None
        results.append(ch.call(call, resolve(from_json(args)), cap))
        show(out, False, {"ok": results[-1]})


EPILOG = """\
values: key=VALUE is JSON when it parses (n=5 an int, flags='["read"]' a list), else a string;
  key:s=TEXT a string; key:b=TEXT its UTF-8 bytes; key:b64=B64 bytes; key=- stdin's bytes.
  write's data and secret_set's value take TEXT as bytes. In JSON, {"$b64": "..."} is bytes.
output: the result as one JSON line; events/logs (and lists with --lines): one line per item.
exit: 0 ok; 1 other error; 2 usage; 3 no kernel / connection lost; 4 not-found; 5 denied;
  6 invalid; 7 conflict; 8 quota; 9 timeout; 10 io; 11 security. Errors: "agentos-call: CODE: message".
connects to: --home DIR, else $AGENTOS_FD (a process agent's channel), else $AGENTOS_HOME, ~/.agentos.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentos-call",
        description="Make one AgentOS syscall and print its result as JSON.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("call", nargs="?", help="the syscall's name (docs/abi.md#the-table)")
    p.add_argument("pairs", nargs="*", metavar="key=value", help="its arguments")
    p.add_argument("--json", dest="json_args", metavar="ARGS", help="arguments as a JSON map")
    p.add_argument("--raw", action="store_true", help="bytes and strings as they are, not JSON")
    p.add_argument("--lines", action="store_true", help="a list result: one JSON line per item")
    p.add_argument("--batch", action="store_true", help="calls as JSON lines on stdin, in one connection")
    p.add_argument("--home", help="the kernel's home: connect to its socket, as a session")
    p.add_argument("--cap", type=int, help="authorise the call with this capability handle only")
    p.add_argument("--timeout", type=float, help="give up after this many seconds without an answer")
    p.add_argument("--version", action="version", version=f"agentos-call (ABI {ABI_VERSION})")
    return p


def main(argv: list[str] | None = None) -> int:
    opts = parser().parse_intermixed_args(argv)  # options anywhere, as in `call k=v --raw k=v`
    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        if opts.batch == bool(opts.call):
            raise usage("name a call, or give --batch (not both)")
        try:
            base = from_json(json.loads(opts.json_args or "{}"))
        except ValueError as exc:
            raise usage(f"--json: {exc}") from None
        if not isinstance(base, dict):
            raise usage("--json: not a JSON map")
        args = parse_pairs(opts.call or "", opts.pairs, base, stdin)
        ch = connect(opts.home, opts.timeout)
        try:
            if opts.batch:
                run_batch(ch, stdin, opts.cap, out)
            else:
                run_one(ch, opts.call, args, opts, out)
        finally:
            ch.sock.close()
    except CallError as exc:
        err = exc.args[0]
        sys.stderr.write(f"agentos-call: {err.get('code', 'ERROR')}: {err.get('message', '')}\n")
        return EXIT_BY_CATEGORY.get(str(err.get("category")), EXIT_ERROR)
    except BrokenPipeError:  # `agentos-call events follow=true | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
