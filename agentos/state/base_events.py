"""The log's base: ``world.based`` says that history up to ``base_seq`` is replaced by stored worlds.

``agentos gc`` appends one at the head after compacting the history before a point, and ``agentos
import`` writes one as the first event of a home it brings a checkpoint into. The fold
(``kernel/boot.py``, ``kernel/past.py``, ``kernel/verify.py``) starts from it: the world at
``base_seq`` of a lineage is the snapshot manifest named for the branch that owns ``base_seq`` in
that lineage (``worlds``), its ledger included; events after ``base_seq`` fold on top as always.
Folding the event itself changes nothing but the event count: ``apply`` does no I/O, the boot does.

The hash chain is kept verifiable (``kernel/base.py``): ``cut_digest`` is the digest of the event at
``base_seq``, the last one folded into the base, so the first event after it links to it; the rows
kept at or before ``base_seq`` (the journals of agents alive there, the audit trail) are checked
one by one and together against ``kept_digest``.
"""

from __future__ import annotations

from agentos.state.payload import Payload, event


@event("world.based")
class WorldBased(Payload):
    base_seq: int  # the worlds are the state after this event
    cut_digest: str  # hex digest of the event at base_seq: the chain goes on from it
    worlds: dict[str, str]  # owner branch -> blob hash of a snapshot manifest (state.snapshot)
    kept: int  # rows at or before base_seq still in the log
    kept_digest: str  # sha256 hex over those rows' digests, in seq order
    dropped: int  # rows at or before base_seq removed
    why: str  # gc | import
    source: str = ""  # import: the export file's content hash
    by: int = 0
