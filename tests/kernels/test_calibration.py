"""Calibration kernel ``softmax_nll``: parity with the dense numpy reference (random, hypothesis and
adversarial inputs: ties, far rows, one column, extreme temperatures), the skip bound, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal import reference
from cascal.errors import KernelError
from cascal.kernels import softmax_nll


@pytest.mark.parametrize("temp", [1e-4, 0.003, 0.05, 0.7, 1.0, 50.0])
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (300, 2), (5000, 14), (2000, 200)])
def test_parity_random(shape, temp, rng):
    n, s = shape
    dist = rng.uniform(0, 2, size=shape)
    labels = rng.integers(0, s, n)
    got = softmax_nll(dist, labels, temp)
    want = reference.softmax_nll(dist, labels, temp)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_adversarial_ties_far_rows_and_label_on_the_far_side(rng):
    dist = np.array(
        [
            [0.5, 0.5, 0.5, 0.5],  # all tied: nll = log 4
            [0.0, 2.0, 2.0, 2.0],  # far entries skipped at small T
            [0.0, 2.0, 2.0, 2.0],  # label on a skipped entry: its term is still exact
            [1e-12, 0.0, 1e-12, 3e-12],  # differences far below T
        ]
    )
    labels = np.array([2, 0, 3, 1])
    for temp in (1e-4, 0.01, 1.0):
        assert softmax_nll(dist, labels, temp) == pytest.approx(reference.softmax_nll(dist, labels, temp), rel=1e-12)
    # row 3 at T = 0.01: the label is 200 temperatures away -> 200 (skipped terms add e^-200)
    assert softmax_nll(dist[2:3], labels[2:3], 0.01) == pytest.approx(200.0, rel=1e-14)
    assert softmax_nll(dist[:1], labels[:1], 0.3) == pytest.approx(np.log(4.0), rel=1e-14)


def test_skipped_terms_change_the_result_by_less_than_the_bound():
    """Entries exactly 40 temperatures beyond the nearest are the largest the kernel may skip: the
    result stays within S * e^-40 of the dense value."""
    s = 200
    temp = 0.01
    dist = np.full((3, s), 40.0000001 * temp)
    dist[:, 0] = 0.0
    labels = np.zeros(3, dtype=np.int64)
    dense = reference.softmax_nll(dist, labels, temp)
    assert dense > 0
    assert abs(softmax_nll(dist, labels, temp) - dense) <= s * np.exp(-40.0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    s=st.integers(1, 12),
    temp=st.floats(1e-4, 10.0),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-9, 1e-3, 1.0, 2.0, 1e3]),
)
def test_parity_hypothesis(n, s, temp, seed, scale):
    rng = np.random.default_rng(seed)
    dist = rng.uniform(0, scale, size=(n, s))
    dist[rng.random((n, s)) < 0.2] = 0.0  # repeated minima
    labels = rng.integers(0, s, n)
    want = reference.softmax_nll(dist, labels, temp)
    got = softmax_nll(dist, labels, temp)
    # the skip is bounded by s * e^-40 absolute; the summation order by a few ulps of the terms
    assert got == pytest.approx(want, rel=1e-11, abs=s * np.exp(-40.0) + 1e-12)


def test_thread_count_does_not_change_the_result(rng):
    """Rows are summed in fixed blocks, in block order: a large input gives one exact value."""
    dist = rng.uniform(0, 1, size=(20000, 9))
    labels = rng.integers(0, 9, 20000)
    first = softmax_nll(dist, labels, 0.05)
    assert all(softmax_nll(dist, labels, 0.05) == first for _ in range(3))


@pytest.mark.parametrize(
    ("dist", "labels", "temp", "arg"),
    [
        (np.zeros((2, 3)), np.array([0, 3]), 0.1, "labels"),
        (np.zeros((2, 3)), np.array([0, -1]), 0.1, "labels"),
        (np.zeros((2, 3)), np.array([0, 1]), 0.0, "temp"),
        (np.zeros((2, 3)), np.array([0, 1]), np.inf, "temp"),
        (np.array([[0.0, np.nan]]), np.array([0]), 0.1, "dist"),
        (np.zeros((0, 3)), np.zeros(0, dtype=np.int64), 0.1, "dist"),
    ],
)
def test_rejects_bad_input(dist, labels, temp, arg):
    with pytest.raises(KernelError) as info:
        softmax_nll(dist, labels, temp)
    assert info.value.arg == arg


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="dist"):
        softmax_nll(np.zeros(3), np.zeros(3, dtype=np.int64), 0.1)
    with pytest.raises(ValueError, match="labels"):
        softmax_nll(np.zeros((3, 2)), np.zeros(2, dtype=np.int64), 0.1)
    with pytest.raises(ValueError, match="labels"):
        softmax_nll(np.zeros((3, 2)), np.zeros(3), 0.1)
