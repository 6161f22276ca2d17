"""Benchmark case of the per-set cut choice (:func:`cascal.kernels.best_silhouette_cut`) against
its scipy/numpy reference, on the shape ``fit`` gives it: proficiency sets of 256 points (the
default ``max_points``), float32 cosine distances of 384-d embeddings, cuts into 2..5 groups,
silhouettes over 200 anchors. A 100k-question, 20-model fit makes about a thousand such calls."""

from __future__ import annotations

import numpy as np

from cascal import reference
from cascal.bench.cases.linkage import make_embeddings
from cascal.bench.registry import Case, register
from cascal.kernels import best_silhouette_cut

SET_SIZE = 256
ANCHORS = np.unique(np.linspace(0, SET_SIZE - 1, 200).round().astype(np.int64))
FULL_SETS = 200
QUICK_SETS = 20


def _sets(quick: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(distances float32 (256, 256), weights) of independent sets drawn around a few topics."""
    rng = np.random.default_rng(0)
    out = []
    for s in range(QUICK_SETS if quick else FULL_SETS):
        X = make_embeddings(SET_SIZE, seed=s)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        D = 1.0 - X @ X.T
        D = np.maximum(np.minimum(D, D.T), 0.0)
        np.fill_diagonal(D, 0.0)
        out.append((np.ascontiguousarray(D, dtype=np.float32), rng.uniform(0.5, 1.0, SET_SIZE)))
    return out


def _cut_all(sets, cut) -> list[np.ndarray]:
    return [
        cut(D, w, method="ward", max_k=5, min_cluster_size=10, min_silhouette=0.05, anchors=ANCHORS) for D, w in sets
    ]


register(
    Case(
        name=f"best_silhouette_cut ward, {FULL_SETS} (quick {QUICK_SETS}) sets of {SET_SIZE} f32",
        setup=_sets,
        kernel=lambda sets: _cut_all(sets, best_silhouette_cut),
        references={"scipy linkage + numpy silhouettes": lambda sets: _cut_all(sets, reference.best_silhouette_cut)},
        targets={"scipy linkage + numpy silhouettes": 1.5},
        repeats=5,
        quick_repeats=3,
    )
)
