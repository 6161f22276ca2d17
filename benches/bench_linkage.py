"""pytest-benchmark: linkage kernel against scipy (not part of the test suite).

Run::

    pytest benches/bench_linkage.py --benchmark-enable -s
    CASCAL_BENCH_N=20000 pytest benches/bench_linkage.py --benchmark-enable -s   # the issue's size

Average linkage, float32 embeddings with d = 384 (default n = 2,000): from raw vectors (cosine)
against scipy ``pdist`` + ``linkage`` (target >= 5x at n = 20,000) and from a float64 condensed
matrix against ``scipy.cluster.hierarchy.linkage`` (target >= 2x). Ratios of medians are printed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist as scipy_pdist

from cascal.bench.cases.linkage import make_embeddings
from cascal.kernels import linkage, pdist

N = int(os.environ.get("CASCAL_BENCH_N", 2_000))
ROUNDS = 3 if N > 5_000 else 7
MEDIANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return make_embeddings(N)


@pytest.fixture(scope="module")
def condensed(vectors) -> np.ndarray:
    return pdist(vectors.astype(np.float64), "cosine")


def _run(benchmark, group: str, key: str, fn, arg) -> None:
    benchmark.group = group
    benchmark.pedantic(fn, args=(arg,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    MEDIANS[key] = benchmark.stats.stats.median if benchmark.stats else float("nan")


def test_vectors_kernel(benchmark, vectors):
    _run(benchmark, f"linkage average cosine f32 vectors n={N}", "vectors kernel", lambda X: linkage(X, "average", "cosine"), vectors)


def test_vectors_scipy(benchmark, vectors):
    _run(
        benchmark,
        f"linkage average cosine f32 vectors n={N}",
        "vectors scipy",
        lambda X: hierarchy.linkage(scipy_pdist(X, "cosine"), "average"),
        vectors,
    )


def test_condensed_kernel(benchmark, condensed):
    _run(benchmark, f"linkage average f64 condensed n={N}", "condensed kernel", lambda y: linkage(y, "average"), condensed)


def test_condensed_scipy(benchmark, condensed):
    _run(benchmark, f"linkage average f64 condensed n={N}", "condensed scipy", lambda y: hierarchy.linkage(y, "average"), condensed)


def test_report_ratios():
    """Print scipy/kernel ratios of the medians measured above (the benchmark is disabled: skip)."""
    if not all(k in MEDIANS and MEDIANS[k] == MEDIANS[k] for k in ("vectors kernel", "vectors scipy")):
        pytest.skip("benchmarks disabled (run with --benchmark-enable)")
    for form in ("vectors", "condensed"):
        ratio = MEDIANS[f"{form} scipy"] / MEDIANS[f"{form} kernel"]
        print(f"\nlinkage average {form} n={N}: scipy / kernel = {ratio:.1f}x")
