"""numpy/scipy references of the distance kernels: :func:`pairwise_distances` and :func:`pdist`.

Computed in float64 with ``scipy.spatial.distance`` and cast to the kernel's output dtype, with the
kernel's documented conventions applied on top: cosine clipped to ``[0, 2]``; zero vectors at cosine
distance 0 from each other and 1 from everything else; exact zero diagonal for one set.

Euclidean and squared euclidean distances are computed pair by pair from the scaled difference
``m * ||diff / m||`` (``m`` = the pair's largest coordinate difference), not with scipy: scipy squares
raw differences, which underflows to 0 below ~1e-154 and overflows above ~1e154, so it is no truth for
the huge and tiny magnitudes the tests use. On ordinary inputs the two agree to rounding (tested).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import numpy.typing as npt
from scipy.spatial import distance as sd

from cascal.errors import KernelError

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


_PAIR_BLOCK_ELEMENTS = 1 << 22  # float64 elements of one block of pair differences (32 MiB)


def _euclidean_rows(a: np.ndarray, b: np.ndarray, squared: bool) -> np.ndarray:
    """Distances between ``a[i]`` and ``b[j]`` for every pair, ``(len(a), len(b))``, free of the
    underflow and overflow of squaring raw differences."""
    out = np.empty((a.shape[0], b.shape[0]))
    if out.size == 0:
        return out
    rows = max(1, _PAIR_BLOCK_ELEMENTS // max(1, b.shape[0] * max(1, a.shape[1])))
    half_b = b * 0.5
    for start in range(0, a.shape[0], rows):
        diff = a[start : start + rows, None, :] * 0.5 - half_b[None, :, :]  # halved: no overflow
        m = np.abs(diff).max(axis=2) if a.shape[1] else np.zeros(diff.shape[:2])
        safe = np.where(m > 0, m, 1.0)
        norm = np.sqrt(((diff / safe[:, :, None]) ** 2).sum(axis=2))
        with np.errstate(over="ignore"):
            dist = 2.0 * m * norm
            out[start : start + rows] = dist * dist if squared else dist
    return out


def _euclidean(x64: np.ndarray, y64: np.ndarray, metric: str) -> np.ndarray:
    if metric not in ("euclidean", "sqeuclidean"):
        raise KernelError(f"metric: expected 'cosine', 'euclidean' or 'sqeuclidean', got {metric!r}", arg="metric")
    return _euclidean_rows(x64, y64, squared=(metric == "sqeuclidean"))


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
        D = _euclidean(x64, y64, metric)
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
        n = x.shape[0]
        i, j = np.triu_indices(n, k=1)
        D = _euclidean(x64, x64, metric)[i, j] if n > 1 else np.empty(0)
    return D.astype(_out_dtype(x))
