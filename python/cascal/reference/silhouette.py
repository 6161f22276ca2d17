"""numpy/scipy references of :mod:`cascal.kernels.silhouette`: scipy's hierarchy and ``fcluster``
for the cuts, one numpy matrix product for the silhouettes; same signatures and results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

__all__ = ["best_silhouette_cut", "weighted_silhouettes"]


def weighted_silhouettes(
    distances: npt.ArrayLike,
    partitions: Sequence[npt.ArrayLike],
    weights: npt.ArrayLike,
    anchors: npt.ArrayLike | None = None,
) -> list[float]:
    """Weighted silhouettes of several partitions (see the kernel), from the anchors' rows."""
    D = np.asarray(distances, dtype=np.float64)
    n = D.shape[0]
    w = np.asarray(weights, dtype=np.float64)
    anchors = np.arange(n) if anchors is None else np.asarray(anchors, dtype=np.int64)
    rows = np.arange(anchors.size)
    parts = [np.asarray(p, dtype=np.int64) for p in partitions]
    sizes = [int(labels.max()) + 1 for labels in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    onehot = np.zeros((n, int(offsets[-1])))
    for labels, off in zip(parts, offsets):
        onehot[np.arange(n), labels + off] = w
    all_sums = D[anchors] @ onehot  # weighted distance sums from every anchor to every group
    all_weights = onehot.sum(axis=0)
    w_anchor = w[anchors]
    out = []
    for labels, off, k in zip(parts, offsets, sizes):
        own = labels[anchors]
        sums = all_sums[:, off : off + k]
        group_weight = all_weights[off : off + k]
        own_weight = group_weight[own] - w_anchor
        a = np.divide(sums[rows, own], own_weight, out=np.zeros(rows.size), where=own_weight > 0)
        mean_to = sums / np.where(group_weight > 0, group_weight, np.inf)
        mean_to[rows, own] = np.inf
        b = mean_to.min(axis=1)
        denom = np.maximum(a, b)
        s = np.divide(b - a, denom, out=np.zeros(rows.size), where=(denom > 0) & np.isfinite(denom) & (own_weight > 0))
        out.append(float(np.sum(w_anchor * s) / np.sum(w_anchor)))
    return out


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered ``0..k-1`` in order of first appearance."""
    values, first = np.unique(labels, return_index=True)
    rank = np.empty(values.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(values.size)
    return rank[np.searchsorted(values, labels)]


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
    """The kernel's cut choice with scipy's linkage (float64) and the numpy silhouettes above."""
    D = np.asarray(distances)
    n = D.shape[0]
    one_group = np.zeros(n, dtype=np.int64)
    max_k = min(max_k, n // max(min_cluster_size, 1))
    if max_k < 2:
        return one_group
    condensed = np.maximum(squareform(D, force="tovector", checks=False), 0.0)
    if method == "ward":
        condensed = np.sqrt(2.0 * condensed)
    Z = hierarchy.linkage(condensed.astype(np.float64), method=method)
    cuts = [_first_appearance(hierarchy.fcluster(Z, k, criterion="maxclust")) for k in range(2, max_k + 1)]
    admissible = [labels for labels in cuts if labels.max() >= 1 and np.bincount(labels).min() >= min_cluster_size]
    if not admissible:
        return one_group
    scores = weighted_silhouettes(D, admissible, weights, anchors)
    best = int(np.argmax(scores))  # ties -> the smaller k
    return admissible[best] if scores[best] >= min_silhouette else one_group
