"""Calibration kernel: likelihood of labels under a temperature softmax over distances (Rust).

:meth:`cascal.router.CascalRouter.fit` calibrates its soft subject assignment with it
(docs/algorithm.md#subject-assignment): the temperature ``T`` minimises the mean of
``-log softmax(-dist_i / T)[label_i]`` over the training questions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cascal import _core
from cascal.errors import KernelError

__all__ = ["softmax_nll"]


def softmax_nll(dist: npt.ArrayLike, labels: npt.ArrayLike, temp: float) -> float:
    """Mean over rows of ``-log softmax(-dist[i] / temp)[labels[i]]``.

    Args:
        dist: ``(n, S)`` finite distances (converted to C-contiguous float64; no copy when it is).
        labels: ``(n,)`` integer labels in ``0..S-1``.
        temp: finite temperature ``> 0``.

    Terms more than ``40 * temp`` above a row's smallest distance are skipped (each is below
    ``e^-40`` of the nearest one; the Rust module ``calibration`` bounds the effect), so small
    temperatures cost little.

    Raises:
        KernelError: (a ``ValueError``) bad shapes, a non-finite distance, a label out of range,
            or a bad temperature; the message names the argument.
    """
    d = np.asarray(dist)
    if d.ndim != 2:
        raise KernelError(f"dist: expected a 2-D (n, S) array, got shape {d.shape}", arg="dist")
    if d.dtype.kind not in "fiu":
        raise KernelError(f"dist: expected a numeric array, got dtype {d.dtype}", arg="dist")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.dtype.kind not in "iu":
        raise KernelError(
            f"labels: expected a 1-D integer array, got dtype {lab.dtype} and shape {lab.shape}", arg="labels"
        )
    if lab.shape[0] != d.shape[0]:
        raise KernelError(
            f"labels: expected one label per row of dist ({d.shape[0]}), got {lab.shape[0]}", arg="labels"
        )
    return float(
        _core.softmax_nll(
            np.ascontiguousarray(d, dtype=np.float64), np.ascontiguousarray(lab, dtype=np.int64), float(temp)
        )
    )
