"""Type stubs of the Rust extension module ``cascal._core``.

Call these through :mod:`cascal.kernels`, which validates and converts input first.
"""

from typing import Optional

import numpy as np
import numpy.typing as npt

from cascal.kernels.consensus import ConsensusParams
from cascal.kernels.routing import RouteParams, RoutingTables

__version__: str
__all__ = [
    "__version__",
    "num_threads",
    "pdist",
    "pdist_square",
    "cdist",
    "linkage_condensed",
    "linkage_vectors",
    "fcluster_distance",
    "fcluster_maxclust",
    "consensus_scores",
    "consensus_stats",
    "cluster_means",
    "nearest_centroids",
    "route_batch",
    "softmax_nll",
    "best_silhouette_cut",
    "weighted_silhouettes",
]

def num_threads() -> int: ...

# ---- distance (owner: distance kernels) ----

def pdist(X: npt.NDArray[np.floating], metric: str) -> npt.NDArray[np.floating]:
    """Condensed distances of the rows of C-contiguous float32/float64 ``X`` (scipy order)."""

def pdist_square(X: npt.NDArray[np.floating], metric: str) -> npt.NDArray[np.floating]:
    """Full symmetric ``(n, n)`` distance matrix of the rows of ``X`` (zero diagonal)."""

def cdist(X: npt.NDArray[np.floating], Y: npt.NDArray[np.floating], metric: str) -> npt.NDArray[np.floating]:
    """``(n, m)`` distances between rows of ``X`` and ``Y`` (same dtype, C-contiguous)."""

# ---- end distance ----

# ---- niche (owner: distance kernels) ----

def cluster_means(
    labels: npt.NDArray[np.int64],
    values: npt.NDArray[np.floating],
    n_clusters: int,
    weights: Optional[npt.NDArray[np.float64]] = None,
) -> npt.NDArray[np.floating]:
    """NaN-aware weighted ``(n_clusters, n_m)`` means of ``values`` grouped by ``labels``."""

def nearest_centroids(
    X: npt.NDArray[np.floating], C: npt.NDArray[np.floating], k: int, metric: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """``(indices, distances)`` of the ``k`` nearest rows of ``C`` per row of ``X``, ascending."""

# ---- end niche ----

# ---- linkage (owner: linkage kernels) ----

def linkage_condensed(dist: npt.NDArray[np.floating], method: str) -> npt.NDArray[np.float64]:
    """(n-1)x4 linkage matrix of a 1-D float32/float64 condensed distance vector (not modified)."""
    ...

def linkage_vectors(data: npt.NDArray[np.floating], method: str, metric: str) -> npt.NDArray[np.float64]:
    """(n-1)x4 linkage matrix of the rows of a C-contiguous 2-D float32/float64 array."""
    ...

def fcluster_distance(z: npt.NDArray[np.float64], t: float) -> npt.NDArray[np.int32]:
    """Flat labels (from 1) keeping cophenetic distances <= t together."""
    ...

def fcluster_maxclust(z: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int32]:
    """At most k flat clusters (labels from 1)."""
    ...

# ---- end linkage ----

# ---- consensus (owner: consensus/routing kernels) ----

def consensus_scores(
    answers: npt.NDArray[np.int8],
    n_options: npt.NDArray[np.int8],
    logprobs: Optional[npt.NDArray[np.floating]],
    params: ConsensusParams,
    mu: Optional[npt.NDArray[np.float64]],
    sigma: Optional[npt.NDArray[np.float64]],
) -> tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.bool_],
    npt.NDArray[np.float64],
    npt.NDArray[np.int8],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]:
    """(scores, plurality, agreement, majority, mu, sigma); C-contiguous input only; mu and sigma
    both given or both None."""

def consensus_stats(
    logprobs: npt.NDArray[np.floating],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-model (median, 1.4826*MAD) of the non-NaN logprobs."""

# ---- end consensus ----

# ---- routing (owner: consensus/routing kernels) ----

def route_batch(
    x: npt.NDArray[np.floating],
    tables: RoutingTables,
    params: RouteParams,
    subject_weights: bool = False,
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    Optional[npt.NDArray[np.float64]],
    Optional[npt.NDArray[np.float64]],
]:
    """(probs, ranked, subject, nearest_distance, alpha, expected_cost, subject_weights);
    ``tables.subject_reps`` and ``tables.centroids`` have x's dtype (any objects with the attributes
    of the two classes work); ``expected_cost`` ``(n, M)`` is ``None`` unless the tables carry
    ``centroid_costs`` and ``global_costs``; ``subject_weights`` ``(n, S)`` is ``None`` unless asked
    for."""

# ---- end routing ----

# ---- calibration (owner: perf) ----

def softmax_nll(dist: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], temp: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(-dist / temp)`` per row."""

# ---- end calibration ----

# ---- silhouette (per-set cut choice) ----

def best_silhouette_cut(
    distances: npt.NDArray[np.floating],
    weights: npt.NDArray[np.float64],
    anchors: npt.NDArray[np.int64],
    method: str,
    max_k: int,
    min_cluster_size: int,
    min_silhouette: float,
) -> npt.NDArray[np.int64]:
    """Labels of the best flat cut of one set by weighted silhouette (C-contiguous square float32/
    float64 ``distances``); see :func:`cascal.kernels.best_silhouette_cut`."""

def weighted_silhouettes(
    distances: npt.NDArray[np.floating],
    partitions: list[npt.NDArray[np.int64]],
    weights: npt.NDArray[np.float64],
    anchors: npt.NDArray[np.int64],
) -> list[float]:
    """Weighted silhouette of each partition, averaged over ``anchors``."""

# ---- end silhouette ----
