"""agentos benchmarks: the kernel's measures against plain-Python baselines, recorded in ``results.json``.

``python -m bench`` runs every registered measure (``bench/*_benches.py``) and merges the entries into
``bench/results.json``; see :mod:`bench.harness` for how measures are defined and added, and
:mod:`bench.baselines` for what the kernel is compared against.
"""

from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"
