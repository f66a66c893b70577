"""Benchmark harness: a registry of measures, interleaved timing, summaries and ``results.json``.

Vocabulary
----------
*sampler*
    A zero-argument callable that runs one batch of operations and returns the per-operation times in
    microseconds (one float per operation; ``list[float]``). Every function in ``bench.baselines`` is a
    sampler once its arguments are bound (``lambda: baselines.asyncio_queue_roundtrip(n)``).
*measure*
    One entry of ``bench/results.json``. It pairs an "ours" sampler (agentos) with a baseline sampler and
    runs them **in the same process, interleaved**: baseline run, ours run, baseline run, ... (``runs`` of
    each, default 5, always at least one of each even if the time budget runs out). The per-operation
    samples of all runs of one side are pooled; the entry reports their median and p99, the ratio and
    whether the target is met.
*kind*
    ``"latency"`` (default): ``ratio = ours_us / baseline_us`` (medians of per-op times) and the entry also
    reports the absolute ``overhead_us = ours_us - baseline_us``; a target such as ``"<= 3"``.
    ``"throughput"``: the per-op time is the amortised time of one unit (a row, a message, ...);
    ``*_per_s = 1e6 / median``, ``ratio = ours_per_s / baseline_per_s``; a target such as ``">= 0.7"``.
*target*
    ``"<= X"``, ``"< X"``, ``">= X"`` or ``"> X"`` on the ratio; ``met`` is the comparison's outcome.

Adding a measure
----------------
Put it in a module named ``bench/<anything>_benches.py``: ``python -m bench`` imports every such module
(see :func:`load_benchmarks`), so nothing else needs registering. Decorate a *setup function* with
:func:`benchmark`. It receives a :class:`Config` and either returns a :class:`Sides` or, when it needs
setup and teardown around all runs (boot a kernel once, start a server), is a generator that yields one
``Sides`` and cleans up after the ``yield``::

    import asyncio
    from collections.abc import Iterator

    from bench import baselines
    from bench.harness import Config, Sides, atime_per_op, benchmark


    @benchmark("syscall_roundtrip_vs_asyncio_queue", target="<= 3",
               baseline="asyncio.Queue put/get round trip")
    def syscall_roundtrip(cfg: Config) -> Iterator[Sides]:
        n = cfg.n(20_000, quick=2_000)
        with asyncio.Runner() as runner:          # one event loop for both sides
            kernel = runner.run(boot_test_kernel())  # (hypothetical kernel API)
            try:
                yield Sides(
                    baseline=lambda: runner.run(baselines.asyncio_queue_roundtrip_async(n)),
                    ours=lambda: runner.run(atime_per_op(kernel.client.getpid, n, warmup=200)),
                )
            finally:
                runner.run(kernel.shutdown())

``Sides.extra`` is a dict merged into the entry after the runs (a sampler may fill it while it runs, e.g.
``events_per_syscall``). Use :func:`time_per_op` / :func:`atime_per_op` to turn a sync / async callable into
per-op samples; bound every loop by a count *and* a time (``max_seconds``). Keep ``cfg.quick`` sizes small:
``python -m bench --quick`` must finish in about 30 s overall.

Baseline-only entries
---------------------
A measure registered with :func:`baseline_only` has no "ours" side and no target: its entry has
``ratio``, ``ours_us``, ``target`` and ``met`` set to ``null``. ``bench/baseline_benches.py`` registers one
per baseline (``baseline_asyncio_queue_roundtrip``, ...) so that ``python -m bench`` records the reference
numbers on a machine even before (and alongside) the kernel's measures.

Results
-------
:func:`write_results` merges entries into an existing ``results.json`` (running one benchmark keeps the
other entries) and writes atomically. Timing uses ``time.perf_counter_ns``; ``gc.collect()`` runs before each
run, the garbage collector stays enabled during it (both sides pay for their own garbage).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Sampler = Callable[[], list[float]]
Kind = Literal["latency", "throughput"]

DEFAULT_RUNS = 5
DEFAULT_BUDGET_S = 45.0
QUICK_BUDGET_S = 6.0
_TARGET_OPS = ("<=", ">=", "<", ">")


# --------------------------------------------------------------------------------------------------------
# Configuration and registry
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """What the CLI asked for; passed to every setup function."""

    runs: int = DEFAULT_RUNS
    quick: bool = False

    def n(self, full: int, quick: int) -> int:
        """Pick an iteration count: ``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full

    def seconds(self, full: float, quick: float) -> float:
        """Pick a time bound: ``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full


@dataclass
class Sides:
    """The two samplers of a measure (``ours`` is ``None`` for a baseline-only entry) and extra entry keys."""

    baseline: Sampler
    ours: Sampler | None = None
    extra: dict[str, Any] = field(default_factory=dict)


SetupFn = Callable[[Config], "Sides | Iterator[Sides]"]


@dataclass(frozen=True)
class Measure:
    """A registered benchmark: how to set it up, what it compares and what it must achieve."""

    name: str
    setup: SetupFn
    baseline: str
    target: str | None = None
    kind: Kind = "latency"
    unit: str = "op"
    notes: str = ""
    budget_s: float | None = None
    quick_budget_s: float | None = None

    def budget(self, cfg: Config) -> float:
        """Wall-clock budget for all runs of this measure (runs stop early once it is spent)."""
        if cfg.quick:
            return self.quick_budget_s if self.quick_budget_s is not None else QUICK_BUDGET_S
        return self.budget_s if self.budget_s is not None else DEFAULT_BUDGET_S


REGISTRY: dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    """Add ``measure`` to :data:`REGISTRY`; names are unique and targets must parse."""
    if measure.name in REGISTRY:
        raise ValueError(f"benchmark {measure.name!r} is registered twice")
    if measure.target is not None:
        parse_target(measure.target)
    if measure.kind not in ("latency", "throughput"):
        raise ValueError(f"benchmark {measure.name!r}: kind must be 'latency' or 'throughput'")
    REGISTRY[measure.name] = measure
    return measure


def benchmark(
    name: str,
    *,
    target: str | None,
    baseline: str,
    kind: Kind = "latency",
    unit: str = "op",
    notes: str = "",
    budget_s: float | None = None,
    quick_budget_s: float | None = None,
) -> Callable[[SetupFn], SetupFn]:
    """Decorator registering a setup function as a comparative measure (ours vs baseline; ``target``
    None where the issue states none: the ratio is reported, ``met`` is null)."""

    def wrap(setup: SetupFn) -> SetupFn:
        register(
            Measure(
                name=name,
                setup=setup,
                baseline=baseline,
                target=target,
                kind=kind,
                unit=unit,
                notes=notes,
                budget_s=budget_s,
                quick_budget_s=quick_budget_s,
            )
        )
        return setup

    return wrap


def baseline_only(
    name: str,
    *,
    baseline: str,
    kind: Kind = "latency",
    unit: str = "op",
    notes: str = "",
    budget_s: float | None = None,
    quick_budget_s: float | None = None,
) -> Callable[[SetupFn], SetupFn]:
    """Decorator registering a setup function whose ``Sides`` has only a baseline (no ratio, no target)."""

    def wrap(setup: SetupFn) -> SetupFn:
        register(
            Measure(
                name=name,
                setup=setup,
                baseline=baseline,
                kind=kind,
                unit=unit,
                notes=notes,
                budget_s=budget_s,
                quick_budget_s=quick_budget_s,
            )
        )
        return setup

    return wrap


def load_benchmarks() -> list[str]:
    """Import ``bench/*_benches.py`` (registering their measures); return error messages for failed imports."""
    import importlib

    errors: list[str] = []
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*_benches.py")):
        module = f"{__package__ or 'bench'}.{path.stem}"
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken module must not hide the others' results
            errors.append(f"cannot import {module}: {type(exc).__name__}: {exc}")
    return errors


# --------------------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------------------


def _deadline(max_seconds: float | None) -> int:
    """A ``perf_counter_ns`` deadline ``max_seconds`` from now (effectively none when ``None``)."""
    if max_seconds is None:
        return 2**63
    return time.perf_counter_ns() + int(max_seconds * 1e9)


def time_per_op(
    fn: Callable[[], object], n: int, *, warmup: int = 0, max_seconds: float | None = 30.0
) -> list[float]:
    """Call ``fn()`` ``warmup`` times untimed, then up to ``n`` times; return each call's time in µs.

    Stops early (returning fewer samples) once ``max_seconds`` have passed since the start.
    """
    clock = time.perf_counter_ns
    deadline = _deadline(max_seconds)
    for _ in range(warmup):
        fn()
        if clock() > deadline:
            break
    samples: list[float] = []
    append = samples.append
    for _ in range(n):
        t0 = clock()
        fn()
        t1 = clock()
        append((t1 - t0) / 1000.0)
        if t1 > deadline:
            break
    return samples


async def atime_per_op(
    fn: Callable[[], Awaitable[object]], n: int, *, warmup: int = 0, max_seconds: float | None = 30.0
) -> list[float]:
    """Async twin of :func:`time_per_op`: ``await fn()`` per operation, in the running event loop."""
    clock = time.perf_counter_ns
    deadline = _deadline(max_seconds)
    for _ in range(warmup):
        await fn()
        if clock() > deadline:
            break
    samples: list[float] = []
    append = samples.append
    for _ in range(n):
        t0 = clock()
        await fn()
        t1 = clock()
        append((t1 - t0) / 1000.0)
        if t1 > deadline:
            break
    return samples


@dataclass
class RunSamples:
    """Per-run samples of both sides, in the order they ran."""

    baseline: list[list[float]] = field(default_factory=list)
    ours: list[list[float]] = field(default_factory=list)
    elapsed_s: float = 0.0


def _one_run(sampler: Sampler, label: str) -> list[float]:
    gc.collect()
    samples = list(sampler())
    if not samples:
        raise RuntimeError(f"the {label} sampler returned no samples")
    if not all(math.isfinite(s) and s >= 0 for s in samples):
        raise RuntimeError(f"the {label} sampler returned a negative or non-finite time")
    return samples


def interleave(
    baseline_fn: Sampler, ours_fn: Sampler | None, runs: int, *, max_seconds: float | None = None
) -> RunSamples:
    """Run baseline, ours, baseline, ours, ... ``runs`` times each (``ours_fn`` may be ``None``).

    After the first pair, stops starting new runs once ``max_seconds`` have passed.
    """
    start = time.perf_counter()
    deadline = math.inf if max_seconds is None else start + max_seconds
    result = RunSamples()
    for i in range(max(1, runs)):
        if i > 0 and time.perf_counter() > deadline:
            break
        result.baseline.append(_one_run(baseline_fn, "baseline"))
        if ours_fn is not None:
            result.ours.append(_one_run(ours_fn, "ours"))
    result.elapsed_s = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------------------------------------
# Statistics and targets
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Order statistics of per-operation times in µs."""

    n: int
    median: float
    p99: float
    mean: float
    min: float
    max: float


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> Summary:
    """Median, p99, mean, min and max of ``samples`` (per-op µs)."""
    if not samples:
        raise ValueError("summarize of no samples")
    return Summary(
        n=len(samples),
        median=statistics.median(samples),
        p99=percentile(samples, 99.0),
        mean=statistics.fmean(samples),
        min=min(samples),
        max=max(samples),
    )


def parse_target(target: str) -> tuple[str, float]:
    """Split ``"<= 3"`` into ``("<=", 3.0)``; raises ``ValueError`` on anything else."""
    text = target.strip()
    for op in _TARGET_OPS:
        if text.startswith(op):
            try:
                return op, float(text[len(op) :])
            except ValueError:
                break
    raise ValueError(f"target must look like '<= 3' or '>= 0.7', not {target!r}")


def target_met(target: str | None, ratio: float | None) -> bool | None:
    """Whether ``ratio`` satisfies ``target``; ``None`` when there is no target or no ratio."""
    if target is None or ratio is None:
        return None
    op, bound = parse_target(target)
    return {"<=": ratio <= bound, ">=": ratio >= bound, "<": ratio < bound, ">": ratio > bound}[op]


# --------------------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------------------


def _r(value: float) -> float:
    """Round for the JSON: 3 decimals below 1000, 1 above (µs and per-second figures)."""
    return round(value, 1) if abs(value) >= 1000 else round(value, 3)


def _side_keys(prefix: str, runs: list[list[float]], kind: Kind) -> dict[str, Any]:
    pooled = [s for run in runs for s in run]
    s = summarize(pooled)
    keys: dict[str, Any] = {
        f"{prefix}_us": _r(s.median),
        f"{prefix}_p99_us": _r(s.p99),
        f"{prefix}_mean_us": _r(s.mean),
        f"{prefix}_samples": s.n,
        f"{prefix}_run_medians_us": [_r(statistics.median(r)) for r in runs],
    }
    if kind == "throughput":
        keys[f"{prefix}_per_s"] = _r(1e6 / s.median) if s.median > 0 else None
        keys[f"{prefix}_per_s_mean"] = _r(1e6 / s.mean) if s.mean > 0 else None
    return keys


def _ratio(measure: Measure, baseline_us: float, ours_us: float) -> float | None:
    if measure.kind == "throughput":
        return baseline_us / ours_us if ours_us > 0 else None  # = ours_per_s / baseline_per_s
    return ours_us / baseline_us if baseline_us > 0 else None


def make_entry(
    measure: Measure, samples: RunSamples, cfg: Config, extra: dict[str, Any] | None = None
) -> dict:
    """Build the ``results.json`` entry of ``measure`` from its interleaved runs."""
    entry: dict[str, Any] = {
        "ratio": None,
        "target": measure.target,
        "ours_us": None,
        "baseline": measure.baseline,
        "baseline_us": None,
        "runs": len(samples.baseline),
        "met": None,
        "kind": measure.kind,
        "unit": measure.unit,
    }
    entry.update(_side_keys("baseline", samples.baseline, measure.kind))
    if samples.ours:
        entry.update(_side_keys("ours", samples.ours, measure.kind))
        base_med = summarize([s for r in samples.baseline for s in r]).median
        ours_med = summarize([s for r in samples.ours for s in r]).median
        ratio = _ratio(measure, base_med, ours_med)
        entry["ratio"] = None if ratio is None else round(ratio, 3)
        if measure.kind == "latency":
            entry["overhead_us"] = _r(ours_med - base_med)
        entry["met"] = target_met(measure.target, ratio)
    entry.update(_context(cfg, samples.elapsed_s))
    if measure.notes:
        entry["notes"] = measure.notes
    if extra:
        entry.update(extra)
    return entry


def error_entry(measure: Measure, cfg: Config, error: str) -> dict:
    """The entry recorded when a measure raised: no numbers, ``met`` false where there was a target."""
    return {
        "ratio": None,
        "target": measure.target,
        "ours_us": None,
        "baseline": measure.baseline,
        "baseline_us": None,
        "runs": 0,
        "met": False if measure.target is not None else None,
        "kind": measure.kind,
        "unit": measure.unit,
        "error": error,
        **_context(cfg, 0.0),
    }


def _context(cfg: Config, elapsed_s: float) -> dict[str, Any]:
    return {
        "quick": cfg.quick,
        "elapsed_s": round(elapsed_s, 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpu",
    }


@contextlib.contextmanager
def _sides(measure: Measure, cfg: Config) -> Iterator[Sides]:
    if inspect.isgeneratorfunction(measure.setup):
        with contextlib.contextmanager(measure.setup)(cfg) as sides:
            yield sides
    else:
        yield measure.setup(cfg)  # type: ignore[misc]


def run_measure(measure: Measure, cfg: Config) -> dict:
    """Set up ``measure``, run its sides interleaved within its budget, tear down, return its entry."""
    with _sides(measure, cfg) as sides:
        if not isinstance(sides, Sides):
            raise TypeError(f"{measure.name}: setup must return or yield a Sides, not {type(sides).__name__}")
        if measure.target is not None and sides.ours is None:
            raise TypeError(f"{measure.name}: a measure with a target needs an 'ours' sampler")
        samples = interleave(sides.baseline, sides.ours, cfg.runs, max_seconds=measure.budget(cfg))
        return make_entry(measure, samples, cfg, sides.extra)


# --------------------------------------------------------------------------------------------------------
# results.json and the table
# --------------------------------------------------------------------------------------------------------


def read_results(path: Path | str) -> dict[str, dict]:
    """The entries of an existing results file, or ``{}`` when it is missing or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_results(path: Path | str, entries: dict[str, dict]) -> dict[str, dict]:
    """Merge ``entries`` into the JSON object at ``path`` (replacing same-named ones), atomically.

    Returns the merged mapping, sorted by name.
    """
    path = Path(path)
    merged = read_results(path)
    merged.update(entries)
    merged = dict(sorted(merged.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return merged


def _fmt_us(us: float | None) -> str:
    if us is None:
        return "-"
    if us >= 10_000:
        return f"{us / 1000:.1f}ms"
    if us >= 1000:
        return f"{us / 1000:.2f}ms"
    return f"{us:.1f}µs" if us >= 10 else f"{us:.2f}µs"


def _fmt_rate(per_s: float | None, unit: str) -> str:
    if per_s is None:
        return "-"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if per_s >= scale:
            return f"{per_s / scale:.1f}{suffix} {unit}/s"
    return f"{per_s:.0f} {unit}/s"


def _fmt_side(entry: dict, prefix: str) -> str:
    if entry.get(f"{prefix}_us") is None:
        return "-"
    median, p99 = entry[f"{prefix}_us"], entry.get(f"{prefix}_p99_us")
    text = f"{_fmt_us(median)} (p99 {_fmt_us(p99)})"
    if entry.get("kind") == "throughput":
        text = f"{_fmt_rate(entry.get(f'{prefix}_per_s'), entry.get('unit', 'op'))} [{_fmt_us(median)}/{entry.get('unit', 'op')}]"
    return text


def format_table(entries: dict[str, dict]) -> str:
    """A plain-text table of ``entries`` for the terminal."""
    header = ("measure", "ours", "baseline", "ratio", "target", "met", "runs")
    rows = [header]
    for name, e in entries.items():
        met = {True: "yes", False: "NO", None: "-"}[e.get("met")]
        ratio = "-" if e.get("ratio") is None else f"{e['ratio']:.2f}"
        if e.get("error"):
            rows.append((name, "ERROR", e["error"][:60], ratio, e.get("target") or "-", met, "0"))
            continue
        rows.append(
            (
                name,
                _fmt_side(e, "ours"),
                _fmt_side(e, "baseline"),
                ratio,
                e.get("target") or "-",
                met,
                str(e.get("runs", "-")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def log(message: str) -> None:
    """Progress output (stderr, so that stdout stays the table)."""
    print(message, file=sys.stderr, flush=True)
