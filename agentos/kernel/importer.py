"""``agentos import FILE``: bring an exported checkpoint into a new (or empty) home, with no kernel running.

Pids, inodes, capability ids, branch ids and sequence numbers are never reused in a home
(ARCHITECTURE.md §4.4), and the imported world is full of them, so an import goes only into a home
whose log is empty; anything else is refused, saying why. The home's log then holds:

* the journal rows of the agents alive at the checkpoint and the ``branch.created`` rows of its
  lineage, exactly as the source stored them (original seq, branch and digest: ``read_journal``
  finds them where it always looks, along the same lineage);
* one ``world.based`` event at the checkpoint's seq + 1 naming the world (a snapshot manifest whose
  pieces come with it; its ledger's allocators are past every imported id) and linking to the source
  chain's digest at the checkpoint. The next boot folds from it (``kernel/base.py``) and resumes
  the agents by replay; new events continue the sequence after it, on the checkpoint's branch.

Before anything is written: the file's content hash, every blob's hash, every kept row's digest and
the world rebuilt from the manifest against the world hash the export recorded. The home's
``PYTHONHASHSEED`` is the source's when this import creates the home's config (replay depends on it).
Runs as ``python -m agentos.kernel.importer --home DIR FILE`` (userland never opens the log itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import apsw

from agentos import param
from agentos.errors import AgentOSError, Conflict, InvalidArgument
from agentos.kernel import base as log_base
from agentos.kernel.exports import world_hash
from agentos.state import events as ev
from agentos.state.snapshot import from_pieces
from agentos.state.world import forks
from agentos.store import exportfile
from agentos.store.events import EventRecord, Sequencer, verify_record
from agentos.store.home import Home
from agentos.store.lineage import Lineage
from agentos.store.log import EventLog, blob_hash


def _rows(content: exportfile.Content, path: Path) -> list[EventRecord]:
    seq = content.checkpoint.seq
    rows = {r.seq: r for r in (*content.journal, *content.branches)}
    for r in rows.values():
        if r.seq > seq or not verify_record(r, r.prev_digest):
            raise InvalidArgument(f"refusing {path}: its row at seq {r.seq} does not check", code="EBADMSG")
    return [rows[s] for s in sorted(rows)]


def _adopt_seed(home: Home, seed: int) -> None:
    """A config with the source's hash seed, when the home has none yet (else Home.create makes one)."""
    home.path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if seed and not home.config_file.exists():
        Home._write_private(home.config_file, f'hash_seed = {int(seed)}\ndurability = "normal"\n'.encode())


def import_file(home: Home, path: Path) -> dict[str, Any]:
    """Import the checkpoint file at ``path`` into ``home`` (see the module docstring)."""
    content, digest = exportfile.read(path)
    cp = content.checkpoint
    state = from_pieces(content.manifest, content.blobs.get, bytes.fromhex(cp.digest))
    if world_hash(state) != content.world_hash:
        raise InvalidArgument(f"refusing {path}: its world does not match its world hash", code="EBADMSG")
    rows = _rows(content, path)
    _adopt_seed(home, int(content.source.get("hash_seed") or 0))
    home.create()
    home.acquire_lock()  # a kernel running on the home is refused here (EBUSY)
    try:
        log = EventLog(home.log_db, hmac_key=home.hmac_key())
        try:
            n = log.count()
            if n:
                raise Conflict(
                    f"{home.path} already has a history ({n} events): an import needs a new or empty home,"
                    " since the world it brings keeps its pids, inodes and capability ids and a home never"
                    " reuses one (agentos import --home NEWDIR FILE)",
                    code="ENOTEMPTY",
                )
            based = _base_record(content, digest, state, rows)
            blobs = {**content.blobs, blob_hash(content.manifest): content.manifest}
            log.append([*rows, based], blobs)
        finally:
            log.close()
    finally:
        home.release_lock()
    seed = home.hash_seed()
    return {
        "name": cp.name,
        "branch": cp.branch,
        "seq": cp.seq,
        "sha256": digest,
        "world_hash": content.world_hash,
        "home": str(home.path),
        "base_seq": based.seq,
        "counts": content.counts,
        "hash_seed_matches": seed == int(content.source.get("hash_seed") or 0),
    }


def _base_record(
    content: exportfile.Content, digest: str, state: Any, rows: list[EventRecord]
) -> EventRecord:
    cp = content.checkpoint
    lineage = Lineage.of(cp.branch, forks(state.ledger))
    manifest = blob_hash(content.manifest)
    worlds = {str(log_base.owner_at(lineage, cp.seq)): manifest, str(param.MAIN_BRANCH): manifest}
    payload = ev.WorldBased(
        base_seq=cp.seq,
        cut_digest=cp.digest,
        worlds=worlds,
        kept=len(rows),
        kept_digest=log_base.kept_hash(rows).hexdigest(),
        dropped=0,
        why="import",
        source=digest,
    )
    stamp = Sequencer(cp.seq + 1, bytes.fromhex(cp.digest)).stamp
    return stamp(
        cp.branch,
        payload.KIND,
        payload.VERSION,
        param.KERNEL_PID,
        None,
        None,
        time.time_ns(),
        ev.encode(payload),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentos.kernel.importer", description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("file")
    args = parser.parse_args(argv)
    try:
        got = import_file(Home(args.home), Path(args.file).absolute())
    except (AgentOSError, apsw.Error, OSError) as err:
        code = getattr(err, "code", "EIO")
        print(json.dumps({"error": str(err), "code": code}), file=sys.stderr)
        return 1
    print(json.dumps(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
