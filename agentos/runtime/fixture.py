"""Agent fixtures: a recorded run in one portable, versioned JSON file (``agentos record export``),
and running (possibly changed) agent code against it offline (``agentos replay --fixture``).

The file holds the agent's target, argv, its code as spawned, the home's hash seed and how the
run ended, and its journal: per call ``n`` the call's name, ``args_digest`` (what replay compares),
an ``args`` summary for people, and the outcome as replay needs it (result, error, cancellation;
``blocked``: parked and never answered). A ``sha256`` over the canonical encoding of everything
else is verified on load, so an edited or damaged fixture is refused; so is one whose code does
not match its ``code`` hash. docs/timetravel.md describes the format.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from agentos import __version__
from agentos.errors import AgentOSError, InternalError, InvalidArgument, NotFound, SecurityViolation
from agentos.kernel import progload
from agentos.runtime import loader, offline
from agentos.runtime.agents import Journal
from agentos.state import events as ev
from agentos.state.proc import Process
from agentos.store.log import blob_hash

FORMAT = "agentos-fixture"
VERSION = 1
MAX_FIXTURE_BYTES = 512 * 1024 * 1024  # a larger file is refused before it is read
_canonical = msgspec.json.Encoder(order="deterministic")


class Call(msgspec.Struct, kw_only=True, omit_defaults=True):
    n: int
    call: str
    args_digest: str = ""
    args: str = "?"  # a summary for people ("?": not recovered)
    result: Any = None
    result_bytes: bool = False  # result is base64 of bytes
    error: dict[str, Any] | None = None
    cancelled: bool = False
    signal: str | None = None
    blocked: bool = False  # parked and never answered: the recording ends inside this call
    deadline_ns: int | None = None


class Fixture(msgspec.Struct, kw_only=True):
    format: str
    version: int
    agentos: str  # the version that wrote it
    pid: int
    epoch: int
    target: str
    entry: str
    argv: list[str]
    code: str  # blob hash of the source
    source: str  # the code as spawned, utf-8 (source_encoding "base64" when it is not)
    source_encoding: str = "utf-8"
    hash_seed: str | None = None  # the home's PYTHONHASHSEED: replay under the same one
    exit: dict[str, Any] | None = None  # how the run ended; None: still running when exported
    calls: list[Call] = []
    sha256: str = ""

    def source_bytes(self) -> bytes:
        if self.source_encoding == "base64":
            return base64.b64decode(self.source)
        return self.source.encode()

    def recording(self) -> offline.Recording:
        journal = Journal()
        for c in self.calls:
            if c.blocked:
                journal.intents[c.n] = ev.SyscallBlocked(
                    pid=self.pid, epoch=self.epoch, task=0, n=c.n, call=c.call, deadline_ns=c.deadline_ns
                )
                continue
            journal.done[c.n] = ev.SyscallDone(
                pid=self.pid,
                epoch=self.epoch,
                task=0,
                n=c.n,
                call=c.call,
                args_digest=c.args_digest,
                result=c.result,
                result_bytes=c.result_bytes,
                error=c.error,
                cancelled=c.cancelled,
                signal=c.signal,
            )
        return offline.Recording(journal, self.pid, self.exit, {c.n: c.args for c in self.calls})


def _digest(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return "sha256:" + hashlib.sha256(_canonical.encode(body)).hexdigest()


def calls_from_steps(steps: list[dict[str, Any]]) -> list[Call]:
    """The journal records of ``replay_steps`` answers (asked with ``raw``), as fixture calls."""
    calls = []
    for s in steps:
        done, intent = s.get("done"), s.get("intent")
        if done is not None:
            keep = {k: v for k, v in done.items() if k in Call.__struct_fields__ and k != "args"}
            calls.append(msgspec.convert({**keep, "n": s["n"]}, Call))
        elif intent is not None:
            calls.append(
                Call(n=s["n"], call=intent["call"], blocked=True, deadline_ns=intent.get("deadline_ns"))
            )
    return calls


def build(head: dict[str, Any], source: bytes, calls: list[Call], hash_seed: str | None) -> Fixture:
    try:
        text, encoding = source.decode(), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(source).decode(), "base64"
    return Fixture(
        format=FORMAT,
        version=VERSION,
        agentos=__version__,
        pid=head["pid"],
        epoch=head["epoch"],
        target=head["target"],
        entry=head["entry"] or "main",
        argv=list(head["argv"]),
        code=head["code"],
        source=text,
        source_encoding=encoding,
        hash_seed=hash_seed,
        exit=head["exit"],
        calls=calls,
    )


def save(fx: Fixture, path: Path) -> str:
    """Write ``fx`` to ``path`` atomically, with its content hash inside; return the hash."""
    doc = msgspec.to_builtins(fx)
    doc["sha256"] = _digest(doc)
    data = msgspec.json.format(_canonical.encode(doc), indent=1)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data + b"\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return doc["sha256"]


def load(path: Path) -> Fixture:
    """Read and verify a fixture: its format and version, its content hash, its code's hash."""
    try:
        if path.stat().st_size > MAX_FIXTURE_BYTES:
            raise InvalidArgument(f"{path} is larger than {MAX_FIXTURE_BYTES} bytes", code="E2BIG")
        doc = msgspec.json.decode(path.read_bytes())
    except FileNotFoundError:
        raise NotFound(f"no fixture file {path}") from None
    except (OSError, msgspec.DecodeError) as exc:
        raise InvalidArgument(f"{path} is not a fixture file: {exc}", code="EBADMSG") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidArgument(f"{path} is not an agentos fixture (format {FORMAT!r})", code="EBADMSG")
    if doc.get("version") != VERSION:
        raise InvalidArgument(
            f"{path} is fixture version {doc.get('version')!r}; this agentos reads version {VERSION}",
            code="EBADMSG",
        )
    if doc.get("sha256") != _digest(doc):
        raise SecurityViolation(f"{path} does not match its content hash: it was changed after export")
    try:
        fx = msgspec.convert(doc, Fixture)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"{path} is a malformed fixture: {exc}", code="EBADMSG") from None
    if blob_hash(fx.source_bytes()) != fx.code:
        raise SecurityViolation(f"the code in {path} does not match its hash {fx.code[:12]}")
    return fx


def instantiate(source: bytes, filename: str, entry: str, package: str, argv: list[str], pid: int) -> Any:
    """The agent's coroutine, loaded as the kernel loads it (``runtime/loader.py``)."""
    proc = Process(
        pid=pid, ppid=0, name="fixture", kind="agent", filename=filename, entry=entry, package=package
    )
    return loader.instantiate(proc, source, argv)


def recover_args(
    head: dict[str, Any], source: bytes, rec: offline.Recording, timeout: float
) -> offline.Outcome:
    """Re-run the stored code against its own journal: the arguments of every call it reproduces."""
    coro = instantiate(
        source, head["filename"], head["entry"] or "main", head["package"], head["argv"], head["pid"]
    )
    try:
        return offline.drive(coro, rec, timeout=timeout)
    finally:
        loader.unload(head["pid"])


def run(fx: Fixture, target: str, argv: list[str] | None, timeout: float) -> offline.Outcome:
    """Run ``target`` (a path or module, as ``agentos run`` takes it) against the fixture, offline."""
    prog = progload.resolve(target, os.getcwd())
    try:
        coro = instantiate(
            prog.source, prog.filename, prog.entry, prog.package, fx.argv if argv is None else argv, fx.pid
        )
    except BaseException as exc:  # noqa: BLE001 - code that does not load diverges before its first call
        what = f"does not load: {type(exc).__name__}: {str(exc)[:200]}"
        return offline.Outcome(divergence=offline.Divergence(0, "load", "code that loads", what))
    try:
        return offline.drive(coro, fx.recording(), timeout=timeout)
    finally:
        loader.unload(fx.pid)


# -- ``python -m agentos.runtime.fixture``: the offline runs, for the CLI (userland never loads agent
# code itself: it asks this process, started under the recording's PYTHONHASHSEED) -------------------


def _outcome(out: offline.Outcome) -> dict[str, Any]:
    d = out.divergence
    return {
        "matched": out.matched,
        "calls": out.calls,
        "status": out.status,
        "how": out.how,
        "divergence": None if d is None else {f: getattr(d, f) for f in d.__slots__},
        "report": None if d is None else d.report(),
        "args": {str(n): a for n, a in out.args.items()},
        "names": {str(n): c for n, c in out.names.items()},
    }


def serve(req: dict[str, Any]) -> dict[str, Any]:
    """One request: ``recover`` (arguments of recorded calls), ``export`` (write a fixture), ``run``."""
    op, timeout = req.get("op"), float(req.get("timeout", 60.0))
    if op == "run":
        fx = load(Path(req["fixture"]))
        out = _outcome(run(fx, req["target"], req.get("argv"), timeout))
        return {**out, "fixture": {"pid": fx.pid, "target": fx.target, "calls": len(fx.calls)}}
    head, source = req["head"], base64.b64decode(req["source"])
    fx = build(head, source, calls_from_steps(req["steps"]), req.get("hash_seed"))
    rerun = recover_args(head, source, fx.recording(), timeout)
    for call in fx.calls:
        call.args = rerun.args.get(call.n, "?")
    reply = _outcome(rerun)
    if op == "export":
        reply["sha256"], reply["saved"] = save(fx, Path(req["file"])), len(fx.calls)
    return reply


def main() -> int:
    reply_to, sys.stdout = (
        sys.stdout.buffer,
        sys.stderr,
    )  # the agent's module-level print()s stay off the reply
    try:
        reply = serve(msgspec.json.decode(sys.stdin.buffer.read()))
    except AgentOSError as err:
        reply = {"error": err.to_wire()}
    except (KeyError, TypeError, ValueError, msgspec.DecodeError) as exc:
        reply = {"error": InternalError(f"malformed request: {type(exc).__name__}: {exc}").to_wire()}
    reply_to.write(msgspec.json.encode(reply))
    reply_to.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
