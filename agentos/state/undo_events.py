"""Undo's own events: which operations an undo undid and which undo a redo re-applied.

Neither changes state (no ``apply``): the world changes they describe are the ordinary events
(``vfs.*``, ``cap.*``, ``group.limits``) emitted with them under the same correlation. They are
what lets the log answer "what is undone, what can be redone" (``kernel/undo.py``, ``docs/timetravel.md``).
"""

from __future__ import annotations

from agentos.state.payload import Payload, event


@event("undo.done")
class UndoDone(Payload):
    """An undo: the operations it inverted (``ops``, newest first) and those it passed over with a
    reason (``skipped``: a revocation, a conflict ...), each by its key (a correlation id, or
    ``@SEQ`` for one without). ``scope``: the process whose operations it took, None kernel-wide."""

    ops: list[str]
    skipped: list[str] = []
    scope: int | None = None
    by: int = 0


@event("redo.done")
class RedoDone(Payload):
    """A redo: the ``undo.done`` (its seq) whose operations it re-applied."""

    undo: int
    ops: list[str] = []
    by: int = 0
