"""Calibration of the two routing constants ``fit`` sets from the training embeddings when their
parameters are ``"auto"`` (docs/algorithm.md#subject-assignment, #fallback-to-the-global-ranking):
the subject temperature (maximum likelihood of the training questions' own subjects) and the
fallback distance (a quantile of their nearest-niche distances). Neither reads an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from threadpoolctl import threadpool_limits

from cascal import kernels
from cascal.kernels.routing import RouteParams, RoutingTables
from cascal.router.geometry import ROW_CHUNK, unit_subset

#: Value of ``fallback_distance`` / ``subject_temp`` that asks ``fit`` to calibrate it on the training data.
AUTO = "auto"
#: Search bounds of :func:`fit_subject_temperature` (cosine-distance units).
SUBJECT_TEMP_BOUNDS = (1e-4, 1.0)
#: Largest ``rows x subjects`` distance matrix the subject temperature's likelihood holds; beyond it
#: both constants are calibrated on evenly spaced training rows (:func:`calibration_rows`).
CALIBRATION_MAX_ENTRIES = 1 << 24


@dataclass(frozen=True)
class RoutingConstants:
    """The two routing constants ``fit`` stores as ``subject_temp_`` and ``fallback_distance_``."""

    subject_temp: float
    fallback_distance: float


def calibration_rows(n: int, n_subjects: int, max_entries: int = CALIBRATION_MAX_ENTRIES) -> np.ndarray:
    """The training rows the constants are calibrated on: all ``n`` while ``n x n_subjects`` stays
    within ``max_entries``, else that many evenly spaced rows (at least 10,000: a one-parameter
    likelihood and one quantile need far fewer)."""
    cap = max(max_entries // max(n_subjects, 1), 10_000)
    if n <= cap:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


def fit_subject_temperature(
    X: np.ndarray,
    subject_reps: np.ndarray,
    labels: np.ndarray,
    *,
    rows: Optional[np.ndarray] = None,
    norms: Optional[np.ndarray] = None,
) -> float:
    """Maximum-likelihood temperature ``T`` of ``P(subject | x) = softmax(-(1 - x·rep) / T)``.

    Args:
        X: ``(n, d)`` training embeddings: unit rows, or rows of lengths ``norms``.
        subject_reps: ``(S, d)`` unit subject representatives.
        labels: index of each used row's subject (``(n,)``, or ``(len(rows),)`` with ``rows``).
        rows: the rows of ``X`` the likelihood is taken over (default: all).
        norms: ``(n,)`` row lengths of ``X``; rows are divided by them (default: ``X`` is unit).

    Returns:
        ``T`` within :data:`SUBJECT_TEMP_BOUNDS` minimising the mean negative log-likelihood of
        ``labels`` (bounded scalar search over ``log T``, each evaluation by the Rust kernel
        :func:`cascal.kernels.softmax_nll`); ``0.0`` (hard assignment, nothing to weigh) when there
        is a single subject.

    The ``(rows, S)`` distance matrix is built block by block in float64; :func:`calibration_rows`
    bounds its size for ``fit``.
    """
    from scipy.optimize import minimize_scalar

    if subject_reps.shape[0] < 2:
        return 0.0
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    norms = np.ones(X.shape[0]) if norms is None else norms
    reps = np.asarray(subject_reps, dtype=np.float64)
    dist = np.empty((rows.size, reps.shape[0]))
    for start in range(0, rows.size, ROW_CHUNK):
        block = rows[start : start + ROW_CHUNK]
        np.subtract(1.0, unit_subset(X, norms, block) @ reps.T, out=dist[start : start + block.size])
    labels = np.ascontiguousarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        return kernels.softmax_nll(dist, labels, float(np.exp(log_t)))

    low, high = np.log(SUBJECT_TEMP_BOUNDS[0]), np.log(SUBJECT_TEMP_BOUNDS[1])
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(result.x))


def nearest_niche_distances(X: np.ndarray, norms: np.ndarray, rows: np.ndarray, tables: RoutingTables) -> np.ndarray:
    """``(len(rows),)`` cosine distance from each of ``X[rows]`` to the nearest niche centroid of its
    nearest subject (what the fallback compares with ``fallback_distance``).

    It depends on the tables only, not on the subject temperature nor the other constants, so the
    kernel computes it with hard assignment (the fewest distances), block by block."""
    probe = RouteParams(top_k=1, subject_temp=0.0)
    nearest = np.empty(rows.size)
    for start in range(0, rows.size, ROW_CHUNK):
        block = rows[start : start + ROW_CHUNK]
        chunk = unit_subset(X, norms, block)
        nearest[start : start + block.size] = kernels.route_batch(chunk, tables, probe).nearest_distance
    return nearest


def routing_constants(
    X: np.ndarray,
    norms: np.ndarray,
    subject_index: np.ndarray,
    tables: RoutingTables,
    *,
    subject_temp: Union[float, str],
    fallback_distance: Union[float, str],
    fallback_quantile: float,
    max_entries: int = CALIBRATION_MAX_ENTRIES,
) -> RoutingConstants:
    """The routing constants of a fit: each parameter as a float, or (``"auto"``) its value
    calibrated on the training embeddings ``X`` (rows of lengths ``norms``) and their subjects
    ``subject_index`` (indices into the tables' subjects), over the rows :func:`calibration_rows`
    picks. ``fallback_quantile`` is the quantile of the nearest-niche distances ``"auto"`` takes.

    The products per block are small: BLAS runs single-threaded here (a threaded BLAS spends more on
    waking its threads than on them)."""
    rows = calibration_rows(X.shape[0], tables.subject_reps.shape[0], max_entries)
    with threadpool_limits(limits=1, user_api="blas"):
        if subject_temp == AUTO:
            temp = fit_subject_temperature(X, tables.subject_reps, subject_index[rows], rows=rows, norms=norms)
        else:
            temp = float(subject_temp)
        if fallback_distance == AUTO:
            nearest = nearest_niche_distances(X, norms, rows, tables)
            fallback = float(np.quantile(nearest, float(fallback_quantile)))
        else:
            fallback = float(fallback_distance)
    return RoutingConstants(subject_temp=temp, fallback_distance=fallback)
