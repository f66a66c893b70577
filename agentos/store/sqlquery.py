"""Read-only SQL over the log (``agentos query``): the connection, its guard and its bounds.

Every query gets a connection of its own, opened ``SQLITE_OPEN_READONLY`` on the log file (apsw, the
one SQLite library of the process). The kernel's setup runs first on it: the TEMP tables and views of
``sqlviews.py`` as of the query's seq, and the state-backed rows. Then the guard goes on:

* an **authorizer** that allows SELECT, reads, functions (not ``load_extension`` and the shell's file
  functions) and recursive CTEs, and a few schema pragmas that only read; every write, CREATE, DROP,
  ATTACH, DETACH, transaction and other pragma is refused while the statement is prepared (EACCES).
  Of the log's own tables only ``events`` and ``branches`` can be read (``blobs``, ``meta`` and
  ``snapshots`` cannot): SQLite reports a flattened view's reads as the query's own, so the guard
  cannot tell them from a query's. The ``events`` view shadows the table; the table itself, named
  ``main.events``, is the whole log, not bounded by the point;
* a **progress handler** that interrupts the statement once its time is up (ETIMEDOUT); SQLite's
  length limit bounds any one value (a ``zeroblob`` or ``printf`` bomb);
* one statement only, and at most ``limit`` rows and about ``max_bytes`` of cells come back
  (``truncated`` says so). The connection is closed after the query; nothing persists.

The read transaction is one WAL snapshot: a query sees one moment even while the kernel commits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from agentos.errors import InvalidArgument, PermissionDenied, TimedOut
from agentos.store.lineage import Lineage
from agentos.store.sqlviews import STATE_TABLES, VIEW_NAMES, create_statements

PROGRESS_STEPS = 20_000  # VM instructions between deadline checks (~a millisecond or less)
MAX_VALUE_BYTES = 16 * 1024 * 1024  # SQLITE_LIMIT_LENGTH: the largest string or blob a query can make
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
_READ_PRAGMAS = frozenset({"table_info", "table_xinfo", "table_list", "index_list", "index_info"})
# tables a statement may read wherever they are: the schema, JSON and schema-pragma table functions
_DIRECT_READS = frozenset(
    {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "json_each", "json_tree"}
    | {f"pragma_{name}" for name in _READ_PRAGMAS}
)
# the log's tables a query may read: what the views read. Never blobs (every byte ever stored), meta, snapshots
_VIEWED = frozenset({"events", "branches"})
_TABLES = sorted(VIEW_NAMES | set(STATE_TABLES))
_ALLOWED = frozenset({apsw.SQLITE_SELECT, apsw.SQLITE_RECURSIVE})


@dataclass(slots=True)
class Answer:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    ms: float = 0.0


class _Guard:
    """The authorizer: decides each action SQLite asks about while preparing a statement, and
    remembers the first refusal so the error can say what was refused."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(self, op: int, a: str | None, b: str | None, db: str | None, _view: str | None) -> int:
        if op in _ALLOWED:
            return apsw.SQLITE_OK
        if op == apsw.SQLITE_READ:
            if db is None or db == "temp" or a in _DIRECT_READS:  # a CTE's rows, the views, the schema
                return apsw.SQLITE_OK
            if db == "main" and a in _VIEWED:  # not only through a view: a flattened one reads as the query
                return apsw.SQLITE_OK
            return self._refuse(f"reading {db}.{a} (read the views: {', '.join(_TABLES)})")
        if op == apsw.SQLITE_FUNCTION:
            if (b or "").lower() in _DENIED_FUNCTIONS:
                return self._refuse(f"the function {b}")
            return apsw.SQLITE_OK
        if op == apsw.SQLITE_PRAGMA and (a or "").lower() in _READ_PRAGMAS:
            return apsw.SQLITE_OK
        if (a or "").startswith("sqlite_"):  # a CREATE or DROP writes the schema table first
            return self._refuse("a schema change (CREATE, DROP, ALTER)")
        name = apsw.mapping_authorizer_function.get(op, str(op))
        detail = " ".join(str(x) for x in (a, b) if x)
        return self._refuse(f"{name.removeprefix('SQLITE_')} {detail}".strip())

    def _refuse(self, what: str) -> int:
        if self.refused is None:
            self.refused = what
        return apsw.SQLITE_DENY


def open_query(
    path: Path | str,
    seq: int,
    state_rows: dict[str, Iterable[tuple[Any, ...]]],
    lineage: Lineage | None = None,
) -> apsw.Connection:
    """A read-only connection on the log with the views as of ``seq`` and the state-backed tables
    filled from ``state_rows`` (table name -> rows), the guard not yet on (``run`` puts it on)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.set_busy_timeout(5000)
        conn.limit(apsw.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 0)
        for statement in create_statements(seq, lineage):
            conn.execute(statement)
        for table, rows in state_rows.items():
            if table not in STATE_TABLES:
                raise ValueError(f"no state-backed table {table!r}")
            rows = list(rows)
            if rows:
                marks = ",".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO temp.{table} VALUES({marks})", rows)
    except BaseException:
        conn.close()
        raise
    return conn


def run(conn: apsw.Connection, sql: str, *, limit: int, timeout_s: float, max_bytes: int) -> Answer:
    """Run one read-only statement under the guard; close ``conn`` after."""
    guard = _Guard()
    deadline = time.monotonic() + timeout_s
    started = time.perf_counter()
    statements = 0
    answer = Answer(columns=[])

    def one_statement(cursor: apsw.Cursor, _sql: str, _bindings: Any) -> bool:
        nonlocal statements
        statements += 1
        if statements == 1:  # prepared, not yet stepped: its columns are known even if no row comes
            answer.columns = [d[0] for d in cursor.get_description()]
        return statements == 1

    conn.authorizer = guard
    conn.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
    try:
        cursor = conn.cursor()
        cursor.exec_trace = one_statement
        size = 0
        for row in cursor.execute(sql):
            row_size = sum(len(v) + 4 if isinstance(v, str | bytes) else 9 for v in row)
            if len(answer.rows) >= limit or size + row_size > max_bytes:
                if not answer.rows:
                    raise InvalidArgument(
                        f"a row of {row_size} bytes is more than an answer holds", code="E2BIG"
                    )
                answer.truncated = True
                break
            answer.rows.append(list(row))
            size += row_size
        answer.ms = round((time.perf_counter() - started) * 1000, 3)
        return answer
    except apsw.ExecTraceAbort:
        raise InvalidArgument("one SQL statement at a time", code="EINVAL") from None
    except apsw.AuthError:
        raise _refused(guard) from None
    except apsw.SQLError as exc:
        if guard.refused is not None:  # SQLite says "not authorized" as an SQLError too
            raise _refused(guard) from None
        if "cannot modify" in str(exc):  # a write to a view: refused before the authorizer is asked
            raise PermissionDenied(f"queries may only read: {exc}", code="EACCES") from None
        raise InvalidArgument(f"SQL error: {exc}", code="EINVAL") from None
    except apsw.InterruptError:
        raise TimedOut(f"the query ran past its {timeout_s:g} s", code="ETIMEDOUT") from None
    except apsw.ReadOnlyError:
        raise PermissionDenied("queries are read-only", code="EACCES") from None
    except apsw.TooBigError:
        raise InvalidArgument(f"a value past {MAX_VALUE_BYTES} bytes", code="E2BIG") from None
    except apsw.Error as exc:
        raise InvalidArgument(f"the query failed: {exc}", code="EINVAL") from None
    finally:
        conn.close()


def _refused(guard: _Guard) -> PermissionDenied:
    return PermissionDenied(
        f"queries may only read: {guard.refused or 'that statement'} is refused", code="EACCES"
    )
