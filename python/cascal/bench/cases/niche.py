"""Benchmark cases of the niche kernels: ``nearest_centroids`` and ``cluster_means``.

Target (docs/benchmarks.md): ``nearest_centroids`` on 1,000,000 x 200 centroids x 384 (float32,
cosine) >= 1.0x numpy (blocked matmul + argpartition), with memory bounded by the block size
(peak extra memory is reported). Quick mode: 50,000 queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cascal import reference
from cascal.bench.cases.distance import make_embeddings
from cascal.bench.registry import Case, register
from cascal.kernels import cluster_means, nearest_centroids

D = 384
N_CENTROIDS = 200
K_NEAREST = 3
NUMPY_BLOCK = 8192


@dataclass
class NearestInput:
    X: np.ndarray
    C: np.ndarray


def make_nearest(quick: bool) -> NearestInput:
    n = 50_000 if quick else 1_000_000
    X = make_embeddings(n, seed=1)
    C = make_embeddings(N_CENTROIDS, seed=2)
    return NearestInput(X, C)


def numpy_blocked_nearest(s: NearestInput, k: int = K_NEAREST) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k with numpy: normalise, blocked matmul, argpartition, sort the k candidates."""
    Cn = s.C / np.linalg.norm(s.C, axis=1, keepdims=True)
    n = s.X.shape[0]
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=s.X.dtype)
    for start in range(0, n, NUMPY_BLOCK):
        xb = s.X[start : start + NUMPY_BLOCK]
        xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        Db = 1.0 - xb @ Cn.T
        part = np.argpartition(Db, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(Db, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx[start : start + NUMPY_BLOCK] = np.take_along_axis(part, order, axis=1)
        dist[start : start + NUMPY_BLOCK] = np.take_along_axis(pd, order, axis=1)
    return idx, dist


register(
    Case(
        name=f"nearest_centroids 1M (quick 50k) x{N_CENTROIDS}x{D} k={K_NEAREST}",
        setup=make_nearest,
        kernel=lambda s: nearest_centroids(s.X, s.C, K_NEAREST, "cosine"),
        references={"numpy blocked matmul+argpart": numpy_blocked_nearest},
        targets={"numpy blocked matmul+argpart": 1.0},
        # single calls on a shared host spread widely (docs/benchmarks.md); the median of 3 is at
        # their mercy, so 9
        repeats=9,
        measure_memory=True,
    )
)


@dataclass
class MeansInput:
    labels: np.ndarray
    values: np.ndarray
    n_clusters: int
    weights: Optional[np.ndarray]


def make_means(quick: bool) -> MeansInput:
    """Consensus-score-like values: 34 models, 10% missing, 64 clusters, agreement weights."""
    rng = np.random.default_rng(3)
    n = 100_000 if quick else 1_000_000
    values = rng.random((n, 34)).astype(np.float32)
    values[rng.random((n, 34)) < 0.1] = np.nan
    return MeansInput(rng.integers(0, 64, n), values, 64, rng.random(n))


register(
    Case(
        name="cluster_means 1M (quick 100k) x34, 64 clusters",
        setup=make_means,
        kernel=lambda s: cluster_means(s.labels, s.values, s.n_clusters, s.weights),
        references={"numpy bincount": lambda s: reference.cluster_means(s.labels, s.values, s.n_clusters, s.weights)},
        repeats=5,
    )
)
