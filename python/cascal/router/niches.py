"""Per-subject skill niches of a model pool (docs/algorithm.md#skill-niches).

For one subject, given the unit question embeddings ``X`` and the consensus results of its training
questions:

1. :func:`proficiency_weights` — model ``m``'s proficiency set is the questions whose agreement
   ratio reaches ``min_consensus`` and where ``m`` is in the plurality, weighted by agreement;
2. :func:`seed_centroids` — every proficiency set is clustered
   (:func:`cascal.router.clustering.cluster_proficiency_set`) and each group gives a weighted
   spherical mean (:func:`spherical_means`);
3. :func:`merge_centroids` — seeds of all models closer than ``merge_threshold`` (cosine distance)
   are merged agglomeratively, weighted by their member counts;
4. :func:`assign_and_score` — every training question of the subject joins its nearest centroid,
   empty centroids are dropped, a niche's model score is the mean consensus score of its questions;
5. :func:`prune_niches` — niches whose top-``prune_top`` model sets have Jaccard similarity
   ``>= prune_jaccard`` are folded, the smaller into the larger (centroid and scores recomputed
   from the joined questions).

:func:`discover_subject_niches` runs the five steps and returns :class:`Niche` records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cascal import kernels
from cascal.router.clustering import ClusteringConfig, cluster_proficiency_set
from cascal.vectors import unit_rows


@dataclass(frozen=True)
class NicheConfig:
    """Parameters of niche discovery (see the module docstring)."""

    min_consensus: float = 0.5
    merge_threshold: float = 0.15
    prune_jaccard: float = 0.95
    prune_top: int = 3
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)


@dataclass(frozen=True)
class Niche:
    """One skill niche of a subject.

    Attributes:
        subject: the subject it belongs to.
        centroid: ``(d,)`` unit vector, the niche's centre in embedding space.
        size: number of training questions assigned to it.
        scores: ``(M,)`` mean consensus score of every pool model on those questions (0 where a model
            answered none of them).
    """

    subject: str
    centroid: np.ndarray
    size: int
    scores: np.ndarray

    def __repr__(self) -> str:
        scores = ", ".join(f"{v:.3f}" for v in self.scores)
        return f"Niche(subject={self.subject!r}, size={self.size}, d={self.centroid.shape[0]}, scores=[{scores}])"

    def best_models(self, model_names: list[str], top: int = 3) -> list[str]:
        """Names of the ``top`` best-scored models of the niche (ties -> lower column)."""
        order = np.argsort(-self.scores, kind="stable")[:top]
        return [model_names[i] for i in order]


def proficiency_weights(plurality: np.ndarray, agreement: np.ndarray, min_consensus: float) -> np.ndarray:
    """``(n_q, M)`` weights: the agreement ratio where the question is in model ``m``'s proficiency
    set (agreement ``>= min_consensus`` and ``m`` in the plurality), else 0."""
    eligible = (agreement >= min_consensus) & (agreement > 0)
    return np.where(plurality & eligible[:, None], agreement[:, None], 0.0)


def seed_centroids(
    X: np.ndarray, weights: np.ndarray, config: ClusteringConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster every model's proficiency set; return ``(centroids (c, d), member counts (c,))``."""
    centroids: list[np.ndarray] = []
    counts: list[float] = []
    # float32 distances: ample precision for clustering, and half the memory traffic of float64.
    # Each model's (subsampled) set gets its own distance matrix: a matrix over every question of
    # the subject would cost O(n_subject^2) while the sets are capped at ``max_points``.
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    for m in range(weights.shape[1]):
        members = np.flatnonzero(weights[:, m] > 0)
        if members.size == 0:
            continue
        scale = 1.0
        if members.size > config.max_points:
            # an evenly spaced subsample bounds the quadratic cost; counts are scaled back up
            scale = members.size / config.max_points
            members = members[np.linspace(0, members.size - 1, config.max_points).round().astype(np.int64)]
        w = weights[members, m]
        X_set = X[members]
        distances = _unit_cosine_distances(X32[members])
        labels = cluster_proficiency_set(X_set, w, config, rng, distances)
        k = int(labels.max()) + 1
        centroids.extend(spherical_means(X_set, labels, k, w))
        counts.extend((scale * np.bincount(labels, minlength=k)).tolist())
    d = X.shape[1]
    return np.asarray(centroids, dtype=np.float64).reshape(-1, d), np.asarray(counts, dtype=np.float64)


def _unit_cosine_distances(X: np.ndarray) -> np.ndarray:
    """``(n, n)`` cosine distances ``1 - x·y`` of unit rows (one float32 GEMM; zero diagonal, exactly symmetric)."""
    G = X @ X.T
    np.subtract(1.0, G, out=G)
    G = np.minimum(G, G.T)
    np.fill_diagonal(G, 0.0)
    return np.maximum(G, 0.0, out=G)


def spherical_means(X: np.ndarray, labels: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
    """``(k, d)`` L2-normalised weighted means of the rows of ``X`` in each group ``0..k-1``."""
    onehot = np.zeros((k, X.shape[0]))
    onehot[labels, np.arange(X.shape[0])] = weights
    return unit_rows(onehot @ X)


def merge_centroids(centroids: np.ndarray, counts: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge the closest pair of centroids while its cosine distance is below ``threshold``; the
    merged centre is the count-weighted spherical mean, its count the sum.

    The cosine distances are computed once and only the merged centre's row and column are
    recomputed after a merge (``O(c^2 d)`` in all instead of ``O(c^3 d)``)."""
    cents = np.array(centroids, dtype=np.float64).reshape(-1, centroids.shape[1])
    cnts = np.asarray(counts, dtype=np.float64).copy()
    alive = np.ones(cents.shape[0], dtype=bool)
    dist = 1.0 - cents @ cents.T
    np.fill_diagonal(dist, np.inf)
    while alive.sum() > 1:
        # dead rows and columns are +inf; argmin keeps the first of tied minima (row-major order)
        i, j = np.unravel_index(np.argmin(dist), dist.shape)
        if dist[i, j] >= threshold:
            break
        i, j = min(i, j), max(i, j)
        merged = cnts[i] * cents[i] + cnts[j] * cents[j]
        cents[i] = merged / max(np.linalg.norm(merged), 1e-12)
        cnts[i] += cnts[j]
        alive[j] = False
        dist[j, :] = np.inf
        dist[:, j] = np.inf
        row = 1.0 - cents @ cents[i]
        row[~alive] = np.inf
        row[i] = np.inf
        dist[i, :] = row
        dist[:, i] = row
    return cents[alive], cnts[alive]


def assign_and_score(
    X: np.ndarray, scores: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign every question to its nearest centroid and drop empty centroids.

    Returns ``(labels (n,), centroids (c', d), niche_scores (c', M))``; labels index the kept
    centroids, niche scores are NaN-aware means of ``scores`` (0 where a model has none)."""
    idx, _ = kernels.nearest_centroids(X, centroids, 1, "cosine")
    raw = np.asarray(idx[:, 0], dtype=np.int64)
    used = np.unique(raw)
    labels = np.searchsorted(used, raw)
    return labels, centroids[used], _niche_scores(labels, scores, used.size)


def _niche_scores(labels: np.ndarray, scores: np.ndarray, n_niches: int) -> np.ndarray:
    means = np.asarray(kernels.cluster_means(labels, scores, n_niches), dtype=np.float64)
    return np.nan_to_num(means, nan=0.0)


def _top_sets(niche_scores: np.ndarray, top: int) -> list[frozenset[int]]:
    order = np.argsort(-niche_scores, axis=1, kind="stable")[:, :top]
    return [frozenset(row.tolist()) for row in order]


def prune_niches(
    X: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    niche_scores: np.ndarray,
    jaccard: float,
    top: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold niches with near-identical top-``top`` model sets, the smaller into the larger, until no
    such pair remains; a folded niche's centroid is the spherical mean of its questions and its
    scores are recomputed. Returns ``(labels, centroids, niche_scores)``."""
    labels = labels.copy()
    centroids = centroids.copy()
    niche_scores = niche_scores.copy()
    while centroids.shape[0] > 1:
        sizes = np.bincount(labels, minlength=centroids.shape[0])
        tops = _top_sets(niche_scores, top)
        best = None
        for i in range(len(tops)):
            for j in range(i + 1, len(tops)):
                sim = len(tops[i] & tops[j]) / len(tops[i] | tops[j])
                if sim >= jaccard:
                    key = (sim, float(centroids[i] @ centroids[j]))
                    if best is None or key > best[0]:
                        best = (key, i, j)
        if best is None:
            break
        _, i, j = best
        keep, fold = (i, j) if sizes[i] >= sizes[j] else (j, i)
        labels[labels == fold] = keep
        members = labels == keep
        centroids[keep] = unit_rows(X[members].mean(axis=0, keepdims=True))[0]
        survivors = np.delete(np.arange(centroids.shape[0]), fold)
        labels = np.searchsorted(survivors, labels)
        centroids = centroids[survivors]
        niche_scores = _niche_scores(labels, scores, centroids.shape[0])
    return labels, centroids, niche_scores


def discover_subject_niches(
    subject: str,
    X: np.ndarray,
    scores: np.ndarray,
    plurality: np.ndarray,
    agreement: np.ndarray,
    config: NicheConfig,
    rng: np.random.Generator,
) -> list[Niche]:
    """All niches of one subject (module docstring, steps 1-5).

    Args:
        subject: the subject's name (recorded on each niche).
        X: ``(n, d)`` unit embeddings of the subject's training questions (``n >= 1``).
        scores: ``(n, M)`` consensus scores (NaN = not asked).
        plurality: ``(n, M)`` bool, model in the question's plurality.
        agreement: ``(n,)`` agreement ratios.
        config: niche parameters.
        rng: source of randomness (k-means starts).

    A subject where no question reaches ``min_consensus`` gets one niche centred on its questions.
    """
    weights = proficiency_weights(plurality, agreement, config.min_consensus)
    seeds, counts = seed_centroids(X, weights, config.clustering, rng)
    if seeds.shape[0] == 0:
        seeds, counts = unit_rows(X.mean(axis=0, keepdims=True)), np.array([float(X.shape[0])])
    merged, _ = merge_centroids(seeds, counts, config.merge_threshold)
    labels, centroids, niche_scores = assign_and_score(X, scores, merged)
    labels, centroids, niche_scores = prune_niches(
        X, scores, labels, centroids, niche_scores, config.prune_jaccard, config.prune_top
    )
    sizes = np.bincount(labels, minlength=centroids.shape[0])
    return [
        Niche(subject=subject, centroid=centroids[k].astype(np.float32), size=int(sizes[k]), scores=niche_scores[k])
        for k in range(centroids.shape[0])
    ]
