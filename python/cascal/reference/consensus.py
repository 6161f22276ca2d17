"""numpy reference of the consensus kernels (:mod:`cascal.kernels.consensus` documents the rules).

Two versions: :func:`consensus_scores` is vectorised numpy (the speed baseline of the benchmarks),
:func:`consensus_scores_loop` spells the rules out question by question in plain Python (the
"python loop" baseline and a second, independent check of the vectorised one).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from cascal.kernels.consensus import ConsensusParams, ConsensusResult

__all__ = ["consensus_scores", "consensus_scores_loop", "consensus_stats"]

MAD_TO_SIGMA = 1.4826


def _column_stats(values: np.ndarray) -> tuple[float, float]:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return 0.0, 1.0
    mu = float(np.median(finite))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(finite - mu)))
    if not (math.isfinite(sigma) and sigma > 0):
        sigma = float(np.std(finite))
        if not (math.isfinite(sigma) and sigma > 0):
            sigma = 1.0
    return mu, sigma


def consensus_stats(logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-model median and 1.4826·MAD of the non-NaN logprobs (std, then 1, as fallbacks)."""
    lp = np.asarray(logprobs, dtype=np.float64)
    pairs = [_column_stats(lp[:, m]) for m in range(lp.shape[1])]
    mu = np.array([p[0] for p in pairs], dtype=np.float64)
    sigma = np.array([p[1] for p in pairs], dtype=np.float64)
    return mu, sigma


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _weights(
    logprobs: Optional[np.ndarray],
    shape: tuple[int, int],
    mu: np.ndarray,
    sigma: np.ndarray,
    z_scale: float,
    clamp: tuple[float, float],
) -> np.ndarray:
    if logprobs is None:
        z = np.zeros(shape)
    else:
        lp = np.asarray(logprobs, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.where(np.isnan(lp), 0.0, (lp - mu) / sigma)
    with np.errstate(invalid="ignore"):
        x = z_scale * z
    x = np.where(np.isnan(x), 0.0, x)  # 0 * inf: a zero z_scale means uniform weights
    with np.errstate(over="ignore"):
        return np.clip(_sigmoid(x), clamp[0], clamp[1])


def consensus_scores(
    answers: np.ndarray,
    n_options: np.ndarray,
    logprobs: Optional[np.ndarray] = None,
    params: ConsensusParams = ConsensusParams(),
    *,
    stats: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> ConsensusResult:
    """Vectorised numpy version of :func:`cascal.kernels.consensus_scores` (no input validation)."""
    z_scale, tau, clamp = params.z_scale, params.tau, params.clamp
    a = np.asarray(answers).astype(np.int64)
    n_q, n_m = a.shape
    k = np.asarray(n_options).astype(np.int64)
    if stats is not None:
        mu, sigma = (np.asarray(s, dtype=np.float64) for s in stats)
    elif logprobs is not None:
        mu, sigma = consensus_stats(logprobs)
    else:
        mu, sigma = np.zeros(n_m), np.ones(n_m)
    w = _weights(logprobs, (n_q, n_m), mu, sigma, z_scale, clamp)

    classes = np.arange(20)
    chose = a[:, :, None] == classes[None, None, :]  # (n_q, n_m, 20); -1/-2 choose nothing
    votes = np.einsum("qm,qmc->qc", w, chose)
    counts = chose.sum(axis=1)
    valid_class = classes[None, :] < k[:, None]
    logits = np.where(valid_class, votes / tau, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    post = np.exp(logits)
    post /= post.sum(axis=1, keepdims=True)

    answered = a >= 0
    safe = np.where(answered, a, 0)
    scores = np.take_along_axis(post, safe, axis=1)
    scores = np.where(answered, scores, 0.0)
    scores = np.where(a == -2, np.nan, scores).astype(np.float32)

    max_count = counts.max(axis=1) if n_q else np.zeros(0, dtype=np.int64)
    n_valid = answered.sum(axis=1)
    chosen_count = np.take_along_axis(counts, safe, axis=1)
    plurality = answered & (chosen_count == max_count[:, None]) & (max_count[:, None] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(n_valid > 0, max_count / np.maximum(n_valid, 1), 0.0)
    majority = np.where(n_valid > 0, np.argmax(counts == max_count[:, None], axis=1), -1).astype(np.int8)
    return ConsensusResult(scores, plurality, agreement.astype(np.float64), majority, mu, sigma)


def consensus_scores_loop(
    answers: np.ndarray,
    n_options: np.ndarray,
    logprobs: Optional[np.ndarray] = None,
    params: ConsensusParams = ConsensusParams(),
    *,
    stats: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> ConsensusResult:
    """Plain-Python loop over questions and models (slow; the rules written out one by one)."""
    z_scale, tau, clamp = params.z_scale, params.tau, params.clamp
    a = np.asarray(answers).tolist()
    n_q = len(a)
    n_m = np.asarray(answers).shape[1]
    k = [int(v) for v in np.asarray(n_options)]
    if stats is not None:
        mu_arr, sigma_arr = (np.asarray(s, dtype=np.float64) for s in stats)
    elif logprobs is not None:
        mu_arr, sigma_arr = consensus_stats(logprobs)
    else:
        mu_arr, sigma_arr = np.zeros(n_m), np.ones(n_m)
    mu, sigma = mu_arr.tolist(), sigma_arr.tolist()
    lp = None if logprobs is None else np.asarray(logprobs, dtype=np.float64).tolist()

    def weight(q: int, m: int) -> float:
        value = math.nan if lp is None else lp[q][m]
        x = 0.0 if math.isnan(value) else z_scale * ((value - mu[m]) / sigma[m])
        if math.isnan(x):
            x = 0.0
        s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        return min(max(s, clamp[0]), clamp[1])

    scores = np.zeros((n_q, n_m), dtype=np.float32)
    plurality = np.zeros((n_q, n_m), dtype=bool)
    agreement = np.zeros(n_q)
    majority = np.full(n_q, -1, dtype=np.int8)
    for q in range(n_q):
        votes = [0.0] * k[q]
        counts = [0] * k[q]
        for m in range(n_m):
            c = a[q][m]
            if c >= 0:
                votes[c] += weight(q, m)
                counts[c] += 1
        top = max(votes)
        exps = [math.exp((v - top) / tau) for v in votes]
        total = sum(exps)
        n_valid = sum(counts)
        best = max(counts)
        for m in range(n_m):
            c = a[q][m]
            scores[q, m] = math.nan if c == -2 else (0.0 if c == -1 else exps[c] / total)
            plurality[q, m] = c >= 0 and counts[c] == best
        if n_valid:
            agreement[q] = best / n_valid
            majority[q] = counts.index(best)
    return ConsensusResult(scores, plurality, agreement, majority, mu_arr, sigma_arr)
