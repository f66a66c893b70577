"""Command line: ``python -m bench [NAME ...] [--runs N] [--quick] [--out PATH] [--list] [--check]``.

Runs the named measures (exact names or shell-style patterns such as ``'baseline_*'``; all when none is
given), prints a table on stdout and merges the entries into ``--out`` (default ``bench/results.json``).
``--quick`` entries are marked ``"quick": true`` and are smoke tests, not numbers to keep: give them an
``--out`` of their own. Progress goes to stderr.
Exit status: 0; 1 when a benchmark module failed to import or a measure raised (or, with ``--check``,
missed its target); 2 for an unknown name.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
import traceback
from pathlib import Path

from bench import RESULTS_PATH
from bench.harness import (
    DEFAULT_RUNS,
    REGISTRY,
    Config,
    Measure,
    error_entry,
    format_table,
    load_benchmarks,
    log,
    run_measure,
    write_results,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run agentos benchmarks.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="measures to run (names or patterns)")
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help="interleaved runs per side (default 5)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="few iterations: a smoke test, not a measurement"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="results file to merge into")
    parser.add_argument("--list", action="store_true", help="list the registered measures and exit")
    parser.add_argument("--check", action="store_true", help="exit 1 when a measure misses its target")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def select(names: list[str]) -> tuple[list[Measure], list[str]]:
    """The measures matching ``names`` (all when empty), in registry order, and the names matching none."""
    if not names:
        return list(REGISTRY.values()), []
    unknown = [n for n in names if not fnmatch.filter(REGISTRY, n)]
    chosen = [m for m in REGISTRY.values() if any(fnmatch.fnmatchcase(m.name, n) for n in names)]
    return chosen, unknown


def run(measures: list[Measure], cfg: Config) -> tuple[dict[str, dict], bool]:
    """Run each measure; return the entries and whether any raised."""
    entries: dict[str, dict] = {}
    failed = False
    for measure in measures:
        log(f"bench: {measure.name} ...")
        start = time.perf_counter()
        try:
            entries[measure.name] = run_measure(measure, cfg)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            entries[measure.name] = error_entry(measure, cfg, f"{type(exc).__name__}: {exc}")
        log(f"bench: {measure.name} done in {time.perf_counter() - start:.1f}s")
    return entries, failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import_errors = load_benchmarks()
    for error in import_errors:
        log(f"bench: {error}")
    if args.list:
        for m in REGISTRY.values():
            print(f"{m.name:44} {m.kind:10} target={m.target or '-':8} {m.baseline}")
        return 1 if import_errors else 0
    measures, unknown = select(args.names)
    if unknown:
        log(f"bench: unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
        return 2
    cfg = Config(runs=args.runs, quick=args.quick)
    entries, failed = run(measures, cfg)
    write_results(args.out, entries)
    print(format_table(entries))
    print(f"\nwrote {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} to {args.out}")
    missed = [name for name, e in entries.items() if e.get("met") is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 1 if failed or import_errors or (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
