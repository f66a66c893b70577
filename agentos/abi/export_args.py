"""Argument schemas of ``export`` (a checkpoint to one portable file) and ``gc`` (retention). Part of
the ABI, beside ``history_args.py``; ``agentos import`` runs with no kernel (``kernel/importer.py``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from agentos.abi.history_args import CheckpointName
from agentos.abi.syscalls import Args, Path


class ExportArgs(Args):
    name: CheckpointName
    path: Path  # on the kernel's host, absolute (the CLI resolves it against its working directory)
    force: bool = False  # replace a file that is there


class GcArgs(Args):
    """Compact the history before ``keep_since``: a POINT (seq, time, checkpoint) or a duration ago
    (``90s``, ``30m``, ``12h``, ``7d``, ``2w``)."""

    keep_since: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    dry_run: bool = False
