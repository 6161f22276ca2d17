"""scipy reference of the linkage kernels: ``pdist`` + ``scipy.cluster.hierarchy.linkage`` and
``fcluster``, with the same signatures as :mod:`cascal.kernels.linkage`."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist

__all__ = ["linkage", "fcluster"]


def linkage(data: npt.ArrayLike, method: str = "average", metric: str = "cosine") -> np.ndarray:
    """scipy's linkage of 2-D vectors (through ``pdist(data, metric)``) or of a condensed vector."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        return hierarchy.linkage(pdist(arr, metric), method=method)
    return hierarchy.linkage(arr, method=method)


def fcluster(Z: npt.ArrayLike, t: float, criterion: str = "distance") -> np.ndarray:
    """scipy's ``fcluster`` (criteria ``distance`` and ``maxclust``)."""
    return hierarchy.fcluster(np.asarray(Z, dtype=np.float64), t, criterion=criterion)
