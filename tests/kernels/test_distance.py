"""pairwise_distances / pdist: parity with scipy, adversarial inputs, conventions, errors, no copies."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.spatial.distance as sd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cascal.kernels as K
import cascal.reference as R

METRICS = ("cosine", "euclidean", "sqeuclidean")
DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
# Absolute floors. Cosine distance has scale 1, and near 0 its relative error is meaningless even
# for scipy (1 - cos loses all digits): floor 1e-6 (f32) / 1e-12 (f64). The euclidean metrics keep
# the relative bound everywhere except in the subnormal range, where scipy itself underflows: floor
# = the smallest normal number of the dtype.
COSINE_ATOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
EUCLIDEAN_ATOL = {
    np.dtype(np.float32): float(np.finfo(np.float32).tiny),
    np.dtype(np.float64): float(np.finfo(np.float64).tiny),
}


def assert_distances_close(got: np.ndarray, want: np.ndarray, metric: str) -> None:
    """``got`` matches the float64 truth ``want`` within the documented tolerance of got's dtype."""
    dtype = got.dtype
    assert got.shape == want.shape
    want = want.astype(np.float64)
    got64 = got.astype(np.float64)
    atol = COSINE_ATOL[dtype] if metric == "cosine" else EUCLIDEAN_ATOL[dtype]
    both_inf = np.isinf(got64) & np.isinf(want) & (np.sign(got64) == np.sign(want))
    err = np.abs(got64 - want)
    ok = both_inf | (err <= RTOL[dtype] * np.abs(want) + atol)
    if not ok.all():
        bad = np.flatnonzero(~ok.ravel())[:5]
        raise AssertionError(
            f"{metric} {dtype}: {int((~ok).sum())} mismatches, e.g. got {got64.ravel()[bad]} want {want.ravel()[bad]}"
        )


def truth_cdist(X: np.ndarray, Y: np.ndarray, metric: str) -> np.ndarray:
    """scipy in float64 (the reference, before any cast to float32)."""
    with np.errstate(over="ignore"):
        return R.pairwise_distances(np.asarray(X, np.float64), np.asarray(Y, np.float64), metric)


def truth_pdist(X: np.ndarray, metric: str) -> np.ndarray:
    return R.pdist(np.asarray(X, np.float64), metric)


def output_dtype_truth(want: np.ndarray, dtype) -> np.ndarray:
    """The float64 truth as the kernel's dtype can hold it (overflow to inf in float32)."""
    with np.errstate(over="ignore"):
        return want.astype(dtype).astype(np.float64)


SHAPES = [(1, 1), (2, 3), (5, 1), (17, 4), (129, 33), (300, 384), (1100, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", SHAPES)
def test_pdist_matches_scipy_on_random_data(rng, shape, metric, dtype):
    X = rng.normal(size=shape).astype(dtype)
    got = K.pdist(X, metric)
    assert got.dtype == dtype
    assert_distances_close(got, sd.pdist(X.astype(np.float64), metric), metric)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "shapes", [((1, 3), (1, 3)), ((7, 5), (300, 5)), ((1300, 8), (40, 8)), ((0, 4), (3, 4)), ((3, 4), (0, 4))]
)
def test_cdist_matches_scipy_on_random_data(rng, shapes, metric, dtype):
    X = rng.uniform(-3, 5, size=shapes[0]).astype(dtype)
    Y = rng.uniform(-3, 5, size=shapes[1]).astype(dtype)
    got = K.pairwise_distances(X, Y, metric)
    assert got.dtype == dtype and got.shape == (shapes[0][0], shapes[1][0])
    assert_distances_close(got, sd.cdist(X.astype(np.float64), Y.astype(np.float64), metric), metric)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_of_one_set_matches_scipy_and_is_exactly_symmetric(rng, metric, dtype):
    X = rng.normal(size=(260, 20)).astype(dtype)
    got = K.pairwise_distances(X, metric=metric)
    assert np.array_equal(got, got.T)
    assert np.all(np.diag(got) == 0)
    want = sd.cdist(X.astype(np.float64), X.astype(np.float64), metric)
    np.fill_diagonal(want, 0.0)
    assert_distances_close(got, want, metric)


def adversarial_sets(dtype) -> dict[str, np.ndarray]:
    """Inputs that break naive GEMM-based distances."""
    rng = np.random.default_rng(7)
    f64 = dtype == np.float64
    huge = 1e150 if f64 else 1e18
    tiny = 1e-150 if f64 else 1e-30
    base = rng.normal(size=(1, 24))
    sets = {
        "duplicates": np.repeat(rng.normal(size=(4, 24)), 5, axis=0),
        "all_equal": np.full((30, 24), 0.1),
        "huge": rng.normal(size=(40, 24)) * huge,
        "tiny": rng.normal(size=(40, 24)) * tiny,
        # near-duplicates around a large common offset: |offset| / spread = 1e8 (f64) / 1e3 (f32)
        "near_dup_offset": (base + 1e8 if f64 else base + 1e4)
        + rng.normal(size=(40, 24)) * (1.0 if f64 else 1e1) * 1e-4,
        "near_dup_small": base + rng.normal(size=(40, 24)) * (1e-9 if f64 else 1e-4),
        "mixed_scales": rng.normal(size=(40, 24)) * 10.0 ** rng.integers(-6, 6, size=(40, 1)),
    }
    return {k: v.astype(dtype) for k, v in sets.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("case", list(adversarial_sets(np.float64)))
def test_adversarial_inputs_keep_the_tolerance(metric, dtype, case):
    X = adversarial_sets(dtype)[case]
    got = K.pdist(X, metric)
    want = output_dtype_truth(truth_pdist(X, metric), dtype)
    assert_distances_close(got, want, metric)
    half = len(X) // 2
    got_c = K.pairwise_distances(X[:half], X[half:], metric)
    assert_distances_close(got_c, output_dtype_truth(truth_cdist(X[:half], X[half:], metric), dtype), metric)


def test_exact_duplicates_have_distance_exactly_zero():
    X = np.array([[1e8 + 0.5, 3.0, -2.0], [1e8 + 0.5, 3.0, -2.0], [1.0, 2.0, 3.0]])
    for metric in ("euclidean", "sqeuclidean"):
        assert K.pdist(X, metric)[0] == 0.0
    assert K.pdist(X, "cosine")[0] == pytest.approx(0.0, abs=1e-15)


def test_zero_vectors_under_cosine_follow_the_documented_convention():
    X = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [-3.0, -4.0]])
    # pairs: (0,1) zero-nonzero=1, (0,2) zero-zero=0, (0,3)=1, (1,2)=1, (1,3) opposite=2, (2,3)=1
    np.testing.assert_array_equal(K.pdist(X, "cosine"), [1.0, 0.0, 1.0, 1.0, 2.0, 1.0])
    D = K.pairwise_distances(X, np.array([[0.0, 0.0], [1.0, 0.0]]), "cosine")
    np.testing.assert_allclose(D, [[0.0, 1.0], [1.0, 0.4], [0.0, 1.0], [1.0, 1.6]], atol=1e-15)
    # the euclidean metrics need no convention
    np.testing.assert_allclose(K.pdist(X, "euclidean"), [5.0, 0.0, 5.0, 5.0, 10.0, 5.0])


@pytest.mark.parametrize("n", [0, 1, 2])
def test_small_n(n):
    X = np.arange(3 * n, dtype=np.float64).reshape(n, 3) + 1.0
    assert K.pdist(X).shape == (n * (n - 1) // 2,)
    assert K.pairwise_distances(X).shape == (n, n)
    if n == 2:
        assert K.pdist(X, "sqeuclidean")[0] == pytest.approx(27.0)


def test_non_contiguous_and_fortran_input_give_the_same_result(rng):
    base = rng.normal(size=(50, 16))
    sliced = base[:, ::2]
    assert not sliced.flags.c_contiguous
    expected = K.pdist(np.ascontiguousarray(sliced), "euclidean")
    np.testing.assert_array_equal(K.pdist(sliced, "euclidean"), expected)
    fortran = np.asfortranarray(base)
    np.testing.assert_array_equal(
        K.pairwise_distances(fortran, fortran[:5], "cosine"), K.pairwise_distances(base, base[:5], "cosine")
    )
    reversed_rows = base[::-1]
    assert_distances_close(K.pdist(reversed_rows), sd.pdist(reversed_rows, "cosine"), "cosine")


def test_int_and_bool_input_are_converted_to_float64():
    Xi = np.array([[1, 2, 3], [4, 5, 6], [0, 0, 1]], dtype=np.int32)
    got = K.pdist(Xi, "euclidean")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [np.sqrt(27), 3.0, np.sqrt(16 + 25 + 25)])
    Xb = np.array([[True, False, True], [True, True, False]])
    D = K.pairwise_distances(Xb, metric="cosine")
    assert D.dtype == np.float64
    assert D[0, 1] == pytest.approx(0.5)


def test_mixed_float_dtypes_promote_to_float64(rng):
    X = rng.normal(size=(4, 3)).astype(np.float32)
    Y = rng.normal(size=(5, 3))
    assert K.pairwise_distances(X, Y).dtype == np.float64
    assert K.pairwise_distances(X, Y.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_raise_naming_argument_and_row(bad, dtype):
    X = np.ones((5, 3), dtype=dtype)
    X[3, 1] = bad
    with pytest.raises(ValueError, match=r"^X: contains NaN or infinity at row 3$"):
        K.pdist(X)
    with pytest.raises(ValueError, match=r"^X: contains NaN or infinity at row 3$"):
        K.pairwise_distances(X)
    with pytest.raises(ValueError, match=r"^Y: contains NaN or infinity at row 3$"):
        K.pairwise_distances(np.ones((2, 3), dtype=dtype), X)


def test_bad_arguments_raise_clear_errors():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"^metric: expected one of"):
        K.pdist(X, "manhattan")
    with pytest.raises(ValueError, match=r"^metric:"):
        K.pairwise_distances(X, metric=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^X: expected a 2-D array"):
        K.pdist(np.ones(3))
    with pytest.raises(ValueError, match=r"^Y: has 3 columns but X has 2"):
        K.pairwise_distances(X, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^X: must have at least one column"):
        K.pdist(np.ones((3, 0)))
    for dtype in (np.float16, np.complex128, object):
        with pytest.raises(ValueError, match=r"^X: unsupported dtype"):
            K.pdist(np.ones((3, 2), dtype=dtype))


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", DTYPES)
def test_c_contiguous_float_input_is_not_copied(dtype):
    # numpy reports its allocations to tracemalloc, the Rust output buffer is not traced: a copy
    # of X made by the wrapper would show up as a traced peak of at least X.nbytes.
    X = np.random.default_rng(0).normal(size=(600, 2000)).astype(dtype)
    C = X[:4].copy()
    for call in (lambda: K.pdist(X), lambda: K.pairwise_distances(X, C), lambda: K.nearest_centroids(X, C, 2)):
        assert _traced_peak(call) < X.nbytes / 10
    # control: the probe does see the copy a Fortran-ordered array needs
    F = np.asfortranarray(X)
    assert _traced_peak(lambda: K.pdist(F)) >= X.nbytes


finite_values = {
    np.float64: st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64),
    np.float32: st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32),
}


@st.composite
def matrices(draw, max_n=12, max_d=6):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, max_n))
    d = draw(st.integers(1, max_d))
    X = draw(hnp.arrays(dtype, (n, d), elements=finite_values[dtype]))
    return X


@settings(max_examples=150, deadline=None)
@given(X=matrices(), metric=st.sampled_from(METRICS))
def test_property_pairwise_symmetric_zero_diagonal_and_consistent_with_pdist(X, metric):
    D = K.pairwise_distances(X, metric=metric)
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert np.all(D >= 0)
    np.testing.assert_array_equal(sd.squareform(D, checks=False), K.pdist(X, metric))


@settings(max_examples=150, deadline=None)
@given(X=matrices(), metric=st.sampled_from(METRICS))
def test_property_pdist_matches_reference(X, metric):
    want = output_dtype_truth(truth_pdist(X, metric), X.dtype)
    assert_distances_close(K.pdist(X, metric), want, metric)


@settings(max_examples=100, deadline=None)
@given(X=matrices(), Y=matrices(), metric=st.sampled_from(METRICS))
def test_property_cdist_matches_reference(X, Y, metric):
    d = min(X.shape[1], Y.shape[1])
    X, Y = X[:, :d], Y[:, :d].astype(X.dtype)
    want = output_dtype_truth(truth_cdist(X, Y, metric), X.dtype)
    assert_distances_close(K.pairwise_distances(X, Y, metric), want, metric)


def test_real_embeddings_match_scipy(data_dir):
    E = np.load(data_dir / "embeddings_all-MiniLM-L6-v2.npy", mmap_mode="r")
    X = np.ascontiguousarray(E[::6])  # ~2,000 real question embeddings, float32, d = 384
    assert X.dtype == np.float32 and X.shape[1] == 384
    for metric in METRICS:
        assert_distances_close(K.pdist(X, metric), sd.pdist(X.astype(np.float64), metric), metric)
    X64 = X[:500].astype(np.float64)
    for metric in METRICS:
        assert_distances_close(K.pdist(X64, metric), sd.pdist(X64, metric), metric)


def test_gil_is_released_while_the_kernel_runs():
    import threading
    import time

    X = np.random.default_rng(1).normal(size=(4000, 384)).astype(np.float32)
    started, done = threading.Event(), threading.Event()
    window: list[float] = []

    def worker() -> None:
        started.set()
        t0 = time.perf_counter()
        K.pdist(X)
        window.extend([t0, time.perf_counter()])
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    stamps = []
    while not done.is_set():
        stamps.append(time.perf_counter())
        time.sleep(0.001)
    thread.join()
    t0, t1 = window
    inside = [t for t in stamps if t0 < t < t1]
    # If the kernel held the GIL, this thread could not run between t0 and t1 at all (apart from
    # a stamp right at t0), so the stamps inside the call window would span almost nothing.
    assert t1 - t0 > 0.02
    assert inside and inside[-1] - inside[0] > 0.5 * (t1 - t0)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_reference_equals_scipy_on_ordinary_magnitudes(metric, rng):
    """The euclidean reference avoids scipy's under/overflow; where scipy is exact they agree."""
    from scipy.spatial import distance as sd

    X = rng.normal(size=(40, 7)) * 3.0
    Y = rng.normal(size=(9, 7))
    np.testing.assert_allclose(R.pdist(X, metric), sd.pdist(X, metric), rtol=1e-13, atol=0)
    np.testing.assert_allclose(R.pairwise_distances(X, Y, metric), sd.cdist(X, Y, metric), rtol=1e-13, atol=0)


def test_reference_is_exact_where_scipy_underflows():
    X = np.array([[2.0**-640], [0.0], [-(2.0**-640)]])
    np.testing.assert_array_equal(R.pdist(X, "euclidean"), [2.0**-640, 2.0**-639, 2.0**-640])
    with pytest.raises(ValueError, match="metric"):
        R.pdist(X, "cityblock")


def test_tiny_difference_next_to_a_unit_row_does_not_underflow():
    """Found by hypothesis: squaring the raw difference 1.2e-246 underflowed to a distance of 0."""
    X = np.array([[1.0, 0.0], [1.22594275e-246, 0.0]])
    Y = np.zeros((1, 2))
    np.testing.assert_array_equal(K.pairwise_distances(X, Y, "euclidean")[:, 0], [1.0, 1.22594275e-246])
    np.testing.assert_array_equal(R.pairwise_distances(X, Y, "euclidean")[:, 0], [1.0, 1.22594275e-246])
