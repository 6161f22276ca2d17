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
from typing import Optional

import numpy as np
from scipy.spatial.distance import squareform

from cascal import kernels

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


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def weighted_silhouette(distances: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean silhouette of a partition given its full ``(n, n)`` distance matrix.

    For point ``i`` in group ``g``: ``a_i`` = weighted mean distance to the other members of ``g``,
    ``b_i`` = smallest weighted mean distance to another group, ``s_i = (b_i - a_i) / max(a_i, b_i)``
    (0 for a singleton group). The result is ``sum(w_i s_i) / sum(w_i)``.
    """
    return weighted_silhouettes(distances, [labels], weights)[0]


def weighted_silhouettes(
    distances: np.ndarray, partitions: list[np.ndarray], weights: np.ndarray, anchors: Optional[np.ndarray] = None
) -> list[float]:
    """:func:`weighted_silhouette` of several partitions of the same points, with one matrix product.

    ``distances`` may be ``(n, n)`` or, to save time, only the rows of the ``anchors`` (indices into
    the ``n`` points): the silhouette is then averaged over the anchor points only (each still
    compared with every point)."""
    n = distances.shape[1]
    anchors = np.arange(n) if anchors is None else np.asarray(anchors)
    rows = np.arange(anchors.size)
    sizes = [int(labels.max()) + 1 for labels in partitions]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    onehot = np.zeros((n, int(offsets[-1])), dtype=distances.dtype)
    for labels, off in zip(partitions, offsets):
        onehot[np.arange(n), labels + off] = weights
    all_sums = (distances @ onehot).astype(np.float64)  # weighted distance sums from every anchor to every group
    all_weights = onehot.sum(axis=0, dtype=np.float64)
    w_anchor = weights[anchors]
    out = []
    for labels, off, k in zip(partitions, offsets, sizes):
        own = labels[anchors]
        sums = all_sums[:, off : off + k]
        group_weight = all_weights[off : off + k]
        own_weight = group_weight[own] - w_anchor
        a = np.divide(sums[rows, own], own_weight, out=np.zeros(rows.size), where=own_weight > 0)
        mean_to = sums / np.where(group_weight > 0, group_weight, np.inf)
        mean_to[rows, own] = np.inf
        b = mean_to.min(axis=1)
        denom = np.maximum(a, b)
        s = np.divide(b - a, denom, out=np.zeros(rows.size), where=(denom > 0) & (own_weight > 0))
        out.append(float(np.sum(w_anchor * s) / np.sum(w_anchor)))
    return out


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
            centroids = normalize_rows(means)
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
    candidates = _candidate_partitions(X, weights, distances, max_k, config, rng)
    admissible = [labels for labels in candidates if np.bincount(labels).min() >= config.min_cluster_size]
    if not admissible:
        return one_group
    anchors = _anchors(n, config.silhouette_sample)
    scores = weighted_silhouettes(distances[anchors], admissible, weights, anchors)
    best = int(np.argmax(scores))  # ties -> the smaller k
    return admissible[best] if scores[best] >= config.min_silhouette else one_group


def _anchors(n: int, sample: int) -> np.ndarray:
    """At most ``sample`` evenly spaced point indices (all points when ``n <= sample``)."""
    if n <= sample:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, sample).round().astype(np.int64))


def _candidate_partitions(
    X: np.ndarray,
    weights: np.ndarray,
    distances: np.ndarray,
    max_k: int,
    config: ClusteringConfig,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """One partition for every ``k`` in ``2..max_k`` (labels ``0..k-1``)."""
    if config.method == "kmeans":
        return [
            spherical_kmeans(X, weights, k, rng, n_iter=config.kmeans_iter, n_init=config.kmeans_init)
            for k in range(2, max_k + 1)
        ]
    condensed = squareform(distances, force="tovector", checks=False)
    if config.linkage == "ward":
        # Ward needs euclidean distances; between unit vectors ||x - y||^2 = 2 * cosine distance.
        condensed = np.sqrt(2.0 * np.maximum(condensed, 0.0))
        Z = kernels.linkage(condensed, "ward", "euclidean")
    else:
        Z = kernels.linkage(condensed, config.linkage, "cosine")
    return [
        _relabel_by_first_appearance(np.asarray(kernels.fcluster(Z, k, "maxclust"), dtype=np.int64))
        for k in range(2, max_k + 1)
    ]
