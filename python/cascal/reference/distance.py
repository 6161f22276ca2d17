"""numpy/scipy references of the distance kernels: :func:`pairwise_distances` and :func:`pdist`.

Computed in float64 with ``scipy.spatial.distance`` and cast to the kernel's output dtype, with the
kernel's documented conventions applied on top: cosine clipped to ``[0, 2]``; zero vectors at cosine
distance 0 from each other and 1 from everything else; exact zero diagonal for one set.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import numpy.typing as npt
from scipy.spatial import distance as sd

__all__ = ["pairwise_distances", "pdist"]


def _out_dtype(*arrays: np.ndarray) -> np.dtype:
    return np.dtype(np.float32) if all(a.dtype == np.float32 for a in arrays) else np.dtype(np.float64)


def _unit_scale(x64: np.ndarray) -> np.ndarray:
    """Rows divided by their largest magnitude: cosine is scale-free, and this keeps scipy's
    norms from underflowing (subnormal rows) or overflowing (rows near the float64 limit)."""
    m = np.abs(x64).max(axis=1, keepdims=True) if x64.shape[1] else np.zeros((x64.shape[0], 1))
    return x64 / np.where(m > 0, m, 1.0)


def _zero_rows(x64: np.ndarray) -> np.ndarray:
    """Boolean mask of the all-zero rows."""
    return np.asarray(~x64.any(axis=1), dtype=bool)


def _fix_cosine(D: np.ndarray, zx: np.ndarray, zy: np.ndarray) -> np.ndarray:
    D = np.clip(D, 0.0, 2.0)
    D[zx, :] = 1.0
    D[:, zy] = 1.0
    D[np.ix_(zx, zy)] = 0.0
    return D


def pairwise_distances(X: npt.ArrayLike, Y: Optional[npt.ArrayLike] = None, metric: str = "cosine") -> np.ndarray:
    """``scipy.spatial.distance.cdist`` with the kernel's conventions (see module docstring)."""
    x = np.asarray(X)
    y = x if Y is None else np.asarray(Y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    if metric == "cosine":
        zx, zy = _zero_rows(x64), _zero_rows(y64)
        with np.errstate(invalid="ignore", divide="ignore"):
            D = sd.cdist(_unit_scale(x64), _unit_scale(y64), "cosine")
        D = _fix_cosine(D, zx, zy)
    else:
        D = sd.cdist(x64, y64, metric)
    if Y is None:
        np.fill_diagonal(D, 0.0)
    return D.astype(_out_dtype(x, y))


def pdist(X: npt.ArrayLike, metric: str = "cosine") -> np.ndarray:
    """``scipy.spatial.distance.pdist`` with the kernel's conventions (see module docstring)."""
    x = np.asarray(X)
    x64 = x.astype(np.float64)
    if metric == "cosine":
        z = _zero_rows(x64)
        with np.errstate(invalid="ignore", divide="ignore"):
            D = sd.pdist(_unit_scale(x64), "cosine")
        n = x.shape[0]
        i, j = np.triu_indices(n, k=1)
        D = np.clip(D, 0.0, 2.0)
        D[z[i] ^ z[j]] = 1.0
        D[z[i] & z[j]] = 0.0
    else:
        D = sd.pdist(x64, metric)
    return D.astype(_out_dtype(x))
