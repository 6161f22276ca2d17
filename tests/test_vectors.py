"""cascal.vectors.unit_rows: the one row normalisation, with its two zero-row policies."""

from __future__ import annotations

import numpy as np
import pytest

from cascal.errors import DataError
from cascal.vectors import unit_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_get_unit_length_in_their_own_dtype(rng, dtype):
    x = (rng.standard_normal((50, 7)) * rng.uniform(1e-3, 1e3, (50, 1))).astype(dtype)
    y = unit_rows(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(np.linalg.norm(y.astype(np.float64), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(y, x / np.linalg.norm(x, axis=1, keepdims=True))  # the same bits
    assert not np.shares_memory(x, y)


def test_zero_rows_stay_zero_or_are_refused_naming_the_first(rng):
    x = rng.standard_normal((5, 3))
    x[[2, 4]] = 0.0
    kept = unit_rows(x)
    assert (kept[[2, 4]] == 0).all() and np.isfinite(kept).all()
    with pytest.raises(DataError, match=r"^queries: row 2 is all zeros"):
        unit_rows(x, zero_rows="refuse", what="queries")
    unit_rows(x[[0, 1, 3]], zero_rows="refuse")  # no zero row: nothing to refuse
