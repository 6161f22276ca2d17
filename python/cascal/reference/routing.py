"""numpy reference of batched CASCAL routing (:mod:`cascal.kernels.routing` documents the rules).

Vectorised over queries; everything is computed in float64. Memory is ``O(n·C)``: callers route
very large batches in slices.
"""

from __future__ import annotations

import numpy as np

from cascal.errors import ArgumentTypeError
from cascal.kernels.routing import RouteParams, RouteResult, RoutingTables

__all__ = ["route_batch"]

#: Soft subject weights below ``exp(-SOFT_SKIP_EXPONENT) = 2^-52`` of the nearest subject's are
#: set to 0 (the Rust kernel never computes those subjects' centroid distances).
SOFT_SKIP_EXPONENT = 52 * np.log(2.0)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _sharpen(scores: np.ndarray, temp: float) -> np.ndarray:
    """Row-wise softmax(scores / temp) with NaN -> probability 0 (all-NaN rows become NaN)."""
    scores = np.atleast_2d(scores)
    with np.errstate(invalid="ignore"):
        top = np.nanmax(np.where(np.isnan(scores), -np.inf, scores), axis=1, keepdims=True)
        e = np.where(np.isnan(scores), 0.0, np.exp((scores - top) / temp))
        return e / e.sum(axis=1, keepdims=True)


def route_batch(
    X: np.ndarray, tables: RoutingTables, params: RouteParams = RouteParams(), *, subject_weights: bool = False
) -> RouteResult:
    """numpy version of :func:`cascal.kernels.route_batch`: same arguments, same result; the tables
    and parameters are validated when they are made, the values are not checked here."""
    if not isinstance(tables, RoutingTables) or not isinstance(params, RouteParams):
        raise ArgumentTypeError(
            f"tables, params: expected RoutingTables and RouteParams, got {type(tables).__name__} "
            f"and {type(params).__name__}"
        )
    subject_reps, centroids, centroid_subject = tables.subject_reps, tables.centroids, tables.centroid_subject
    centroid_scores, global_scores = tables.centroid_scores, tables.global_scores
    k_nearest, distance_temp, score_temp = params.k_nearest, params.distance_temp, params.score_temp
    fallback_distance, fallback_width = params.fallback_distance, params.fallback_width
    top_k, subject_temp = params.top_k, params.subject_temp
    x = _unit_rows(X)
    n = x.shape[0]

    # 1. subject = nearest representative (argmin keeps the first of tied minima); with
    #    subject_temp > 0 every subject gets the weight softmax(-dist / subject_temp)
    subject_dist = 1.0 - x @ _unit_rows(subject_reps).T
    subject = np.argmin(subject_dist, axis=1)
    n_subjects = subject_dist.shape[1]
    if subject_temp > 0:
        # a subject whose weight is below 2^-52 of the nearest one's is negligible: weight 0
        gap = subject_dist - subject_dist[np.arange(n), subject][:, None]
        exponent = -gap / subject_temp
        subject_weight = np.where(exponent >= -SOFT_SKIP_EXPONENT, np.exp(exponent), 0.0)
        subject_weight /= subject_weight.sum(axis=1, keepdims=True)
    else:
        subject_weight = np.eye(n_subjects)[subject]

    G = _sharpen(np.asarray(global_scores, dtype=np.float64), score_temp)[0]
    sharp = _sharpen(np.asarray(centroid_scores, dtype=np.float64), score_temp)
    all_nan = np.isnan(np.asarray(centroid_scores, dtype=np.float64)).all(axis=1)
    sharp[all_nan] = G
    # optional cost table: mixed with the same weights, unsharpened; all-NaN niches cost the global costs
    with_costs = tables.centroid_costs is not None and tables.global_costs is not None
    if with_costs:
        global_costs = np.asarray(tables.global_costs, dtype=np.float64)
        cost_rows = np.array(tables.centroid_costs, dtype=np.float64)
        cost_rows[all_nan] = global_costs
        expected = np.zeros((n, sharp.shape[1]))

    # 2. per subject: distances to its own centroids only (others are infinitely far), the
    #    k nearest mixed by softmax(-dist / distance_temp); subjects mixed by their weights
    all_dist = 1.0 - x @ _unit_rows(centroids).T
    probs = np.zeros((n, sharp.shape[1]))
    nearest = np.zeros(n)
    for s in range(n_subjects):
        on = subject_weight[:, s] > 0
        if not on.any():
            continue
        centroid_dist = np.where(centroid_subject[None, :] != s, np.inf, all_dist[on])
        order = np.argsort(centroid_dist, axis=1, kind="stable")[:, :k_nearest]
        near = np.take_along_axis(centroid_dist, order, axis=1)  # inf where the subject has < k centroids
        weights = np.exp(-(near - near[:, :1]) / distance_temp)
        weights /= weights.sum(axis=1, keepdims=True)
        probs[on] += subject_weight[on, s, None] * np.einsum("nk,nkm->nm", weights, sharp[order])
        if with_costs:
            expected[on] += subject_weight[on, s, None] * np.einsum("nk,nkm->nm", weights, cost_rows[order])
        mine = subject[on] == s
        nearest[np.flatnonzero(on)[mine]] = near[mine, 0]

    # 3. fallback blend toward the global ranking
    alpha = np.where(nearest > fallback_distance, np.minimum((nearest - fallback_distance) / fallback_width, 1.0), 0.0)
    probs = (1.0 - alpha[:, None]) * probs + alpha[:, None] * G[None, :]
    expected_cost = (1.0 - alpha[:, None]) * expected + alpha[:, None] * global_costs[None, :] if with_costs else None

    # 4. ranking: stable sort of -P keeps the lower index first among ties
    ranked = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    return RouteResult(
        probs,
        ranked.astype(np.int64),
        subject.astype(np.int64),
        nearest.astype(np.float64),
        alpha.astype(np.float64),
        expected_cost,
        subject_weight.astype(np.float64) if subject_weights else None,
    )
