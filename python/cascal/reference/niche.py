"""numpy references of the niche kernels: :func:`cluster_means` and :func:`nearest_centroids`."""

from __future__ import annotations

from typing import Optional

import numpy as np
import numpy.typing as npt

from cascal.errors import KernelError
from cascal.reference.distance import pairwise_distances

__all__ = ["cluster_means", "nearest_centroids"]


def cluster_means(
    labels: npt.ArrayLike, values: npt.ArrayLike, n_clusters: int, weights: Optional[npt.ArrayLike] = None
) -> np.ndarray:
    """NaN-aware weighted per-cluster column means with ``np.bincount`` (float64 sums)."""
    lab = np.asarray(labels, dtype=np.int64)
    vals = np.asarray(values)
    n, m = vals.shape
    if lab.size and (lab.min() < 0 or lab.max() >= n_clusters):
        raise KernelError("labels: out of range", arg="labels")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    present = ~np.isnan(vals)
    v64 = np.where(present, vals.astype(np.float64), 0.0)
    flat = (lab[:, None] * m + np.arange(m)).ravel()
    sums = np.bincount(flat, weights=(v64 * w[:, None]).ravel(), minlength=n_clusters * m)
    wsum = np.bincount(flat, weights=(present * w[:, None]).ravel(), minlength=n_clusters * m)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(wsum > 0, sums / np.where(wsum > 0, wsum, 1.0), np.nan)
    out_dtype = vals.dtype if vals.dtype in (np.float32, np.float64) else np.float64
    return means.reshape(n_clusters, m).astype(out_dtype)


def nearest_centroids(
    X: npt.ArrayLike, C: npt.ArrayLike, k: int = 1, metric: str = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """Full distance matrix, then a stable argsort (ties: lower index first)."""
    D = pairwise_distances(X, C, metric)
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64), np.take_along_axis(D, order, axis=1)
