"""Benchmark cases of the distance kernels (``pdist``) against scipy and the numpy idiom.

Targets (docs/benchmarks.md; float32, d = 384, cosine, n = 20,000): >= 40x
``scipy.spatial.distance.pdist`` and >= 4x the numpy idiom (normalise, ``X @ X.T``, take the
condensed upper triangle). scipy is slow at that size, so it has its own case timed once; quick mode
uses n = 2,000 everywhere.
"""

from __future__ import annotations

import numpy as np
import scipy.spatial.distance as sd

from cascal.bench.registry import Case, register
from cascal.kernels import pdist

D = 384
FULL_N = 20_000
QUICK_N = 2_000


#: Rows generated per step by :func:`make_embeddings` (bounds its float64 temporaries).
MAKE_CHUNK_ROWS = 65_536


def make_embeddings(n: int, d: int = D, dtype=np.float32, seed: int = 0) -> np.ndarray:
    """Embedding-like rows: a few hundred topic directions plus noise, C-contiguous.

    Generated in chunks of rows, so the float64 temporaries stay at a few hundred MB even for the
    1M-row cases (whole-matrix float64 temporaries would be three 1M x 384 arrays, about 9 GB, and
    memory freed just before a timed call makes the next kernel's first calls erratic); the random
    draws are consecutive, so the rows are the same as drawing the whole noise matrix at once."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(max(1, n // 50), d))
    picks = rng.integers(0, len(topics), n)
    X = np.empty((n, d), dtype=dtype)
    for start in range(0, n, MAKE_CHUNK_ROWS):
        stop = min(start + MAKE_CHUNK_ROWS, n)
        X[start:stop] = topics[picks[start:stop]] + 0.7 * rng.normal(size=(stop - start, d))
    return X


def numpy_cosine_pdist(X: np.ndarray) -> np.ndarray:
    """The numpy idiom: normalise, one matrix product, condensed upper triangle via squareform."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    G = Xn @ Xn.T
    np.subtract(1.0, G, out=G)
    np.fill_diagonal(G, 0.0)
    return sd.squareform(G, checks=False)


def scipy_pdist(metric: str):
    return lambda X: sd.pdist(X, metric)


register(
    Case(
        name=f"pdist cosine f32 n={FULL_N} (quick {QUICK_N}) d={D}",
        setup=lambda quick: make_embeddings(QUICK_N if quick else FULL_N),
        kernel=lambda X: pdist(X, "cosine"),
        references={"numpy normalise+X@X.T+triu": numpy_cosine_pdist},
        targets={"numpy normalise+X@X.T+triu": 4.0},
        repeats=5,
    )
)

register(
    Case(
        name=f"pdist cosine f32 vs scipy n={FULL_N} (quick {QUICK_N}) d={D}",
        setup=lambda quick: make_embeddings(QUICK_N if quick else FULL_N),
        kernel=lambda X: pdist(X, "cosine"),
        references={"scipy pdist": scipy_pdist("cosine")},
        targets={"scipy pdist": 40.0},
        repeats=1,
        quick_repeats=3,
    )
)

register(
    Case(
        name="pdist euclidean f64 n=5000 (quick 1000) d=384",
        setup=lambda quick: make_embeddings(1_000 if quick else 5_000, dtype=np.float64),
        kernel=lambda X: pdist(X, "euclidean"),
        references={"scipy pdist": scipy_pdist("euclidean")},
        repeats=3,
    )
)
