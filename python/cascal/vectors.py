"""Row vectors: scaling embeddings to unit length, with one explicit policy for rows of length zero.

Every place in cascal that normalises rows calls :func:`unit_rows`; the policies differ on purpose
and are named at the call:

- ``zero_rows="keep"``: a zero row stays zero (a mean of opposite directions, a text with no
  hashed token); it is at cosine distance 1 from everything in the kernels.
- ``zero_rows="refuse"``: a zero row has no direction to compare, so it is refused with a
  :class:`~cascal.errors.DataError` naming the argument and the row (router training data).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cascal.errors import DataError

__all__ = ["ZeroRows", "unit_rows"]

ZeroRows = Literal["keep", "refuse"]


def unit_rows(x: np.ndarray, *, zero_rows: ZeroRows = "keep", what: str = "embeddings") -> np.ndarray:
    """Rows of the 2-d array ``x`` divided by their L2 norms, in ``x``'s floating dtype.

    Args:
        x: ``(n, d)`` floating array (not modified).
        zero_rows: what a row of length zero becomes (module docs).
        what: the argument's name in the error message.
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms == 0
    if zero.any():
        if zero_rows == "refuse":
            row = int(np.flatnonzero(zero[:, 0])[0])
            raise DataError(f"{what}: row {row} is all zeros (no direction to compare)")
        norms = np.where(zero, 1.0, norms).astype(norms.dtype, copy=False)
    return x / norms
