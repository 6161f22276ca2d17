"""Clustering one model's proficiency set into skill groups (docs/algorithm.md#clustering-a-proficiency-set).

Points are L2-normalised question embeddings (cosine geometry), each with a positive weight (the
question's consensus agreement ratio). Two methods share one choice of the number of groups ``k``:

* ``"agglomerative"``: hierarchical clustering (Rust :func:`cascal.kernels.linkage`), cut into
  exactly ``k`` groups (``maxclust``);
* ``"kmeans"``: spherical weighted k-means with a seeded k-means++ start.

``k`` is the value in ``[2, max_k]`` with the best *weighted silhouette* among the cuts whose every
group holds at least ``min_cluster_size`` points; if no cut qualifies or the best silhouette is
below ``min_silhouette`` the set stays one group. The size floor is what keeps average linkage from
"winning" with one big cluster plus a few outliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from cascal import kernels
from cascal.vectors import unit_rows

CLUSTERING_METHODS = ("agglomerative", "kmeans")
LINKAGE_METHODS = ("single", "complete", "average", "weighted", "ward")


@dataclass(frozen=True)
class ClusteringConfig:
    """How proficiency sets are clustered; see the module docstring.

    Attributes:
        method: ``"agglomerative"`` or ``"kmeans"``.
        linkage: linkage of the agglomerative method (``"ward"`` runs on the unit sphere, where
            squared euclidean distance is twice the cosine distance).
        max_k: largest number of groups tried.
        min_cluster_size: smallest admissible group of a cut with ``k >= 2``.
        min_silhouette: below this weighted silhouette the set stays one group.
        kmeans_iter: Lloyd iterations of spherical k-means.
        kmeans_init: k-means++ restarts (the lowest weighted inertia wins).
        silhouette_sample: the silhouette is averaged over at most this many evenly spaced points
            (each compared with all points), which bounds its cost on large sets.
        max_points: a larger proficiency set is clustered on an evenly spaced subsample of this
            size (linkage cost grows with the square of the set size).
    """

    method: str = "agglomerative"
    linkage: str = "ward"
    max_k: int = 5
    min_cluster_size: int = 10
    min_silhouette: float = 0.05
    kmeans_iter: int = 30
    kmeans_init: int = 2
    silhouette_sample: int = 200
    max_points: int = 256


def weighted_silhouette(distances: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean silhouette of a partition given its full ``(n, n)`` distance matrix.

    For point ``i`` in group ``g``: ``a_i`` = weighted mean distance to the other members of ``g``,
    ``b_i`` = smallest weighted mean distance to another group, ``s_i = (b_i - a_i) / max(a_i, b_i)``
    (0 for a singleton group). The result is ``sum(w_i s_i) / sum(w_i)``
    (:func:`cascal.kernels.weighted_silhouettes`).
    """
    return kernels.weighted_silhouettes(distances, [labels], weights)[0]


def spherical_kmeans(
    X: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 30, n_init: int = 2
) -> np.ndarray:
    """Weighted spherical k-means of unit rows ``X``: labels ``0..k-1`` of the best of ``n_init``
    seeded k-means++ starts (highest weighted cosine similarity to the assigned centroid)."""
    best_labels, best_fit = None, -np.inf
    for _ in range(n_init):
        centroids = _kmeanspp_start(X, weights, k, rng)
        labels = np.full(X.shape[0], -1, dtype=np.int64)
        for _ in range(n_iter):
            idx, _dist = kernels.nearest_centroids(X, centroids, 1, "cosine")
            new_labels = np.asarray(idx[:, 0], dtype=np.int64)
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
            onehot = np.zeros((k, X.shape[0]))
            onehot[labels, np.arange(X.shape[0])] = weights
            means = onehot @ X
            empty = np.linalg.norm(means, axis=1) == 0
            means[empty] = centroids[empty]  # an emptied group keeps its old centre
            centroids = unit_rows(means)
        fit = float(np.sum(weights * np.sum(X * centroids[labels], axis=1)))
        if fit > best_fit:
            best_labels, best_fit = labels, fit
    assert best_labels is not None
    return _relabel_by_first_appearance(best_labels)


def _kmeanspp_start(X: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with cosine distance, sampling proportionally to ``weight * distance``."""
    first = rng.choice(X.shape[0], p=weights / weights.sum())
    chosen = [first]
    closest = 1.0 - X @ X[first]
    for _ in range(1, k):
        mass = weights * np.maximum(closest, 0.0)
        total = mass.sum()
        nxt = rng.choice(X.shape[0], p=mass / total) if total > 0 else int(rng.integers(X.shape[0]))
        chosen.append(nxt)
        closest = np.minimum(closest, 1.0 - X @ X[nxt])
    return X[chosen].astype(np.float64)


def _relabel_by_first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber labels ``0..k-1`` in order of first appearance (a canonical, deterministic form)."""
    values, first = np.unique(labels, return_index=True)
    rank = np.empty(values.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(values.size)
    return rank[np.searchsorted(values, labels)]


def cluster_proficiency_set(
    X: np.ndarray,
    weights: np.ndarray,
    config: ClusteringConfig,
    rng: np.random.Generator,
    distances: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Group labels ``0..k-1`` of the unit rows ``X`` (weights > 0) with ``k`` chosen by weighted
    silhouette under the size floor (module docstring). A set too small to split is one group.

    ``distances`` is the ``(n, n)`` cosine distance matrix of ``X`` if the caller already has it
    (computed with the Rust kernel otherwise)."""
    n = X.shape[0]
    max_k = min(config.max_k, n // max(config.min_cluster_size, 1))
    one_group = np.zeros(n, dtype=np.int64)
    if max_k < 2:
        return one_group
    if distances is None:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        distances = np.asarray(kernels.pairwise_distances(X32, X32, "cosine"))
    anchors = _anchors(n, config.silhouette_sample)
    if config.method == "agglomerative":
        return kernels.best_silhouette_cut(
            distances,
            weights,
            method=config.linkage,
            max_k=max_k,
            min_cluster_size=config.min_cluster_size,
            min_silhouette=config.min_silhouette,
            anchors=anchors,
        )
    candidates = [
        spherical_kmeans(X, weights, k, rng, n_iter=config.kmeans_iter, n_init=config.kmeans_init)
        for k in range(2, max_k + 1)
    ]
    admissible = [
        labels for labels in candidates if labels.max() >= 1 and np.bincount(labels).min() >= config.min_cluster_size
    ]
    if not admissible:
        return one_group
    scores = kernels.weighted_silhouettes(distances, admissible, weights, anchors)
    best = int(np.argmax(scores))  # ties -> the smaller k
    return admissible[best] if scores[best] >= config.min_silhouette else one_group


@lru_cache(maxsize=256)
def _anchors(n: int, sample: int) -> np.ndarray:
    """At most ``sample`` evenly spaced point indices (all points when ``n <= sample``); read-only
    and cached (a fit asks for the same few sizes a thousand times)."""
    anchors = np.arange(n) if n <= sample else np.unique(np.linspace(0, n - 1, sample).round().astype(np.int64))
    anchors.setflags(write=False)
    return anchors
