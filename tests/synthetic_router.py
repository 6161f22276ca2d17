"""Test support: a CASCAL router fitted on synthetic embeddings, and Parquet files of query embeddings.

Subjects are random directions in ``dim`` dimensions; each model has a per-subject skill and answers a
question right with that probability (else a wrong option at random). Importable by every test folder
(pytest puts the directory of ``tests/conftest.py`` on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from cascal.data import ResponseMatrix
from cascal.router import CascalRouter


def fit_synthetic_router(
    n: int = 1500, n_subjects: int = 6, n_models: int = 5, dim: int = 16, seed: int = 0, priced: bool = False
) -> tuple[CascalRouter, np.ndarray]:
    """A fitted router and the subject centres its training questions were drawn around; ``priced``:
    fitted with list prices and random completion-token counts (it then reports expected costs)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_subjects, dim)).astype(np.float32)
    subject = rng.integers(0, n_subjects, n)
    X = centres[subject] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    skill = rng.uniform(0.25, 0.95, (n_subjects, n_models))
    gold = rng.integers(0, 4, n)
    right = rng.random((n, n_models)) < skill[subject]
    wrong = (gold[:, None] + rng.integers(1, 4, (n, n_models))) % 4
    responses = ResponseMatrix(
        answers=np.where(right, gold[:, None], wrong).astype(np.int8),
        n_options=np.full(n, 4),
        subjects=np.array([f"subject-{s}" for s in subject]),
        model_names=[f"model-{j}" for j in range(n_models)],
        gold=gold.astype(np.int8),
        cost=rng.integers(20, 400, (n, n_models)).astype(np.float32) if priced else None,
    )
    prices = {f"model-{j}": (0.5 * (j + 1), 2.0 * (j + 1)) for j in range(n_models)} if priced else None
    router = CascalRouter(embedding_model=f"hashing-{dim}", random_state=0).fit(X, responses, prices=prices)
    return router, centres


def synthetic_queries(centres: np.ndarray, n: int, seed: int = 1, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(centres), n)
    return (centres[picks] + 0.8 * rng.standard_normal((n, centres.shape[1]))).astype(dtype)


def write_embeddings(
    path: Path,
    X: np.ndarray,
    *,
    ids: Optional[list] = None,
    fixed_size: bool = True,
    row_group_size: Optional[int] = None,
    column: str = "embedding",
) -> Path:
    """``X`` as a Parquet column (``fixed_size_list`` or ``list`` of X's float type), with an ``id`` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array(X.ravel())
    if fixed_size:
        emb = pa.FixedSizeListArray.from_arrays(values, X.shape[1])
    else:
        emb = pa.ListArray.from_arrays(pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int32)), values)
    table = pa.table({"id": pa.array(ids if ids is not None else [f"q{i}" for i in range(len(X))]), column: emb})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path
