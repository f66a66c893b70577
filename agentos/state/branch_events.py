"""Time travel's own events: branches made and switched to, checkpoints named and dropped.

All four are ledger events (ARCHITECTURE.md §4.4): branch ids and checkpoint names are home-wide
and never rewound. ``branch.created`` and ``branch.switched`` are the first events of the branch
the kernel continues on, so the branch of the log's last event is the live branch; folding them
into a world sets that world's branch.
"""

from __future__ import annotations

from agentos.state.payload import Payload, event


@event("branch.created")
class BranchCreated(Payload):
    branch: int
    parent: int  # the branch that held the event at fork_seq
    fork_seq: int  # the new branch's world starts as its parent's at this seq
    name: str
    from_branch: int  # where the kernel was when it rewound
    from_seq: int
    why: str = "rewind"  # rewind | restore (a checkpoint)


@event("branch.switched")
class BranchSwitched(Payload):
    branch: int  # continues at its own head
    from_branch: int
    from_seq: int


@event("checkpoint.made")
class CheckpointMade(Payload):
    name: str
    branch: int
    seq: int
    by: int


@event("checkpoint.dropped")
class CheckpointDropped(Payload):
    name: str
    by: int
