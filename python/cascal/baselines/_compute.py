"""The two heavy computations the baselines share: cosine nearest neighbours and consensus scores,
both through the Rust kernels of :mod:`cascal.kernels` (nearest neighbours fall back to numpy while
the ``nearest_centroids`` kernel is not built)."""

from __future__ import annotations

import numpy as np

from cascal.baselines._inputs import normalize_rows
from cascal.data import ResponseMatrix

_CHUNK = 2048


def cosine_neighbors(queries: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(n_queries, k)`` of the ``k`` rows of ``base`` with the highest cosine similarity
    to each query, most similar first (ties -> lower index)."""
    if not 1 <= k <= base.shape[0]:
        raise ValueError(f"k: must be between 1 and the {base.shape[0]} reference rows, got {k}")
    kernel = _kernel("nearest_centroids")
    if kernel is not None:
        indices, _ = kernel(
            normalize_rows(queries).astype(np.float32), normalize_rows(base).astype(np.float32), k, "cosine"
        )
        return np.asarray(indices, dtype=np.int64)
    q = normalize_rows(queries).astype(np.float32)
    b = normalize_rows(base).astype(np.float32)
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], _CHUNK):
        sims = q[start : start + _CHUNK] @ b.T
        out[start : start + _CHUNK] = _top_k_columns(sims, k)
    return out


def _top_k_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values per row, largest first, ties -> lower index."""
    n_rows, n_cols = values.shape
    if k >= n_cols:
        return np.argsort(-values, axis=1, kind="stable")[:, :k]
    part = np.argpartition(values, n_cols - k, axis=1)[:, n_cols - k :]
    # order the k candidates by (value descending, index ascending)
    cand_values = np.take_along_axis(values, part, axis=1)
    order = _lexsort_rows(part, cand_values)
    out = np.take_along_axis(part, order, axis=1)
    # a row where more than k columns reach the k-th value needs the exact tie rule: redo it fully
    kth = np.take_along_axis(values, out[:, -1:], axis=1)
    crowded = np.flatnonzero((values >= kth).sum(axis=1) > k)
    if crowded.size:
        out[crowded] = np.argsort(-values[crowded], axis=1, kind="stable")[:, :k]
    return out


def _lexsort_rows(index: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per row, the order sorting by ``value`` descending then ``index`` ascending."""
    by_index = np.argsort(index, axis=1, kind="stable")
    by_value = np.argsort(-np.take_along_axis(value, by_index, axis=1), axis=1, kind="stable")
    return np.take_along_axis(by_index, by_value, axis=1)


def consensus_scores(responses: ResponseMatrix) -> np.ndarray:
    """DESIGN §3A consensus score of every model on every question with the default parameters
    (Rust kernel :func:`cascal.kernels.consensus_scores`): ``(n_q, n_m)`` float64, NaN where not asked."""
    from cascal.kernels import consensus_scores as kernel

    return np.asarray(kernel(responses.answers, responses.n_options, responses.logprobs).scores, dtype=np.float64)


def _kernel(name: str):  # noqa: ANN202 - returns a kernel function or None
    import cascal.kernels

    return getattr(cascal.kernels, name, None)
