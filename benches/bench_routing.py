"""pytest-benchmark: batched routing kernel against its numpy reference.

Run (not part of the test suite)::

    pytest benches/bench_routing.py --benchmark-enable -s
    CASCAL_BENCH_ROWS=50000 pytest benches/bench_routing.py --benchmark-enable -s   # quick

1,000,000 float32 queries, d = 384, 14 subjects, 70 centroids, 12 models, with hard subject
assignment (DESIGN §3C) and with soft assignment (``subject_temp``, CascalRouter's default). The
reference routes in 50,000-row slices (it holds O(rows x centroids) float64). Targets (set for hard
assignment): kernel median <= 1 s, >= 10x.
"""

from __future__ import annotations

import os

import pytest

from cascal.bench.cases.routing import SOFT_SUBJECT_TEMP, _kernel, _numpy, make_input

ROWS = int(os.environ.get("CASCAL_BENCH_ROWS", 1_000_000))
MEDIANS: dict[str, float] = {}
GROUP = f"route_batch {ROWS:,} queries d=384 S=14 C=70 M=12"


@pytest.fixture(scope="module")
def data():
    return make_input(ROWS)


def _median(benchmark) -> float:
    return benchmark.stats.stats.median if benchmark.stats else float("nan")


MODES = {"hard": 0.0, "soft": SOFT_SUBJECT_TEMP}


@pytest.mark.parametrize("mode", MODES)
def test_route_batch_kernel(benchmark, data, mode):
    benchmark.group = f"{GROUP} {mode}"
    benchmark.pedantic(_kernel, args=(data, MODES[mode]), rounds=7, iterations=1, warmup_rounds=1)
    MEDIANS[f"kernel {mode}"] = _median(benchmark)


@pytest.mark.parametrize("mode", MODES)
def test_route_batch_numpy_reference(benchmark, data, mode):
    benchmark.group = f"{GROUP} {mode}"
    benchmark.pedantic(_numpy, args=(data, MODES[mode]), rounds=3, iterations=1)
    MEDIANS[f"numpy {mode}"] = _median(benchmark)


def test_report_ratios(capsys):
    if "kernel hard" not in MEDIANS or MEDIANS["kernel hard"] != MEDIANS["kernel hard"]:
        pytest.skip("benchmarks disabled: run with --benchmark-enable")
    with capsys.disabled():
        for mode in MODES:
            k = MEDIANS[f"kernel {mode}"]
            print(f"\nroute_batch {mode} subjects, {ROWS:,} queries: kernel median {k:.3f} s (target <= 1 s)")
            print(f"  numpy (50k-row slices) {MEDIANS[f'numpy {mode}']:.2f} s -> {MEDIANS[f'numpy {mode}'] / k:.1f}x (target >= 10x)")
