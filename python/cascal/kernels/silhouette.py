"""One proficiency set's number of groups, chosen by weighted silhouette (Rust).

:func:`best_silhouette_cut` is the whole per-set step of niche discovery
(docs/algorithm.md#clustering-a-proficiency-set) in one call that runs without the GIL: the
hierarchical clustering of the set's cosine distances, its cuts into ``2..max_k`` groups, the size
floor, and the cut with the highest weighted silhouette. :func:`weighted_silhouettes` scores given
partitions. The numpy/scipy references are in :mod:`cascal.reference.silhouette`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cascal import _core
from cascal.errors import KernelError
from cascal.kernels.linkage import LINKAGE_METHODS

__all__ = ["best_silhouette_cut", "weighted_silhouettes"]


def _square(distances: npt.ArrayLike) -> np.ndarray:
    D = np.asarray(distances)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 1:
        raise KernelError(f"distances: expected a square (n, n) matrix, got shape {D.shape}", arg="distances")
    if D.dtype not in (np.float32, np.float64):
        if D.dtype.kind not in "iub":
            raise KernelError(f"distances: expected a float32 or float64 array, got dtype {D.dtype}", arg="distances")
        D = D.astype(np.float64)
    return np.ascontiguousarray(D)


def _weights(weights: npt.ArrayLike, n: int) -> np.ndarray:
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise KernelError(f"weights: expected one weight per point ({n},), got shape {w.shape}", arg="weights")
    return w


def _anchors(anchors: npt.ArrayLike | None, n: int) -> np.ndarray:
    if anchors is None:
        return np.arange(n, dtype=np.int64)
    a = np.asarray(anchors)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise KernelError(
            f"anchors: expected a 1-D integer array, got dtype {a.dtype} and shape {a.shape}", arg="anchors"
        )
    return np.ascontiguousarray(a, dtype=np.int64)


def best_silhouette_cut(
    distances: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    method: str = "ward",
    max_k: int = 5,
    min_cluster_size: int = 10,
    min_silhouette: float = 0.05,
    anchors: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Group labels ``0..k-1`` (int64, in order of first appearance) of ``n`` points.

    The points are clustered hierarchically from their ``(n, n)`` cosine ``distances`` (``ward``
    on ``sqrt(2 * distance)``, the euclidean distance of unit vectors; negative rounding counts
    as 0; only the upper triangle is read for the hierarchy) and cut into every ``k`` in
    ``2..max_k`` (fewer than ``k`` groups when merge heights tie). Among the cuts with at least
    two groups, each of at least ``min_cluster_size`` points, the one with the highest weighted
    silhouette over the ``anchors`` wins (the smaller ``k`` on ties); if none is admissible, or
    the best silhouette is below ``min_silhouette``, every label is 0.

    Args:
        distances: ``(n, n)`` finite float32/float64 distance matrix (float32 stays float32).
        weights: ``(n,)`` finite weights ``> 0``.
        method: a linkage method (:data:`cascal.kernels.LINKAGE_METHODS`).
        max_k: largest number of groups tried; at most ``n // min_cluster_size`` are.
        min_cluster_size: smallest admissible group.
        min_silhouette: the lowest silhouette that splits the set.
        anchors: indices of the points the silhouette is averaged over (default: all).

    Raises:
        KernelError: (a ``ValueError``) a bad shape, weight, anchor, distance or method; the
            message names the argument.
    """
    D = _square(distances)
    n = D.shape[0]
    if method not in LINKAGE_METHODS:
        raise KernelError(f"method: expected one of {LINKAGE_METHODS}, got {method!r}", arg="method")
    for name, value in (("max_k", max_k), ("min_cluster_size", min_cluster_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise KernelError(f"{name}: expected a non-negative integer, got {value!r}", arg=name)
    return _core.best_silhouette_cut(
        D, _weights(weights, n), _anchors(anchors, n), method, int(max_k), int(min_cluster_size), float(min_silhouette)
    )


def weighted_silhouettes(
    distances: npt.ArrayLike,
    partitions: Sequence[npt.ArrayLike],
    weights: npt.ArrayLike,
    anchors: npt.ArrayLike | None = None,
) -> list[float]:
    """Weighted silhouette of each partition (labels ``0..k-1`` of the ``n`` points, every group
    non-empty), averaged over the ``anchors`` (default: all points; each compared with all).

    For point ``i`` in group ``g``: ``a_i`` = weighted mean distance to the other members of ``g``,
    ``b_i`` = smallest weighted mean distance to another group, ``s_i = (b_i - a_i) / max(a_i,
    b_i)`` (0 for a point alone in its group, and for every point of a one-group partition); the
    result is ``sum(w_i s_i) / sum(w_i)`` over the anchors. Sums are accumulated in float64.
    """
    D = _square(distances)
    n = D.shape[0]
    parts = []
    for p, labels in enumerate(partitions):
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.dtype.kind not in "iu":
            raise KernelError(
                f"partitions[{p}]: expected a 1-D integer array, got dtype {lab.dtype} and shape {lab.shape}",
                arg="partitions",
            )
        parts.append(np.ascontiguousarray(lab, dtype=np.int64))
    return list(_core.weighted_silhouettes(D, parts, _weights(weights, n), _anchors(anchors, n)))
