"""Helpers shared by the baselines: a usable answer key, row normalisation, NaN-aware column means.

The fit/route input checks every router shares live in :mod:`cascal.router.base`."""

from __future__ import annotations

import numpy as np

from cascal.data import ResponseMatrix
from cascal.errors import ProtocolError


def key_correctness(responses: ResponseMatrix) -> np.ndarray:
    """``(n_q, n_m)`` correctness against the answer key, refusing a key that is entirely unknown."""
    if not (np.asarray(responses.gold) >= 0).any():
        raise ProtocolError("responses.gold: this router needs an answer key, but every gold entry is -1 (unknown)")
    return responses.correctness()


def column_means(values: np.ndarray, default: float = 0.0) -> np.ndarray:
    """NaN-ignoring mean of every column; ``default`` for an all-NaN column."""
    known = ~np.isnan(values)
    counts = known.sum(axis=0)
    sums = np.where(known, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)
