"""pytest-benchmark: batched routing kernel against its numpy reference.

Run (not part of the test suite)::

    pytest benches/bench_routing.py --benchmark-enable -s
    CASCAL_BENCH_ROWS=50000 pytest benches/bench_routing.py --benchmark-enable -s   # quick

1,000,000 float32 queries, d = 384, 14 subjects, 70 centroids, 12 models. The reference routes in
50,000-row slices (it holds O(rows x centroids) float64). Targets: kernel median <= 1 s, >= 10x.
"""

from __future__ import annotations

import os

import pytest

from cascal.bench.cases.routing import _kernel, _numpy, make_input

ROWS = int(os.environ.get("CASCAL_BENCH_ROWS", 1_000_000))
MEDIANS: dict[str, float] = {}
GROUP = f"route_batch {ROWS:,} queries d=384 S=14 C=70 M=12"


@pytest.fixture(scope="module")
def data():
    return make_input(ROWS)


def _median(benchmark) -> float:
    return benchmark.stats.stats.median if benchmark.stats else float("nan")


def test_route_batch_kernel(benchmark, data):
    benchmark.group = GROUP
    benchmark.pedantic(_kernel, args=(data,), rounds=7, iterations=1, warmup_rounds=1)
    MEDIANS["kernel"] = _median(benchmark)


def test_route_batch_numpy_reference(benchmark, data):
    benchmark.group = GROUP
    benchmark.pedantic(_numpy, args=(data,), rounds=3, iterations=1)
    MEDIANS["numpy"] = _median(benchmark)


def test_report_ratios(capsys):
    if "kernel" not in MEDIANS or MEDIANS["kernel"] != MEDIANS["kernel"]:
        pytest.skip("benchmarks disabled: run with --benchmark-enable")
    k = MEDIANS["kernel"]
    with capsys.disabled():
        print(f"\nroute_batch {ROWS:,} queries: kernel median {k:.3f} s (target <= 1 s)")
        print(f"  numpy (50k-row slices) {MEDIANS['numpy']:.2f} s -> {MEDIANS['numpy'] / k:.1f}x (target >= 10x)")
