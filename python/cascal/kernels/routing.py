"""Batched CASCAL routing of query embeddings (DESIGN §3C), in Rust.

For every query ``x`` (cosine distance ``1 - cos``; the kernel normalises every row itself):

1. subject ``s`` = the nearest subject representative (ties: lower index);
2. for one subject ``t``: the ``min(k_nearest, count)`` nearest centroids of ``t`` (ties: lower
   centroid index) get weights ``softmax(-dist / distance_temp)``; each contributes its model
   distribution ``softmax(centroid_scores[c] / score_temp)`` where NaN scores get probability 0 and
   an all-NaN row is replaced by the global distribution ``G``; ``P_t = sum_c w_c * sharpened_c``.
   With ``subject_temp = 0`` (hard assignment, DESIGN §3C) ``P = P_s``. With ``subject_temp > 0``
   (soft assignment) ``P = sum_t pi_t * P_t`` over every subject, ``pi = softmax(-subject_dist /
   subject_temp)``, so a query between two subjects hedges between their niches;
3. if the distance ``d`` to the nearest centroid of ``s`` exceeds ``fallback_distance``:
   ``alpha = min((d - fallback_distance) / fallback_width, 1)`` and ``P = (1 - alpha) P + alpha G``
   with ``G = softmax(global_scores / score_temp)`` (NaN entries get 0); otherwise ``alpha = 0``;
4. ``ranked`` = the ``top_k`` models by decreasing ``P`` (ties: lower model index).

The kernel releases the GIL and runs over blocks of queries in parallel: one GEMM per block against
the subject representatives, then (hard) one GEMM per subject against only that subject's centroids
or (soft) one GEMM against all centroids.
float32 input is computed in float32 (distances agree with float64 to ~1e-6), float64 in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascal import _core

__all__ = ["RouteResult", "route_batch"]


@dataclass(frozen=True)
class RouteResult:
    """Output of :func:`route_batch` for ``n`` queries and ``M`` models.

    Attributes:
        probs: ``(n, M)`` float64 routing distribution; rows sum to 1.
        ranked: ``(n, top_k)`` int64 model indices, best first (ties: lower index).
        subject: ``(n,)`` int64 index of the nearest subject (the most weighted one when soft).
        nearest_distance: ``(n,)`` float64 cosine distance to the nearest centroid of that subject.
        alpha: ``(n,)`` float64 weight of the global distribution in the fallback blend.
    """

    probs: np.ndarray
    ranked: np.ndarray
    subject: np.ndarray
    nearest_distance: np.ndarray
    alpha: np.ndarray


def _matrix(value: object, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return np.ascontiguousarray(arr, dtype=dtype)


def _vector(value: object, name: str, length: int, dtype: type) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},), got {arr.shape}")
    if dtype is np.int64 and arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer subject indices, got dtype {arr.dtype}")
    if dtype is np.float64 and arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def route_batch(
    X: np.ndarray,
    subject_reps: np.ndarray,
    centroids: np.ndarray,
    centroid_subject: np.ndarray,
    centroid_scores: np.ndarray,
    global_scores: np.ndarray,
    *,
    k_nearest: int = 3,
    distance_temp: float = 0.1,
    score_temp: float = 0.1,
    fallback_distance: float = 0.5,
    fallback_width: float = 0.2,
    top_k: int = 3,
    subject_temp: float = 0.0,
) -> RouteResult:
    """Route ``n`` query embeddings to a pool of ``M`` models (rules in the module docs).

    Args:
        X: ``(n, d)`` query embeddings, float32 or float64 (other numbers become float64).
        subject_reps: ``(S, d)`` subject representatives (converted to ``X``'s dtype).
        centroids: ``(C, d)`` niche centroids (converted to ``X``'s dtype).
        centroid_subject: ``(C,)`` subject index of each centroid; every subject needs >= 1 centroid.
        centroid_scores: ``(C, M)`` niche score of each model (NaN = no data; +-inf rejected).
        global_scores: ``(M,)`` global score of each model (NaN = no data; not all NaN).
        k_nearest: centroids blended per query (>= 1; fewer if the subject has fewer).
        distance_temp: temperature of the softmax over negative centroid distances (> 0).
        score_temp: temperature sharpening the model scores (> 0).
        fallback_distance: nearest-centroid distance above which the global ranking is blended in.
        fallback_width: distance over which the blend weight grows from 0 to 1 (> 0).
        top_k: models listed in ``ranked`` (1..M).
        subject_temp: temperature of the soft subject assignment (>= 0; 0 = hard, nearest subject only).

    Raises:
        ValueError: naming the argument of any invalid input (zero or non-finite embedding rows,
            shape mismatches, subjects without centroids, bad parameters).
    """
    x = _matrix(X, "X")
    reps = _matrix(subject_reps, "subject_reps", x.dtype)
    cents = _matrix(centroids, "centroids", x.dtype)
    cscores = _matrix(centroid_scores, "centroid_scores", np.dtype(np.float64))
    n_centroids, n_models = cscores.shape
    csubj = _vector(centroid_subject, "centroid_subject", cents.shape[0], np.int64)
    gscores = _vector(global_scores, "global_scores", n_models, np.float64)
    probs, ranked, subject, nearest, alpha = _core.route_batch(
        x,
        reps,
        cents,
        csubj,
        cscores,
        gscores,
        _positive_int(k_nearest, "k_nearest"),
        float(distance_temp),
        float(score_temp),
        float(fallback_distance),
        float(fallback_width),
        _positive_int(top_k, "top_k"),
        float(subject_temp),
    )
    return RouteResult(probs, ranked, subject, nearest, alpha)
