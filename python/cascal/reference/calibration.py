"""numpy reference of the calibration kernel (:func:`cascal.kernels.softmax_nll`)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["softmax_nll"]


def softmax_nll(dist: npt.ArrayLike, labels: npt.ArrayLike, temp: float) -> float:
    """Mean of ``-log softmax(-dist[i] / temp)[labels[i]]``, dense float64 (every term evaluated)."""
    d = np.asarray(dist, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.int64)
    gap = d - d.min(axis=1, keepdims=True)
    own = gap[np.arange(d.shape[0]), lab]
    return float(np.mean(own / temp + np.log(np.exp(-gap / temp).sum(axis=1))))
