"""The two heavy computations the baselines share, both Rust kernels of :mod:`cascal.kernels`:
cosine nearest neighbours and consensus scores."""

from __future__ import annotations

import numpy as np

from cascal.data import ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.kernels import consensus_scores as consensus_kernel
from cascal.kernels import nearest_centroids
from cascal.vectors import unit_rows


def cosine_neighbors(queries: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(n_queries, k)`` of the ``k`` rows of ``base`` with the highest cosine similarity
    to each query, most similar first, ties -> lower index (Rust kernel
    :func:`cascal.kernels.nearest_centroids` on the L2-normalised float32 rows)."""
    if not 1 <= k <= base.shape[0]:
        raise InvalidParameterError(f"k: must be between 1 and the {base.shape[0]} reference rows, got {k}")
    indices, _ = nearest_centroids(
        unit_rows(queries).astype(np.float32), unit_rows(base).astype(np.float32), k, "cosine"
    )
    return np.asarray(indices, dtype=np.int64)


def consensus_scores(responses: ResponseMatrix) -> np.ndarray:
    """consensus score (docs/algorithm.md#consensus-scores) of every model on every question with the default parameters
    (Rust kernel :func:`cascal.kernels.consensus_scores`): ``(n_q, n_m)`` float64, NaN where not asked."""
    return np.asarray(
        consensus_kernel(responses.answers, responses.n_options, responses.logprobs).scores, dtype=np.float64
    )
