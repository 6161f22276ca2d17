"""Row geometry of the router's training data, read block by block so a large (possibly memory-mapped)
embedding matrix is never copied whole.

``fit`` computes every row's length once (:func:`row_norms`) and then reads the rows it needs as unit
rows through :func:`unit_subset`; :func:`cascal.vectors.unit_rows` stays the one helper that
normalises a matrix it is handed whole.
"""

from __future__ import annotations

import numpy as np

from cascal.errors import DataError

#: Rows per block of the data-sized passes of ``fit`` (row lengths, calibration).
ROW_CHUNK = 2_048


def row_norms(X: np.ndarray) -> np.ndarray:
    """``(n,)`` float64 row lengths of ``X``, block by block (no copy of ``X``).

    Raises:
        DataError: a row holds NaN or infinite values, or is all zeros (no direction to compare).
    """
    norms = np.empty(X.shape[0])
    for start in range(0, X.shape[0], ROW_CHUNK):
        block = np.asarray(X[start : start + ROW_CHUNK], dtype=np.float64)
        if not np.isfinite(block).all():
            raise DataError("embeddings: contains NaN or infinite values")
        norms[start : start + block.shape[0]] = np.linalg.norm(block, axis=1)
    if (norms == 0).any():
        raise DataError(f"embeddings: row {int(np.argmin(norms))} is all zeros (no direction to compare)")
    return norms


def unit_subset(X: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Float64 unit rows ``X[rows] / norms[rows]``: a copy of those rows only, divided by lengths
    :func:`row_norms` already computed."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and (rows.size < 2 or bool(np.all(np.diff(rows) == 1))):
        part = X[int(rows[0]) : int(rows[-1]) + 1]  # a run of rows: a slice reads them without fancy indexing
        return np.asarray(part, dtype=np.float64) / norms[int(rows[0]) : int(rows[-1]) + 1, None]
    return np.asarray(X[rows], dtype=np.float64) / norms[rows, None]


def subject_codes(subjects: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The sorted distinct subjects and every question's int64 index into them."""
    names = sorted(set(subjects.tolist()))
    return names, np.searchsorted(np.asarray(names, dtype=subjects.dtype), subjects).astype(np.int64)
