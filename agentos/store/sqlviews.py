"""The views ``agentos query`` reads: SQL over the log's ``events`` table, as of one sequence number.

Each view is a TEMP VIEW made per query on the query's own connection, with the point's seq as an
integer literal (``seq <= N`` in every branch of it), so one query sees one moment and nothing past
it. Unqualified, ``events`` is the temp view: it shadows the log's table of that name. The views
fold the log itself; two tables come from the projected state instead, because folding them in SQL
would cost more than reading the state (they are loaded by the kernel into TEMP tables before the
query runs): ``files`` (the file tree at the point, with paths) and ``quota_usage`` (the ledger's
usage per resource group). ``file_versions`` takes its ``path`` from ``files``.

The hot WHERE terms are the log's indexes: ``kind`` (events_kind), ``pid`` (events_pid: the causing
pid, which is the agent for its own ``sys.*``, ``console.write`` and ``ledger.cpu``), and the file
changes' ``json_extract(payload, '$.pid')`` (events_vfs_pid, used only with ``VFS_CHANGES`` repeated
verbatim). Columns a query does not name are not computed (SQLite drops them when it flattens a
view), so the per-process sums cost only the queries that read them.
"""

from __future__ import annotations

import re

from agentos.store.lineage import Lineage
from agentos.store.log import VFS_CHANGES

# the state-backed tables: name -> CREATE statement (filled by the kernel, before the authorizer)
STATE_TABLES = {
    "files": (
        "CREATE TEMP TABLE files(ino INTEGER PRIMARY KEY, path TEXT, kind TEXT, mode INTEGER, "
        "size INTEGER, nlink INTEGER, version_seq INTEGER, created_seq INTEGER, created_by INTEGER, "
        "group_name TEXT, mtime_ns INTEGER, target TEXT)"
    ),
    "quota_usage": (
        "CREATE TEMP TABLE quota_usage(group_name TEXT, what TEXT, used REAL, quota REAL, "
        "PRIMARY KEY(group_name, what))"
    ),
}
# which views read which state tables (a query naming neither needs no state)
STATE_NEEDS = {"files": "files", "file_versions": "files", "quota_usage": "quota_usage"}

_J = "json_extract(payload, '$.{}')"
_PROC_LIFE = (
    "'proc.started', 'proc.exited', 'proc.reaped', 'proc.stopped', 'proc.quarantined', "
    "'proc.continued', 'proc.reparented'"
)
_AUDIT_KINDS = (
    "'audit.denied', 'cap.granted', 'cap.transferred', 'cap.revoked', 'cap.expired', "
    "'approval.requested', 'approval.decided'"
)
_RESULT = _J.format("result")

VIEWS: dict[str, str] = {
    "events": """
SELECT seq, branch, kind, version, pid, syscall, correlation, ts, payload
FROM main.events WHERE seq <= {N}""",
    # one row per sys.done: an agent's completed call (sessions' calls are not journaled)
    "syscalls": f"""
SELECT seq, ts, pid, json_extract(payload, '$.call') AS name, json_extract(payload, '$.n') AS n,
  json_extract(payload, '$.epoch') AS epoch, json_extract(payload, '$.args_digest') AS args_digest,
  CASE WHEN json_type(payload, '$.error') IS NULL AND json_extract(payload, '$.cancelled') IS NOT 1
    THEN 1 ELSE 0 END AS ok,
  coalesce(json_extract(payload, '$.error.code'),
    CASE WHEN json_extract(payload, '$.cancelled') THEN 'ECANCELED' END) AS error,
  json_extract(payload, '$.error.message') AS message,
  json_extract(payload, '$.signal') AS signal,
  CASE WHEN json_extract(payload, '$.result_bytes') THEN printf('<%d bytes>', length(rtrim({_RESULT}, '=')) * 3 / 4)
    WHEN json_type(payload, '$.result') IN ('object', 'array', 'text') THEN substr({_RESULT}, 1, 200)
    ELSE {_RESULT} END AS result,
  coalesce(json_extract(payload, '$.duration_ns'), 0) / 1e6 AS duration_ms,
  syscall AS call_id
FROM main.events WHERE kind = 'sys.done' AND seq <= {{N}}""",
    # the process table folded from proc.* events; a reaped session stays, as dead
    "processes": f"""
WITH life AS (
  SELECT json_extract(payload, '$.pid') AS pid,
    max(CASE WHEN kind = 'proc.started' THEN seq END) AS started,
    max(CASE WHEN kind = 'proc.exited' THEN seq END) AS exited,
    max(CASE WHEN kind = 'proc.reaped' THEN seq END) AS reaped,
    max(CASE WHEN kind IN ('proc.stopped', 'proc.quarantined') THEN seq END) AS stopped,
    max(CASE WHEN kind = 'proc.continued' THEN seq END) AS continued,
    max(CASE WHEN kind = 'proc.reparented' THEN seq END) AS reparented
  FROM main.events WHERE kind IN ({_PROC_LIFE}) AND seq <= {{N}} GROUP BY 1)
SELECT json_extract(s.payload, '$.pid') AS pid,
  coalesce(json_extract(r.payload, '$.ppid'), json_extract(s.payload, '$.ppid')) AS ppid,
  json_extract(s.payload, '$.name') AS name, json_extract(s.payload, '$.kind') AS kind,
  CASE WHEN l.reaped IS NOT NULL THEN 'dead' WHEN l.exited IS NOT NULL THEN 'zombie'
    WHEN l.stopped > max(coalesce(l.started, 0), coalesce(l.continued, 0)) THEN 'stopped'
    WHEN l.started IS NULL AND l.continued IS NULL THEN 'creating'
    WHEN (SELECT b.kind FROM main.events b WHERE b.pid = json_extract(s.payload, '$.pid')
          AND b.kind IN ('sys.blocked', 'sys.done') AND b.seq <= {{N}} ORDER BY b.seq DESC LIMIT 1)
         = 'sys.blocked' THEN 'blocked'
    ELSE 'ready' END AS state,
  json_extract(x.payload, '$.status') AS exit_status, json_extract(x.payload, '$.signal') AS exit_signal,
  json_extract(x.payload, '$.fault') AS fault, json_extract(x.payload, '$.reason') AS exit_reason,
  s.seq AS spawned_seq, s.ts AS spawned_ts, l.exited AS exited_seq, x.ts AS exited_ts,
  json_extract(s.payload, '$.target') AS target, json_extract(s.payload, '$.argv') AS argv,
  (SELECT total(json_extract(e.payload, '$.stored')) FROM main.events e
    WHERE json_extract(e.payload, '$.pid') = json_extract(s.payload, '$.pid') AND e.seq <= {{N}}
      AND {VFS_CHANGES})
  + (SELECT total(CASE WHEN e.kind = 'console.write' THEN json_extract(e.payload, '$.size')
                  ELSE json_extract(e.payload, '$.stored') END) FROM main.events e
    WHERE e.pid = json_extract(s.payload, '$.pid') AND e.seq <= {{N}}
      AND e.kind IN ('console.write', 'vfs.host_wrote', 'vfs.host_change')) AS stored_bytes,
  (SELECT total(json_extract(e.payload, '$.ns')) / 1e6 FROM main.events e
    WHERE e.pid = json_extract(s.payload, '$.pid') AND e.kind = 'ledger.cpu' AND e.seq <= {{N}}) AS cpu_ms,
  (SELECT count(*) FROM main.events e
    WHERE e.pid = json_extract(s.payload, '$.pid') AND e.kind = 'sys.done' AND e.seq <= {{N}}) AS syscalls
FROM main.events s
LEFT JOIN life l ON l.pid = json_extract(s.payload, '$.pid')
LEFT JOIN main.events x ON x.seq = l.exited
LEFT JOIN main.events r ON r.seq = l.reparented
WHERE s.kind = 'proc.spawned' AND s.seq <= {{N}}""",
    # one row per version cut (close, fsync, exit, a transaction, a restore or an undo)
    "file_versions": """
SELECT v.seq, v.ts, json_extract(v.payload, '$.ino') AS ino, f.path AS path,
  json_extract(v.payload, '$.size') AS size, json_extract(v.payload, '$.pid') AS pid,
  json_extract(v.payload, '$.cause') AS cause, coalesce(json_extract(v.payload, '$.stored'), 0) AS stored,
  json_extract(v.payload, '$.manifest') AS manifest, v.correlation
FROM main.events v LEFT JOIN temp.files f ON f.ino = json_extract(v.payload, '$.ino')
WHERE v.kind = 'vfs.version' AND v.seq <= {N}""",
    # every capability ever granted, with what became of it by the point
    "capabilities": """
WITH rv AS (SELECT json_extract(payload, '$.cap') AS cap, min(seq) AS seq FROM main.events
            WHERE kind = 'cap.revoked' AND seq <= {N} GROUP BY 1),
  xp AS (SELECT json_extract(payload, '$.cap') AS cap, min(seq) AS seq FROM main.events
         WHERE kind = 'cap.expired' AND seq <= {N} GROUP BY 1),
  tr AS (SELECT json_extract(payload, '$.cap') AS cap, json_extract(payload, '$.to') AS holder, max(seq)
         FROM main.events WHERE kind = 'cap.transferred' AND seq <= {N} GROUP BY 1),
  rp AS (SELECT json_extract(payload, '$.pid') AS pid FROM main.events WHERE kind = 'proc.reaped' AND seq <= {N}),
  g AS (SELECT seq, ts, payload, json_extract(payload, '$.cap') AS cap,
        coalesce(tr.holder, json_extract(payload, '$.holder')) AS holder
        FROM main.events LEFT JOIN tr ON tr.cap = json_extract(payload, '$.cap')
        WHERE kind = 'cap.granted' AND seq <= {N}),
  c AS (SELECT g.*,
    (SELECT min(rv.seq) FROM rv WHERE rv.cap = g.cap
       OR rv.cap IN (SELECT value FROM json_each(g.payload, '$.chain'))) AS revoked_seq,
    (SELECT min(xp.seq) FROM xp WHERE xp.cap = g.cap
       OR xp.cap IN (SELECT value FROM json_each(g.payload, '$.chain'))) AS expired_seq
    FROM g)
SELECT cap, holder, json_extract(payload, '$.resource') AS resource, json_extract(payload, '$.rights') AS rights,
  json_extract(payload, '$.parent') AS parent, json_extract(payload, '$.chain') AS chain,
  json_extract(payload, '$.origin') AS origin, json_extract(payload, '$.by') AS granted_by,
  coalesce(json_extract(payload, '$.depth'), 0) AS depth, json_extract(payload, '$.expires_ns') AS expires_ns,
  json_extract(payload, '$.max_uses') AS max_uses, json_extract(payload, '$.note') AS note,
  seq AS granted_seq, ts AS granted_ts, revoked_seq, expired_seq,
  CASE WHEN revoked_seq IS NOT NULL THEN 'revoked' WHEN expired_seq IS NOT NULL THEN 'expired'
    WHEN holder IN (SELECT pid FROM rp) THEN 'released' ELSE 'held' END AS state
FROM c""",
    # the audit trail: refusals, and everything that happened to capabilities and approvals
    "audit": f"""
SELECT seq, ts, kind,
  coalesce(json_extract(payload, '$.pid'), json_extract(payload, '$.holder'), json_extract(payload, '$.to'),
    pid) AS pid,
  pid AS caused_by, json_extract(payload, '$.call') AS call, json_extract(payload, '$.right') AS needed,
  json_extract(payload, '$.resource') AS resource,
  coalesce(json_extract(payload, '$.cap'), json_extract(payload, '$.id')) AS cap,
  coalesce(json_extract(payload, '$.reason'), json_extract(payload, '$.outcome')) AS detail,
  correlation, payload
FROM main.events WHERE kind IN ({_AUDIT_KINDS}) AND seq <= {{N}}""",
}
VIEW_NAMES = frozenset(VIEWS)


def create_statements(seq: int, lineage: Lineage | None = None) -> list[str]:
    """The statements that make every table and view of one query, as of ``seq`` on ``lineage``
    (the history that branch saw; None: every branch's events)."""
    n = str(int(seq))  # integer literals only: nothing else is ever pasted into SQL here

    def upto(m: re.Match[str]) -> str:
        alias = m.group(1) or ""
        on = f" AND {lineage.literal(alias)}" if lineage is not None else ""
        return f"{alias}seq <= {n}{on}"

    return [*STATE_TABLES.values()] + [
        f"CREATE TEMP VIEW {name} AS {_UPTO.sub(upto, body.strip())}" for name, body in VIEWS.items()
    ]


_UPTO = re.compile(r"\b(\w+\.)?seq <= \{N\}")
