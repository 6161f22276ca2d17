"""The two heavy computations the baselines share: cosine nearest neighbours and consensus scores.

Both go through the Rust kernels of :mod:`cascal.kernels` when those are available and fall back to
plain numpy otherwise, so the baselines keep working while kernels are being added.
"""

from __future__ import annotations

import warnings

import numpy as np

from cascal.baselines._inputs import normalize_rows
from cascal.data import NO_ANSWER, NOT_ASKED, ResponseMatrix

_CHUNK = 2048


def cosine_neighbors(queries: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(n_queries, k)`` of the ``k`` rows of ``base`` with the highest cosine similarity
    to each query, most similar first (ties -> lower index)."""
    if not 1 <= k <= base.shape[0]:
        raise ValueError(f"k: must be between 1 and the {base.shape[0]} reference rows, got {k}")
    kernel = _kernel("nearest_centroids")
    if kernel is not None:
        indices, _ = kernel(
            np.ascontiguousarray(normalize_rows(queries)), np.ascontiguousarray(normalize_rows(base)), k, "cosine"
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
    """DESIGN §3A consensus score of every model on every question, with the default parameters
    (``z_scale`` 1, ``clamp`` (0.01, 0.99), ``tau`` 1): ``(n_q, n_m)`` float64, NaN where not asked."""
    kernel = _kernel("consensus_scores")
    if kernel is not None:
        result = kernel(responses.answers, responses.n_options, responses.logprobs)
        return np.asarray(result.scores, dtype=np.float64)
    return _consensus_scores_numpy(responses.answers, responses.n_options, responses.logprobs)


def _consensus_scores_numpy(answers: np.ndarray, n_options: np.ndarray, logprobs: np.ndarray | None) -> np.ndarray:
    n_q, n_m = answers.shape
    if logprobs is None:
        z = np.zeros((n_q, n_m))
    else:
        lp = logprobs.astype(np.float64)
        with warnings.catch_warnings():  # all-NaN columns (no logprobs for a model) are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            mu = np.nanmedian(lp, axis=0)
            sigma = 1.4826 * np.nanmedian(np.abs(lp - mu), axis=0)
            fallback = np.nanstd(lp, axis=0)
        sigma = np.where((sigma > 0) & np.isfinite(sigma), sigma, np.where((fallback > 0) & np.isfinite(fallback), fallback, 1.0))
        mu = np.where(np.isfinite(mu), mu, 0.0)
        z = np.where(np.isnan(lp), 0.0, (lp - mu) / sigma)
    weight = np.clip(1.0 / (1.0 + np.exp(-z)), 0.01, 0.99)
    answered = answers >= 0
    n_classes = int(n_options.max()) if n_q else 0
    votes = np.zeros((n_q, n_classes))
    rows = np.repeat(np.arange(n_q), n_m).reshape(n_q, n_m)
    np.add.at(votes, (rows[answered], answers[answered].astype(np.int64)), weight[answered])
    valid_class = np.arange(n_classes)[None, :] < n_options[:, None]
    logits = np.where(valid_class, votes, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    posterior = np.exp(logits)
    posterior /= posterior.sum(axis=1, keepdims=True)
    safe = np.where(answered, answers, 0).astype(np.int64)
    scores = np.take_along_axis(posterior, safe, axis=1)
    scores[answers == NO_ANSWER] = 0.0
    scores[answers == NOT_ASKED] = np.nan
    return scores


def _kernel(name: str):  # noqa: ANN202 - returns a kernel function or None
    import cascal.kernels

    return getattr(cascal.kernels, name, None)
