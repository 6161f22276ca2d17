"""Run benchmark cases and print the kernel-vs-reference ratio table."""

from __future__ import annotations

import gc
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional, TextIO, Union

from cascal.bench.cases import all_cases
from cascal.bench.registry import Case
from cascal.errors import InvalidParameterError


def blas_info() -> str:
    """One line naming the BLAS numpy uses, its CPU kernel and thread count."""
    try:
        from threadpoolctl import threadpool_info

        parts = []
        for p in threadpool_info():
            parts.append(
                f"{p.get('internal_api')} {p.get('version')} "
                f"(arch {p.get('architecture', '?')}, {p.get('num_threads')} threads)"
            )
        return "; ".join(parts) or "no BLAS thread pool found"
    except Exception as exc:  # threadpoolctl missing or failing: say so, do not hide it
        return f"unknown ({exc})"


class _PeakRss:
    """Samples the process RSS in a thread to estimate the peak extra memory of a call."""

    def __init__(self) -> None:
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                import os

                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def time_call(fn: Callable[[Any], Any], state: Any, repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn(state)`` over ``repeats`` runs (after one warm-up) and all times."""
    fn(state)
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn(state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def peak_memory_mb(fn: Callable[[Any], Any], state: Any) -> float:
    gc.collect()
    with _PeakRss() as probe:
        fn(state)
    return probe.extra_mb


def run_case(case: Case, quick: bool) -> dict:
    """Time ``case``'s kernel and references; return a result row."""
    state = case.setup(quick)
    repeats = case.quick_repeats if quick else case.repeats
    kernel_t, kernel_all = time_call(case.kernel, state, repeats)
    row: dict = {"case": case.name, "kernel_s": kernel_t, "kernel_times": kernel_all, "refs": {}}
    if case.measure_memory:
        row["kernel_peak_mb"] = peak_memory_mb(case.kernel, state)
    for label, ref in case.references.items():
        ref_t, ref_all = time_call(ref, state, repeats)
        entry: dict = {"ref_s": ref_t, "ref_times": ref_all}
        if label in case.reference_scale:
            factor = float(case.reference_scale[label](state))
            entry.update(scale=factor, ref_s=ref_t * factor, ref_times=[t * factor for t in ref_all])
        entry["ratio"] = entry["ref_s"] / kernel_t if kernel_t > 0 else float("inf")
        if label in case.targets and not quick:
            entry["target"] = case.targets[label]
            entry["meets_target"] = entry["ratio"] >= case.targets[label]
        if case.measure_memory:
            entry["ref_peak_mb"] = peak_memory_mb(ref, state)
        row["refs"][label] = entry
    del state
    gc.collect()
    return row


def select_cases(match: Union[str, Sequence[str], None] = None) -> list[Case]:
    """The registered cases whose name contains ``match`` (or any of several texts), in
    registration order; every case for ``None``. Raises
    :class:`~cascal.errors.InvalidParameterError` (a ``ValueError``) naming the registered cases
    when nothing matches (a typo would otherwise print an empty table)."""
    texts = [match] if isinstance(match, str) else list(match or [])
    if any(not isinstance(t, str) for t in texts):
        raise InvalidParameterError(f"match: expected a text or a list of texts, got {match!r}")
    cases = [c for c in all_cases() if not texts or any(t in c.name for t in texts)]
    if not cases:
        names = " | ".join(c.name for c in all_cases())
        raise InvalidParameterError(
            f"match: no benchmark case name contains {' or '.join(map(repr, texts))}; the cases are: {names}"
        )
    return cases


def run(
    quick: bool = False,
    match: Union[str, Sequence[str], None] = None,
    out: Optional[TextIO] = None,
    json_path: Optional[str] = None,
) -> list[dict]:
    """Run every registered case whose name contains ``match`` (a text, or a list of texts any of
    which may match; every case for ``None``) in one process, one after the other, and print the
    table (on ``out``, standard output by default)."""
    from cascal import _core

    cases = select_cases(match)
    out = sys.stdout if out is None else out
    print(
        f"cascal bench ({'quick' if quick else 'full'}) on {platform.machine()}, python {platform.python_version()}",
        file=out,
    )
    print(f"numpy BLAS: {blas_info()}", file=out)
    print(f"cascal kernels: {_core.num_threads()} threads", file=out)
    print("times are medians over repeats; ratio = reference time / kernel time;", file=out)
    print("a 'scaled' reference ran on a slice of the input and its time was extrapolated linearly", file=out)
    print(file=out)
    header = f"{'case':<48} {'kernel':>10} {'reference':<28} {'ref':>10} {'ratio':>8} {'target':>7}"
    print(header, file=out)
    print("-" * len(header), file=out)
    rows = []
    for case in cases:
        row = run_case(case, quick)
        rows.append(row)
        first = True
        for label, entry in row["refs"].items():
            target = entry.get("target")
            tgt = "" if target is None else (f"{target:g}x" + (" ok" if entry["meets_target"] else " MISS"))
            name = case.name if first else ""
            kern = _fmt(row["kernel_s"]) if first else ""
            shown = label if "scale" not in entry else f"{label} (x{entry['scale']:g} scaled)"
            print(
                f"{name:<48} {kern:>10} {shown:<28} {_fmt(entry['ref_s']):>10} {entry['ratio']:>7.1f}x {tgt:>7}",
                file=out,
            )
            if "ref_peak_mb" in entry:
                print(
                    f"{'':<48} {'peak MB':>10} kernel {row['kernel_peak_mb']:.0f} vs {label} {entry['ref_peak_mb']:.0f}",
                    file=out,
                )
            first = False
        out.flush()
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"
