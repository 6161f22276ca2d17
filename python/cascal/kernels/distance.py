"""Pairwise distances between row vectors (Rust kernels, docs/architecture.md#kernels-and-references).

Metrics (scipy's names): ``"cosine"``, ``"euclidean"``, ``"sqeuclidean"``.

Input: 2-D arrays of float32 or float64 are used as they are when C-contiguous (no copy);
non-contiguous or Fortran-ordered arrays are copied once to C order. Integer and bool arrays are
converted to float64. Other dtypes (float16, longdouble, complex, object) raise
:class:`~cascal.errors.KernelError`. The result has the input's float dtype (float64 if the two
inputs differ).

Semantics, beyond scipy's:

* NaN or infinity anywhere raises :class:`~cascal.errors.KernelError` naming the argument and the row.
* Arrays need at least one column; zero rows give an empty result of the right shape.
* Cosine distance is clipped to ``[0, 2]``. A zero vector has no direction: its cosine distance is
  defined as 0 to another zero vector and 1 to any non-zero vector (scipy returns NaN there).
* :func:`pairwise_distances` of one set is exactly symmetric with an exact zero diagonal.

Accuracy against ``scipy.spatial.distance`` (computed in float64): ``|got - want| <= rtol·|want| +
atol`` with rtol = 1e-10 for float64 and 1e-5 for float32 input. The absolute floor atol is, for
cosine, 1e-12 (float64) / 1e-6 (float32): near 0, ``1 - cos`` has no relative accuracy, not even in
scipy. For the euclidean metrics atol is only the smallest normal number of the dtype (subnormal
results, where scipy itself underflows): the relative bound holds down to exact duplicates, also
under huge common offsets, because rows are centred and pairs that the GEMM formula
``|a|² + |b|² - 2a·b`` cannot resolve are recomputed directly (see ``cascal_core::distance``).
Inputs are rescaled by powers of two internally, so huge (1e150 in float64, 1e18 in float32) and
tiny magnitudes neither overflow nor underflow; a result too large for float32 is ``inf``.

Work is split in row blocks over all cores with a blocked GEMM; no ``n × n`` temporary is built
besides the output itself, and the GIL is released while the kernel runs.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import numpy.typing as npt

from cascal import _core
from cascal.errors import KernelError

__all__ = ["DISTANCE_METRICS", "pairwise_distances", "pdist"]

DISTANCE_METRICS = ("cosine", "euclidean", "sqeuclidean")


def check_metric(metric: object) -> str:
    """Return ``metric`` if it is one of :data:`DISTANCE_METRICS`, else raise :class:`~cascal.errors.KernelError`."""
    if not isinstance(metric, str) or metric not in DISTANCE_METRICS:
        raise KernelError(
            f"metric: expected one of {', '.join(map(repr, DISTANCE_METRICS))}, got {metric!r}", arg="metric"
        )
    return metric


def float_dtype(arr: np.ndarray, name: str) -> np.dtype:
    """The kernel dtype for ``arr``: its own for float32/float64, float64 for integers and bool."""
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "f" and size in (4, 8):
        return np.dtype(np.float32 if size == 4 else np.float64)
    if kind in "biu":
        return np.dtype(np.float64)
    raise KernelError(f"{name}: unsupported dtype {arr.dtype}; expected float32, float64, integer or bool", arg=name)


def as_matrix(X: npt.ArrayLike, name: str, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """``X`` as a C-contiguous 2-D float32/float64 array, copied only when it must be."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise KernelError(f"{name}: expected a 2-D array, got {arr.ndim}-D with shape {arr.shape}", arg=name)
    target = float_dtype(arr, name) if dtype is None else dtype
    return np.ascontiguousarray(arr, dtype=target)


def common_dtype(*dtypes: np.dtype) -> np.dtype:
    """float32 when every kernel dtype is float32, else float64."""
    return np.dtype(np.float32) if all(dt == np.float32 for dt in dtypes) else np.dtype(np.float64)


def as_matrix_pair(X: npt.ArrayLike, Y: npt.ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two inputs as C-contiguous matrices of one common float dtype with equal column counts."""
    x_arr, y_arr = np.asarray(X), np.asarray(Y)
    for arr, name in ((x_arr, names[0]), (y_arr, names[1])):
        if arr.ndim != 2:
            raise KernelError(f"{name}: expected a 2-D array, got {arr.ndim}-D with shape {arr.shape}", arg=name)
    dtype = common_dtype(float_dtype(x_arr, names[0]), float_dtype(y_arr, names[1]))
    if x_arr.shape[1] != y_arr.shape[1]:
        raise KernelError(f"{names[1]}: has {y_arr.shape[1]} columns but {names[0]} has {x_arr.shape[1]}", arg=names[1])
    return as_matrix(x_arr, names[0], dtype), as_matrix(y_arr, names[1], dtype)


def pairwise_distances(X: npt.ArrayLike, Y: Optional[npt.ArrayLike] = None, metric: str = "cosine") -> np.ndarray:
    """Full distance matrix between the rows of ``X`` and the rows of ``Y`` (``X`` itself if None).

    Args:
        X: ``(n, d)`` array.
        Y: ``(m, d)`` array, or ``None`` for the distances among the rows of ``X``.
        metric: ``"cosine"``, ``"euclidean"`` or ``"sqeuclidean"``.

    Returns:
        ``(n, m)`` (or ``(n, n)``) array of the inputs' float dtype; equals
        ``scipy.spatial.distance.cdist(X, Y, metric)`` within the module's tolerances.

    Raises:
        KernelError: (a ``ValueError``) bad metric, shapes, dtype, NaN/inf, or no columns; the
            message names the argument.
    """
    metric = check_metric(metric)
    if Y is None:
        return _core.pdist_square(as_matrix(X, "X"), metric)
    x, y = as_matrix_pair(X, Y, ("X", "Y"))
    return _core.cdist(x, y, metric)


def pdist(X: npt.ArrayLike, metric: str = "cosine") -> np.ndarray:
    """Condensed distances among the rows of ``X``, in ``scipy.spatial.distance.pdist`` order.

    Entry ``k`` of the result is the distance of the ``k``-th pair ``(i, j)``, ``i < j``, in
    row-major order; the length is ``n(n-1)/2`` (empty for ``n <= 1``). The vector is written
    directly, block by block: no ``n × n`` matrix is ever built.

    Args:
        X: ``(n, d)`` array.
        metric: ``"cosine"``, ``"euclidean"`` or ``"sqeuclidean"``.

    Raises:
        KernelError: (a ``ValueError``) bad metric, shape, dtype, NaN/inf, or no columns; the
            message names the argument.
    """
    return _core.pdist(as_matrix(X, "X"), check_metric(metric))
