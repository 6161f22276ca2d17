"""Input checks shared by every baseline: embeddings that match the responses, a usable answer key."""

from __future__ import annotations

import numpy as np

from cascal.data import ResponseMatrix


def check_fit_inputs(embeddings: np.ndarray, responses: ResponseMatrix) -> np.ndarray:
    """Validate ``fit`` arguments and return the embeddings as a float64 ``(n, d)`` array."""
    if not isinstance(responses, ResponseMatrix):
        raise TypeError(f"responses: expected a ResponseMatrix, got {type(responses).__name__}")
    emb = check_embeddings(embeddings)
    if emb.shape[0] != responses.n_questions:
        raise ValueError(
            f"embeddings: {emb.shape[0]} rows but responses has {responses.n_questions} questions"
        )
    if responses.n_questions == 0:
        raise ValueError("responses: cannot fit on zero questions")
    if responses.n_models == 0:
        raise ValueError("responses: cannot fit on a pool of zero models")
    return emb


def check_embeddings(embeddings: np.ndarray, n_features: int | None = None) -> np.ndarray:
    """A finite 2-D float64 copy-free view of ``embeddings``; ``n_features`` checks the width."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise ValueError(f"embeddings: expected a 2-D (n_queries, dim) array, got shape {emb.shape}")
    if emb.dtype.kind not in "fiu":
        raise ValueError(f"embeddings: expected a numeric array, got dtype {emb.dtype}")
    emb = emb.astype(np.float64, copy=False)
    if not np.isfinite(emb).all():
        raise ValueError("embeddings: contains NaN or infinite values")
    if n_features is not None and emb.shape[1] != n_features:
        raise ValueError(f"embeddings: expected {n_features} columns (the fitted dimension), got {emb.shape[1]}")
    return emb


def key_correctness(responses: ResponseMatrix) -> np.ndarray:
    """``(n_q, n_m)`` correctness against the answer key, refusing a key that is entirely unknown."""
    if not (np.asarray(responses.gold) >= 0).any():
        raise ValueError("responses.gold: this router needs an answer key, but every gold entry is -1 (unknown)")
    return responses.correctness()


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def column_means(values: np.ndarray, default: float = 0.0) -> np.ndarray:
    """NaN-ignoring mean of every column; ``default`` for an all-NaN column."""
    known = ~np.isnan(values)
    counts = known.sum(axis=0)
    sums = np.where(known, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)
