"""pytest-benchmark: the consensus kernel against its numpy reference and a plain-Python loop.

Run (not part of the test suite)::

    pytest benches/bench_consensus.py --benchmark-enable -p no:randomly -s
    CASCAL_BENCH_ROWS=50000 pytest benches/bench_consensus.py --benchmark-enable -s   # quick

The Python loop is timed on a 5,000-row slice and scaled linearly to the full row count (labelled
"scaled"); the kernel and the numpy reference run on all rows. Ratios are printed at the end.
"""

from __future__ import annotations

import os

import pytest

from cascal.bench.cases.consensus import LOOP_ROWS, _kernel, _loop_on_slice, _numpy, make_input

ROWS = int(os.environ.get("CASCAL_BENCH_ROWS", 1_000_000))
MEDIANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def full():
    return make_input(ROWS)


@pytest.fixture(scope="module")
def slice_5000():
    return make_input(LOOP_ROWS)


def _median(benchmark) -> float:
    return benchmark.stats.stats.median if benchmark.stats else float("nan")


def test_consensus_kernel(benchmark, full):
    benchmark.group = f"consensus {ROWS:,} x 12 x 10 +logprobs"
    benchmark.pedantic(_kernel, args=(full,), rounds=7, iterations=1, warmup_rounds=1)
    MEDIANS["kernel"] = _median(benchmark)


def test_consensus_numpy_reference(benchmark, full):
    benchmark.group = f"consensus {ROWS:,} x 12 x 10 +logprobs"
    benchmark.pedantic(_numpy, args=(full,), rounds=3, iterations=1)
    MEDIANS["numpy"] = _median(benchmark)


def test_consensus_python_loop_5000_rows(benchmark, slice_5000):
    benchmark.group = f"consensus python loop {LOOP_ROWS:,} rows (scaled x{ROWS // LOOP_ROWS})"
    benchmark.pedantic(_loop_on_slice, args=(slice_5000,), rounds=3, iterations=1)
    MEDIANS["loop_scaled"] = _median(benchmark) * ROWS / LOOP_ROWS
    benchmark.extra_info["scaled_to_rows"] = ROWS
    benchmark.extra_info["scaled_median_s"] = MEDIANS["loop_scaled"]


def test_report_ratios(capsys):
    if "kernel" not in MEDIANS or MEDIANS["kernel"] != MEDIANS["kernel"]:
        pytest.skip("benchmarks disabled: run with --benchmark-enable")
    k = MEDIANS["kernel"]
    with capsys.disabled():
        print(f"\nconsensus {ROWS:,} rows: kernel median {k * 1e3:.1f} ms")
        print(f"  numpy vectorised  {MEDIANS['numpy']:.2f} s  -> {MEDIANS['numpy'] / k:.1f}x (target >= 10x)")
        print(f"  python loop (5,000 rows scaled) {MEDIANS['loop_scaled']:.1f} s  -> {MEDIANS['loop_scaled'] / k:.0f}x (target >= 100x)")
