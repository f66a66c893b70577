"""The event payload machinery: the ``Payload`` base, the registry of kinds (``@event``), the
upcasters of older versions, and the canonical JSON codec (``encode``/``decode``). The payload
classes themselves are in ``events.py`` (and ``vfs_events.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from agentos.errors import InvalidArgument


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):  # no cycles
    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1


KINDS: dict[str, type[Payload]] = {}
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def event(kind: str, version: int = 1) -> Callable[[type[Payload]], type[Payload]]:
    def register(cls: type[Payload]) -> type[Payload]:
        cls.KIND, cls.VERSION = kind, version
        KINDS[kind] = cls
        return cls

    return register


_encoder = msgspec.json.Encoder(order="deterministic")


def encode(payload: Payload) -> bytes:
    return _encoder.encode(payload)


_decoders: dict[str, msgspec.json.Decoder] = {}


def decode(kind: str, version: int, text: bytes) -> Payload:
    cls = KINDS.get(kind)
    if cls is None:
        raise KeyError(f"unknown event kind {kind!r}")
    if version > cls.VERSION:
        raise InvalidArgument(
            f"event kind {kind!r} version {version} was written by a newer AgentOS (this one reads up to {cls.VERSION})",
            code="EPROTONOSUPPORT",
        )
    if version != cls.VERSION:
        raw = msgspec.json.decode(text)
        while version < cls.VERSION:
            raw = UPCASTERS[(kind, version)](raw)
            version += 1
        return msgspec.convert(raw, cls)
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(cls)
    return dec.decode(text)
