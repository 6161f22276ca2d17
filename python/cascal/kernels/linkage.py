"""Hierarchical agglomerative clustering with scipy-compatible output, in Rust.

:func:`linkage` returns scipy's ``(n-1) x 4`` linkage matrix (same cluster numbering, same row
order) and :func:`fcluster` cuts it into flat clusters with scipy's semantics and label order.

Algorithms (Müllner 2011): single linkage is Prim's minimum spanning tree (from raw vectors the
distances are computed on the fly, so memory stays O(n d)); complete, average, weighted and ward
use Müllner's generic algorithm with Lance-Williams updates in place on ONE condensed buffer of
the input's dtype (float32 input: n(n-1)/2 float32 values, a quarter of scipy's peak memory).

Precision: float64 input matches scipy to rounding. float32 input is clustered in float32, as
given: distances carry a relative error of a few 1e-7 (absolute for cosine distances near 0), so
merges whose heights differ by less than that may come in another order than scipy's float64
computation. Convert to float64 first when that matters.

Ties: the nearest-neighbour chain breaks ties exactly as scipy does, so a condensed input gives
scipy's hierarchy even with tied distances. From raw vectors the distances come from
:func:`cascal.kernels.pdist` (blocked GEMM), which can differ from scipy's ``pdist`` in the last
bit; exactly tied distances may then break differently and give another, equally valid,
hierarchy. Pass ``scipy.spatial.distance.pdist(X)`` when bit-exact agreement on tied data matters.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from cascal import _core
from cascal.errors import KernelError

__all__ = ["linkage", "fcluster", "LINKAGE_METHODS"]

#: Methods :func:`linkage` implements (``centroid`` and ``median`` are refused: use scipy).
LINKAGE_METHODS = ("single", "complete", "average", "weighted", "ward")
_METRICS = ("cosine", "euclidean", "sqeuclidean")


def _as_float_array(data: npt.ArrayLike, name: str) -> np.ndarray:
    """``data`` as a C-contiguous float32/float64 array, copying only when needed.

    Integer and boolean input is converted to float64; anything else non-float is refused.
    """
    arr = np.asarray(data)
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iub":
        return np.ascontiguousarray(arr, dtype=np.float64)
    raise KernelError(f"{name}: expected a float32, float64, integer or boolean array, got dtype {arr.dtype}", arg=name)


def linkage(
    data: npt.ArrayLike,
    method: str = "average",
    metric: str = "cosine",
) -> np.ndarray:
    """Agglomerative clustering of ``data``; scipy's ``(n-1) x 4`` float64 linkage matrix.

    Args:
        data: either observation vectors, 2-D ``(n, d)``; or a condensed distance vector, 1-D of
            length ``n (n - 1) / 2`` as returned by ``scipy.spatial.distance.pdist`` (finite and
            non-negative). Needs n >= 2. float32/float64 are used without copying when
            C-contiguous; integer and boolean input is converted to float64.
        method: ``"single"``, ``"complete"``, ``"average"``, ``"weighted"`` or ``"ward"``.
            ``"centroid"`` and ``"median"`` raise :class:`~cascal.errors.KernelError` (not implemented; use scipy).
        metric: for 2-D input, ``"cosine"`` (default; zero vectors are refused),
            ``"euclidean"`` or ``"sqeuclidean"``. ``"ward"`` requires ``"euclidean"``. Ignored
            for condensed input (ward then assumes euclidean distances, as scipy does).

    Returns:
        ``Z`` with rows ``[id_a, id_b, height, size]`` sorted by height: observations are ids
        ``0..n-1``, the cluster formed at row ``k`` is ``n + k``, ``id_a < id_b``.

    Raises:
        KernelError: (a ``ValueError``) bad shape, length, dtype, NaN/inf, negative distance, unknown method/metric.
    """
    if method not in LINKAGE_METHODS:
        if method in ("centroid", "median"):
            raise KernelError(
                f"method: {method!r} is not implemented; use scipy.cluster.hierarchy.linkage", arg="method"
            )
        raise KernelError(
            f"method: unknown method {method!r}; expected one of {', '.join(LINKAGE_METHODS)}", arg="method"
        )
    ndim = np.ndim(data)
    if ndim not in (1, 2):
        raise KernelError(
            f"data: expected 2-D observation vectors or a 1-D condensed distance vector, got a {ndim}-D array of shape {np.shape(data)}",
            arg="data",
        )
    arr = _as_float_array(data, "data")
    if arr.ndim == 1:
        return _core.linkage_condensed(arr, method)
    if metric not in _METRICS:
        raise KernelError(f"metric: unknown metric {metric!r}; expected one of {', '.join(_METRICS)}", arg="metric")
    if arr.shape[0] < 2:
        raise KernelError(f"data: at least 2 observations are needed, got {arr.shape[0]}", arg="data")
    return _core.linkage_vectors(arr, method, metric)


def fcluster(
    Z: npt.ArrayLike,
    t: float,
    criterion: Literal["distance", "maxclust"] = "distance",
) -> np.ndarray:
    """Flat clusters of the linkage matrix ``Z``: int32 labels ``1..k``, one per observation.

    Args:
        Z: ``(n-1) x 4`` linkage matrix (validated: finite, integral ids in range, each cluster
            merged once and only after it is formed, heights >= 0, sizes consistent).
        t: for ``"distance"``, the threshold: observations in one flat cluster have cophenetic
            distance <= ``t``. For ``"maxclust"``, the largest number of clusters (integer >= 1):
            the tree is cut at the smallest cophenetic height giving at most ``t`` clusters
            (tied heights can force fewer); ``t >= n`` gives singletons labelled 1..n.
        criterion: ``"distance"`` or ``"maxclust"``.

    Returns:
        Labels numbered in scipy's order, so they equal ``scipy.cluster.hierarchy.fcluster``'s
        for the same ``Z``. Note scipy's own default criterion is ``"inconsistent"``, which is
        not implemented here; the default here is ``"distance"``.
    """
    z = np.asarray(Z)
    if z.ndim != 2 or z.shape[1] != 4 or z.shape[0] < 1:
        raise KernelError(f"Z: expected an (n-1) x 4 linkage matrix with n >= 2, got shape {z.shape}", arg="Z")
    if z.dtype.kind not in "fiu":
        raise KernelError(f"Z: expected a numeric array, got dtype {z.dtype}", arg="Z")
    z = np.ascontiguousarray(z, dtype=np.float64)
    if criterion == "distance":
        threshold = float(t)
        if np.isnan(threshold):
            raise KernelError("t: threshold is NaN", arg="t")
        return _core.fcluster_distance(z, threshold)
    if criterion == "maxclust":
        if isinstance(t, (bool, np.bool_)) or float(t) != int(t) or int(t) < 1:
            raise KernelError(f"t: maxclust needs an integer number of clusters >= 1, got {t!r}", arg="t")
        return _core.fcluster_maxclust(z, int(t))
    raise KernelError(f"criterion: expected 'distance' or 'maxclust', got {criterion!r}", arg="criterion")
