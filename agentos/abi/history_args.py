"""Argument schemas of the calls on history: a file's versions, undo, and the past (``at``,
``diff``, ``query``, ``bisect``). Part of the ABI, beside ``syscalls.py`` (whose ``Args`` and path types they use)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from agentos import param
from agentos.abi.syscalls import Args, Path, Size

Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]  # an event's sequence number


class FsHistoryArgs(Args):
    path: Path
    since: Seq = 0  # rows after this seq only (paging)
    limit: Annotated[int, msgspec.Meta(ge=1, le=param.HISTORY_MAX_ROWS)] = param.HISTORY_MAX_ROWS


class FsReadVersionArgs(Args):
    """``n`` bytes from ``offset`` of the file's content as of ``seq`` (``exact``: the version cut at ``seq``)."""

    path: Path
    seq: Seq
    offset: Size = 0
    n: Annotated[int, msgspec.Meta(ge=0, le=param.MAX_ARG_BYTES)] = param.MAX_ARG_BYTES
    exact: bool = False


class FsRestoreArgs(Args):
    path: Path
    seq: Seq
    exact: bool = False


class ReadVersionRange(Args):
    """A file's bytes at a past point (``at POINT cat``): ``n`` from ``offset``."""

    path: Path
    offset: Size = 0
    n: Annotated[int, msgspec.Meta(ge=0, le=param.MAX_ARG_BYTES)] = param.MAX_ARG_BYTES


class AtArgs(Args):
    """A read-only call answered from the state at ``point`` (a seq, a time, a checkpoint name)."""

    point: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    what: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]  # the call: ps, stat, cat ...
    args: dict[str, Any] | None = None


class DiffArgs(Args):
    """What changed from point ``a`` to point ``b`` (``kernel/pastdiff.py``); ``a`` after ``b`` is refused."""

    a: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    b: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    files_only: bool = False
    content: bool = True  # unified diffs of text files (sizes and hashes are always there)
    max_files: Annotated[int, msgspec.Meta(ge=1, le=param.DIFF_MAX_FILES)] = param.DIFF_FILES
    max_diff_bytes: Annotated[int, msgspec.Meta(ge=0, le=param.DIFF_MAX_BYTES)] = param.DIFF_BYTES


Point = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]  # a seq, a time, a checkpoint name
Sql = Annotated[str, msgspec.Meta(min_length=1, max_length=65_536)]
QuerySeconds = Annotated[float, msgspec.Meta(gt=0, le=param.QUERY_MAX_SECONDS)]


class QueryArgs(Args):
    """Read-only SQL over the log's views (``agentos query``), as of ``at`` (nil: now)."""

    sql: Sql
    at: Point | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=param.QUERY_MAX_ROWS)] = param.QUERY_ROWS
    timeout: QuerySeconds = param.QUERY_SECONDS


class BisectArgs(Args):
    """The first event after ``good`` at which ``sql`` returns a row (``agentos bisect``)."""

    sql: Sql
    good: Point = "0"
    bad: Point | None = None  # nil: the durable head
    timeout: QuerySeconds = param.QUERY_SECONDS  # per probe


class FsUndoArgs(Args):
    """Revert the file changes of ``pid`` (``tree``: and its descendants), or of one call (``correlation``)."""

    pid: Annotated[int, msgspec.Meta(ge=0, le=2**62)] | None = None
    tree: bool = False
    correlation: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    dry_run: bool = False


class ReplayStepsArgs(Args):
    """An agent's recorded calls ``start``.. (``agentos replay PID``); ``raw``: each call's journal
    record as stored (``record export``); ``code``: the agent's source instead of its calls."""

    pid: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    start: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=param.REPLAY_MAX_STEPS)] = param.REPLAY_STEPS
    raw: bool = False
    code: bool = False


# -- branches and checkpoints (kernel/systime.py) ---------------------------------------------------

CheckpointName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")]
"""Starts with a letter or _, so it never reads as a seq, a time or BRANCH:SEQ."""


class RewindArgs(Args):
    """Continue the live kernel from ``point`` on a new branch (named ``name``)."""

    point: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    name: Annotated[str, msgspec.Meta(max_length=64)] = ""


class SwitchArgs(Args):
    branch: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class CheckpointArgs(Args):
    name: CheckpointName
    point: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "now"


class CheckpointNameArgs(Args):
    name: CheckpointName
