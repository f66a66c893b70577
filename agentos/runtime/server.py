"""The socket ABI server: every client connection is a session process (docs/abi.md).

Frames are length-prefixed msgpack (``agentos.abi.frames``). The first request must be
``hello`` (it carries the ABI version and makes the connection a session process, child of
init); after that each request ``{id, call, args}`` goes through ``Kernel.call`` like an
agent's trap. Malformed frames, unknown calls and wrong types get typed errors and the
kernel keeps running; an oversized frame also closes its connection.

Output-commit rule: a reply is queued with the sequence number the kernel had reached when it
was produced and leaves only once the log is durable up to it; streamed items (``events
--follow``, ``logs --follow``) are taken from committed batches only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agentos import __version__, param
from agentos.abi.frames import FrameDecoder, FrameTooLarge, MalformedFrame, encode_frame
from agentos.abi.syscalls import HelloArgs, decode_args
from agentos.errors import AgentOSError, InternalError, InvalidArgument
from agentos.kernel import sysproc
from agentos.kernel.calls import Block, Caller, Stream
from agentos.kernel.kernel import Kernel
from agentos.state import events as ev
from agentos.store.events import EventRecord

log = logging.getLogger("agentos.server")
MAX_SESSIONS = 1024


class Session(asyncio.Protocol):
    # "session": a client, made a process by its hello; "process": a process agent's channel, bound
    # to its pid from the start (runtime/procagents.py) — its hello only exchanges the ABI version
    kind = "session"

    def __init__(self, server: SocketServer) -> None:
        self.server = server
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.pid: int | None = None
        self.outbox: list[tuple[int, bytes]] = []
        self.streams: dict[Any, Stream] = {}
        self.parked: set[Any] = set()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self.server.sessions) >= MAX_SESSIONS:
            self.send_now({"id": None, "err": InternalError("too many sessions", code="EAGAIN").to_wire()})
            transport.close()
            return
        self.server.sessions.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except (FrameTooLarge, MalformedFrame) as err:
            self.send_now({"id": None, "err": err.to_wire()})
            self.close()
            return
        for message in messages:
            if self.closed:
                return
            self.server.handle(self, message)

    def pause_writing(self) -> None:  # a client that stops reading stops being read
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.ended(self)

    def send_now(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(encode_frame(message))
            except AgentOSError as err:  # a reply too large to frame
                self.transport.write(encode_frame({"id": message.get("id"), "err": err.to_wire()}))

    def reply(self, seq: int, message: dict[str, Any]) -> None:
        """Send once the log is durable up to ``seq`` (in order with earlier replies)."""
        if not self.outbox and seq <= self.server.kernel.committer.durable_seq:
            self.send_now(message)
        else:
            try:
                frame = encode_frame(message)
            except AgentOSError as err:  # a reply too large to frame becomes its error
                frame = encode_frame({"id": message.get("id"), "err": err.to_wire()})
            self.outbox.append((seq, frame))

    def flush(self, durable: int) -> None:
        sent = 0
        for seq, frame in self.outbox:
            if seq > durable:
                break
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(frame)
            sent += 1
        del self.outbox[:sent]

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class SocketServer:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.sessions: set[Session] = set()
        self.by_pid: dict[int, Session] = {}
        self.server: asyncio.Server | None = None
        kernel.instruments.append(self)

    async def listen(self, path: str) -> None:
        self.server = await asyncio.get_running_loop().create_unix_server(lambda: Session(self), path)

    # -- requests --------------------------------------------------------------------------

    def handle(self, s: Session, message: Any) -> None:
        req_id = message.get("id") if isinstance(message, dict) else None
        if not isinstance(req_id, int | str | None) or (isinstance(req_id, str) and len(req_id) > 64):
            req_id = None
        try:
            if not isinstance(message, dict) or not isinstance(message.get("call"), str):
                raise InvalidArgument("a request is a map {id, call, args}", code="EBADMSG")
            call, args = message["call"], message.get("args")
            if s.pid is None or (call == "hello" and s.kind == "process"):
                self._hello(s, req_id, call, args)
                return
            use_cap = message.get("cap")
            if use_cap is not None and (type(use_cap) is not int or not 0 < use_cap < 2**62):
                raise InvalidArgument(
                    "cap, when given, is a capability handle: a positive int", code="EBADMSG"
                )
            caller = Caller(s.pid, s.kind, request=str(req_id), use_cap=use_cap)
            outcome = self.kernel.call(caller, call, args)
        except AgentOSError as err:
            s.reply(self.kernel.head_seq, {"id": req_id, "err": err.to_wire()})
            return
        except Exception as exc:  # a kernel bug: report it, keep serving
            log.exception(
                "internal error handling %r", message.get("call") if isinstance(message, dict) else message
            )
            s.reply(
                self.kernel.head_seq,
                {"id": req_id, "err": InternalError(f"{type(exc).__name__}: {exc}").to_wire()},
            )
            return
        if isinstance(outcome, Block):
            token = (s.pid, req_id, id(s))
            s.parked.add(token)
            self.kernel.park(
                token, caller, outcome, lambda result, exc: self._unparked(s, token, req_id, result, exc)
            )
        elif isinstance(outcome, Stream):
            self._stream(s, req_id, outcome)
        else:
            s.reply(self.kernel.head_seq, {"id": req_id, "ok": outcome.result, "seq": self.kernel.head_seq})

    def _hello(self, s: Session, req_id: Any, call: str, args: Any) -> None:
        if call != "hello":
            raise InvalidArgument("the first request on a connection must be hello", code="EPROTO")
        hello = decode_args(HelloArgs, args)
        assert isinstance(hello, HelloArgs)
        if hello.abi != param.ABI_VERSION:
            s.send_now(
                {
                    "id": req_id,
                    "err": InvalidArgument(
                        f"ABI version {hello.abi} is not supported; this kernel speaks {param.ABI_VERSION}",
                        code="EPROTONOSUPPORT",
                    ).to_wire(),
                }
            )
            s.close()
            return
        if s.pid is not None:  # a process agent's channel: it already is its process
            answer = {"abi": param.ABI_VERSION, "pid": s.pid, "version": __version__}
            s.reply(self.kernel.head_seq, {"id": req_id, "ok": answer, "seq": self.kernel.head_seq})
            return
        pid = self.kernel.state.ledger.next_pid
        self.kernel.emit(ev.ProcSpawned(pid=pid, ppid=param.INIT_PID, name=hello.client, kind="session"), pid)
        seq = self.kernel.emit(ev.ProcStarted(pid=pid), pid)
        s.pid = pid
        self.by_pid[pid] = s
        if hello.cwd:
            self.kernel.sessions_cwd[pid] = hello.cwd
        s.reply(
            seq,
            {"id": req_id, "ok": {"abi": param.ABI_VERSION, "pid": pid, "version": __version__}, "seq": seq},
        )

    def _unparked(self, s: Session, token: Any, req_id: Any, result: Any, exc: BaseException | None) -> None:
        s.parked.discard(token)
        if isinstance(exc, AgentOSError):
            s.reply(self.kernel.head_seq, {"id": req_id, "err": exc.to_wire()})
        else:
            s.reply(self.kernel.head_seq, {"id": req_id, "ok": result, "seq": self.kernel.head_seq})

    def _stream(self, s: Session, req_id: Any, stream: Stream) -> None:
        for item in stream.backlog:
            s.reply(self.kernel.head_seq, {"id": req_id, "more": item})
        if stream.follow is None:
            s.reply(self.kernel.head_seq, {"id": req_id, "ok": None})
        else:
            s.streams[req_id] = stream

    # -- instrument hooks ------------------------------------------------------------------

    def on_event(self, seq: int, e: ev.Payload) -> None:
        if isinstance(e, ev.ProcExited) and e.pid in self.by_pid:
            session = self.by_pid.pop(e.pid)
            asyncio.get_running_loop().call_soon(session.close)

    def on_committed(self, batch: list[EventRecord]) -> None:
        durable = batch[-1].seq
        for s in list(self.sessions):
            for req_id, stream in list(s.streams.items()):
                for r in batch:
                    item = stream.follow(r) if stream.follow else None
                    if item is not None:
                        s.reply(r.seq, {"id": req_id, "more": item})
                    if stream.until is not None and stream.until(r):
                        del s.streams[req_id]
                        s.reply(r.seq, {"id": req_id, "ok": None, "seq": r.seq})
                        break
            s.flush(durable)

    def ended(self, s: Session) -> None:
        if s not in self.sessions:
            return  # already ended (at shutdown, before its connection_lost)
        self.sessions.discard(s)
        for token in s.parked:
            self.kernel.unpark(token)
        s.parked.clear()
        if s.pid is None:
            return
        if self.by_pid.get(s.pid) is s:  # (a restarted process agent's new channel stays)
            del self.by_pid[s.pid]
        self.kernel.sessions_cwd.pop(s.pid, None)
        p = self.kernel.state.world.procs.get(s.pid)
        if s.kind == "session" and p is not None and p.alive and self.kernel.fatal is None:
            events, blobs = sysproc.exit_events(self.kernel, p, 0, reason="disconnected")
            self.kernel.emit_all(events, s.pid, blobs=blobs)

    async def close(self) -> None:
        """Stop listening, deliver what is durable, and end every session (before the kernel's
        own shutdown event, so the log tells the story in order)."""
        if self.server is not None:
            self.server.close()
        for s in list(self.sessions):
            s.flush(self.kernel.committer.durable_seq)
            s.close()
            self.ended(s)
