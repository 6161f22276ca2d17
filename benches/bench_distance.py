"""pytest-benchmark timings of the distance kernels against scipy and the numpy idiom.

Run: ``pytest benches/bench_distance.py --benchmark-enable``.
Each group holds the kernel and its references on the same input; compare the medians.
Sizes are moderate (n = 4,000, d = 384, float32) so scipy finishes in seconds; ``cascal bench``
runs the full-size cases of the issue.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance as sd

from cascal.bench.cases.distance import make_embeddings, numpy_cosine_pdist
from cascal.kernels import pairwise_distances, pdist


N = 4_000


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return make_embeddings(N)


def test_pdist_cosine_kernel(benchmark, X):
    benchmark.group = "pdist cosine f32"
    benchmark(pdist, X, "cosine")


def test_pdist_cosine_numpy_idiom(benchmark, X):
    benchmark.group = "pdist cosine f32"
    benchmark(numpy_cosine_pdist, X)


def test_pdist_cosine_scipy(benchmark, X):
    benchmark.group = "pdist cosine f32"
    benchmark.pedantic(sd.pdist, args=(X, "cosine"), rounds=1, iterations=1)


def test_cdist_euclidean_kernel(benchmark, X):
    benchmark.group = "cdist euclidean f32 (n x 500)"
    benchmark(pairwise_distances, X, X[:500], "euclidean")


def test_cdist_euclidean_scipy(benchmark, X):
    benchmark.group = "cdist euclidean f32 (n x 500)"
    benchmark.pedantic(sd.cdist, args=(X, X[:500], "euclidean"), rounds=2, iterations=1)
