"""Benchmark cases of the linkage kernel against scipy.

Targets (docs/benchmarks.md; float32, d = 384, n = 20,000; quick mode n = 2,000):
- average linkage from raw vectors (cosine): >= 5x scipy ``pdist`` + ``linkage``, with at most
  half of scipy's peak memory (scipy holds the float64 condensed matrix plus the copy ``linkage``
  makes; the kernel holds one float32 condensed buffer);
- average linkage from a float64 condensed matrix: >= 2x ``scipy.cluster.hierarchy.linkage``.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist as scipy_pdist

from cascal.bench.registry import Case, register
from cascal.kernels import linkage, pdist

D = 384
FULL_N = 20_000
QUICK_N = 2_000


def make_embeddings(n: int, d: int = D, seed: int = 0) -> np.ndarray:
    """float32 rows drawn around n/50 random topic directions (embedding-like, tie-free)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(1, n // 50), d))
    X = topics[rng.integers(0, len(topics), n)] + 0.7 * rng.standard_normal((n, d))
    return np.ascontiguousarray(X, dtype=np.float32)


def condensed_f64(quick: bool) -> np.ndarray:
    """float64 cosine condensed distances of the embeddings (computed with the fast kernel)."""
    X = make_embeddings(QUICK_N if quick else FULL_N).astype(np.float64)
    return pdist(X, "cosine")


register(
    Case(
        name=f"linkage average cosine f32 vectors n={FULL_N} (quick {QUICK_N}) d={D}",
        setup=lambda quick: make_embeddings(QUICK_N if quick else FULL_N),
        kernel=lambda X: linkage(X, "average", "cosine"),
        references={"scipy pdist+linkage": lambda X: hierarchy.linkage(scipy_pdist(X, "cosine"), "average")},
        targets={"scipy pdist+linkage": 5.0},
        repeats=1,
        quick_repeats=3,
        measure_memory=True,
    )
)

register(
    Case(
        name=f"linkage average f64 condensed n={FULL_N} (quick {QUICK_N})",
        setup=condensed_f64,
        kernel=lambda y: linkage(y, "average"),
        references={"scipy linkage": lambda y: hierarchy.linkage(y, "average")},
        targets={"scipy linkage": 2.0},
        repeats=3,
        quick_repeats=3,
    )
)
