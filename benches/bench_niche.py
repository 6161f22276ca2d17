"""pytest-benchmark timings of the niche kernels against their numpy references.

Run: ``pytest benches/bench_niche.py --benchmark-enable``. Sizes are the quick sizes of
``cascal bench`` (50,000 queries x 200 centroids x 384; 100,000 x 34 values in 64 clusters).
"""

from __future__ import annotations

import pytest

from cascal import reference
from cascal.bench.cases.niche import K_NEAREST, make_means, make_nearest, numpy_blocked_nearest
from cascal.kernels import cluster_means, nearest_centroids


@pytest.fixture(scope="module")
def nearest_input():
    return make_nearest(quick=True)


@pytest.fixture(scope="module")
def means_input():
    return make_means(quick=True)


def test_nearest_centroids_kernel(benchmark, nearest_input):
    benchmark.group = "nearest_centroids 50k x 200 x 384 f32"
    benchmark(nearest_centroids, nearest_input.X, nearest_input.C, K_NEAREST, "cosine")


def test_nearest_centroids_numpy_blocked(benchmark, nearest_input):
    benchmark.group = "nearest_centroids 50k x 200 x 384 f32"
    benchmark(numpy_blocked_nearest, nearest_input)


def test_cluster_means_kernel(benchmark, means_input):
    s = means_input
    benchmark.group = "cluster_means 100k x 34, 64 clusters"
    benchmark(cluster_means, s.labels, s.values, s.n_clusters, s.weights)


def test_cluster_means_numpy_bincount(benchmark, means_input):
    s = means_input
    benchmark.group = "cluster_means 100k x 34, 64 clusters"
    benchmark(reference.cluster_means, s.labels, s.values, s.n_clusters, s.weights)
