"""Niche kernels: weighted cluster means and nearest-centroid search (Rust; docs/algorithm.md#skill-niches, docs/algorithm.md#routing).

Input conventions are those of :mod:`cascal.kernels.distance`: float32/float64 C-contiguous arrays
are used without copying, integer/bool arrays become float64, other dtypes raise :class:`~cascal.errors.KernelError`.
"""

from __future__ import annotations

import operator
from typing import Optional

import numpy as np
import numpy.typing as npt

from cascal import _core
from cascal.errors import KernelError
from cascal.kernels.distance import as_matrix, as_matrix_pair, check_metric

__all__ = ["cluster_means", "nearest_centroids"]


def _as_count(value: object, name: str) -> int:
    """A non-negative Python int from ``value`` (bools and non-integers rejected)."""
    if isinstance(value, (bool, np.bool_)):
        raise KernelError(f"{name}: expected an integer, got {value!r}", arg=name)
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise KernelError(f"{name}: expected an integer, got {value!r}", arg=name) from None
    if count < 0:
        raise KernelError(f"{name}: must be >= 0, got {count}", arg=name)
    return count


def _as_labels(labels: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise KernelError(f"labels: expected a 1-D array, got shape {arr.shape}", arg="labels")
    if arr.dtype.kind not in "iu":
        if arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise KernelError(f"labels: expected integer labels, got dtype {arr.dtype}", arg="labels")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise KernelError("labels: value too large for int64", arg="labels")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_weights(weights: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(weights)
    if arr.ndim != 1:
        raise KernelError(f"weights: expected a 1-D array, got shape {arr.shape}", arg="weights")
    if not (arr.dtype.kind in "biu" or (arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8))):
        raise KernelError(
            f"weights: unsupported dtype {arr.dtype}; expected float32, float64, integer or bool", arg="weights"
        )
    return np.ascontiguousarray(arr, dtype=np.float64)


def cluster_means(
    labels: npt.ArrayLike,
    values: npt.ArrayLike,
    n_clusters: int,
    weights: Optional[npt.ArrayLike] = None,
) -> np.ndarray:
    """NaN-aware weighted mean of ``values`` per cluster (niche scores, docs/algorithm.md#assigning-questions-and-niche-scores).

    Entry ``(c, j)`` is ``sum(w_i * values[i, j]) / sum(w_i)`` over the rows ``i`` with
    ``labels[i] == c`` whose ``values[i, j]`` is not NaN. It is NaN when that weight sum is 0: no row
    in the cluster, every value of the column missing, or all weights 0. Only this matrix is
    returned (no counts). Sums are accumulated in float64.

    Args:
        labels: ``(n,)`` integer cluster labels in ``[0, n_clusters)``.
        values: ``(n, n_m)`` float array; NaN marks a missing value (±inf is an error).
        n_clusters: number of clusters (rows of the result).
        weights: optional ``(n,)`` finite non-negative weights (default: all 1), used in float64.

    Returns:
        ``(n_clusters, n_m)`` array of the dtype of ``values``.

    Raises:
        KernelError: (a ``ValueError``) labels out of range, negative/NaN/inf weights, infinite values, shape mismatch.
    """
    k = _as_count(n_clusters, "n_clusters")
    lab = _as_labels(labels)
    vals = as_matrix(values, "values")
    if lab.shape[0] != vals.shape[0]:
        raise KernelError(f"labels: has {lab.shape[0]} entries but values has {vals.shape[0]} rows", arg="labels")
    w = None
    if weights is not None:
        w = _as_weights(weights)
        if w.shape[0] != vals.shape[0]:
            raise KernelError(f"weights: has {w.shape[0]} entries but values has {vals.shape[0]} rows", arg="weights")
    return _core.cluster_means(lab, vals, k, w)


def nearest_centroids(
    X: npt.ArrayLike, C: npt.ArrayLike, k: int = 1, metric: str = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``C`` to every row of ``X``.

    Rows of the result are sorted by ascending distance, ties broken by the lower centroid index.
    Distances are those of :func:`cascal.kernels.pairwise_distances` (same metric conventions,
    zero vectors included). Queries are processed in blocks, so the extra memory is bounded by the
    block size (about 2**18 distances per worker), never ``n × n_centroids``.

    Args:
        X: ``(n, d)`` queries.
        C: ``(n_c, d)`` centroids, ``n_c >= 1``.
        k: how many neighbours, ``1 <= k <= n_c``.
        metric: ``"cosine"``, ``"euclidean"`` or ``"sqeuclidean"``.

    Returns:
        ``(indices, distances)``: int64 ``(n, k)`` and ``(n, k)`` of the inputs' float dtype.

    Raises:
        KernelError: (a ``ValueError``) ``k`` out of range, empty ``C``, bad shapes/dtypes, NaN/inf, bad metric.
    """
    metric = check_metric(metric)
    kk = _as_count(k, "k")
    x, c = as_matrix_pair(X, C, ("X", "C"))
    return _core.nearest_centroids(x, c, kk, metric)
