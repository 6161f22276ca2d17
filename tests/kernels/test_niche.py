"""cluster_means and nearest_centroids: parity with numpy references, properties, errors, real data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cascal.kernels as K
import cascal.reference as R

METRICS = ("cosine", "euclidean", "sqeuclidean")
DTYPES = (np.float32, np.float64)


# ---------------------------------------------------------------- cluster_means


def test_cluster_means_small_example_by_hand():
    labels = [0, 1, 0, 0, 2]
    values = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0], [np.nan, np.nan], [7.0, 8.0]])
    weights = [1.0, 2.0, 3.0, 9.0, 0.0]
    out = K.cluster_means(labels, values, 4, weights)
    assert out.shape == (4, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out[0], [(1 * 1 + 3 * 5) / 4, 6.0])
    np.testing.assert_allclose(out[1], [3.0, 4.0])
    assert np.isnan(out[2]).all()  # its only row has weight 0
    assert np.isnan(out[3]).all()  # no row at all
    np.testing.assert_allclose(K.cluster_means(labels, values, 4)[0], [3.0, 6.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_cluster_means_matches_reference_on_random_data(rng, dtype, weighted):
    n, m, k = 20_000, 12, 37
    labels = rng.integers(0, k, size=n)
    values = rng.normal(size=(n, m)).astype(dtype)
    values[rng.random(size=(n, m)) < 0.3] = np.nan
    values[:, 5] = np.nan  # an all-missing column
    weights = rng.exponential(size=n) if weighted else None
    got = K.cluster_means(labels, values, k + 3, weights)  # 3 empty clusters
    want = R.cluster_means(labels, values, k + 3, weights)
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12, equal_nan=True)


def test_cluster_means_input_conversions(rng):
    labels32 = np.array([1, 0, 1], dtype=np.int32)
    values = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64)
    out = K.cluster_means(labels32, values, 2, weights=np.array([1, 1, 3], dtype=np.int8))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[3.0, 4.0], [4.0, 5.0]])
    f = np.asfortranarray(rng.normal(size=(50, 3)))
    lab = rng.integers(0, 4, size=50)
    np.testing.assert_array_equal(K.cluster_means(lab, f, 4), K.cluster_means(lab, np.ascontiguousarray(f), 4))
    assert K.cluster_means(np.array([], dtype=np.int64), np.empty((0, 3)), 2).shape == (2, 3)
    assert np.isnan(K.cluster_means([], np.empty((0, 3)), 2)).all()


def test_cluster_means_rejects_bad_input():
    v = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"^labels: value 3 at index 2 is outside \[0, n_clusters=3\)"):
        K.cluster_means([0, 1, 3], v, 3)
    with pytest.raises(ValueError, match=r"^labels: value -1 at index 0"):
        K.cluster_means([-1, 1, 2], v, 3)
    with pytest.raises(ValueError, match=r"^labels: expected integer labels"):
        K.cluster_means([0.0, 1.0, 2.0], v, 3)
    with pytest.raises(ValueError, match=r"^labels: has 2 entries but values has 3 rows"):
        K.cluster_means([0, 1], v, 3)
    with pytest.raises(ValueError, match=r"^weights: weight -1\.0 at index 1 is not a finite non-negative number"):
        K.cluster_means([0, 1, 2], v, 3, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match=r"^weights: weight NaN at index 2"):
        K.cluster_means([0, 1, 2], v, 3, [1.0, 1.0, np.nan])
    with pytest.raises(ValueError, match=r"^weights: has 2 entries"):
        K.cluster_means([0, 1, 2], v, 3, [1.0, 1.0])
    with pytest.raises(ValueError, match=r"^values: contains infinity at row 1"):
        K.cluster_means([0, 1, 2], np.array([[1.0, 2.0], [np.inf, 0.0], [0.0, 0.0]]), 3)
    with pytest.raises(ValueError, match=r"^values: expected a 2-D array"):
        K.cluster_means([0, 1, 2], np.ones(3), 3)
    with pytest.raises(ValueError, match=r"^n_clusters: must be >= 0"):
        K.cluster_means([0, 1, 2], v, -1)
    with pytest.raises(ValueError, match=r"^n_clusters: expected an integer"):
        K.cluster_means([0, 1, 2], v, 2.5)  # type: ignore[arg-type]


@st.composite
def grouped_values(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 40))
    m = draw(st.integers(0, 5))
    k = draw(st.integers(1 if n else 0, 6))
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, max(k - 1, 0))))
    elements = st.one_of(st.just(np.nan), st.floats(-1e3, 1e3, allow_nan=False, width=32))
    values = draw(hnp.arrays(dtype, (n, m), elements=elements))
    weights = draw(st.none() | hnp.arrays(np.float64, n, elements=st.floats(0, 10)))
    return labels, values, k, weights


@settings(max_examples=200, deadline=None)
@given(case=grouped_values())
def test_property_cluster_means_agrees_with_reference(case):
    labels, values, k, weights = case
    got = K.cluster_means(labels, values, k, weights)
    want = R.cluster_means(labels, values, k, weights)
    assert got.shape == (k, values.shape[1])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # float32 output: both round the same float64 mean; allow one ulp of difference in the sums' order
    np.testing.assert_allclose(got, want, rtol=2e-6 if values.dtype == np.float32 else 1e-12, atol=1e-9, equal_nan=True)


# ---------------------------------------------------------------- nearest_centroids


def assert_nearest_consistent(X, C, k, metric, idx, dist):
    """Indices/distances agree with the full distance matrix sorted stably."""
    full = K.pairwise_distances(X, C, metric).astype(np.float64)
    n = X.shape[0]
    assert idx.shape == (n, k) and dist.shape == (n, k) and idx.dtype == np.int64
    rows = np.arange(n)[:, None]
    tol = 1e-5 if dist.dtype == np.float32 else 1e-12
    # the reported distance is that of the reported centroid
    np.testing.assert_allclose(dist, full[rows, idx], rtol=tol, atol=tol)
    # ascending, and equal to the k smallest distances of the row
    assert np.all(np.diff(dist.astype(np.float64), axis=1) >= 0)
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :k], rtol=tol, atol=tol)
    # no index repeated in a row
    assert all(len(set(r)) == k for r in idx.tolist())
    # where the gap to the next candidate is clear, the index is exactly the stable argsort's
    order = np.argsort(full, axis=1, kind="stable")
    sorted_full = np.take_along_axis(full, order, axis=1)
    gaps = np.diff(sorted_full, axis=1, append=np.inf)
    gaps_before = np.diff(sorted_full, axis=1, prepend=-np.inf)
    clear = (np.minimum(gaps, gaps_before) > 10 * tol)[:, :k]
    np.testing.assert_array_equal(idx[clear], order[:, :k][clear])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 3, 40, 50])
def test_nearest_centroids_matches_reference(rng, dtype, metric, k):
    X = rng.normal(size=(3000, 16)).astype(dtype)
    C = rng.normal(size=(50, 16)).astype(dtype)
    idx, dist = K.nearest_centroids(X, C, k, metric)
    assert dist.dtype == dtype
    ridx, rdist = R.nearest_centroids(X, C, k, metric)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(dist, rdist, rtol=tol, atol=tol)
    assert (idx == ridx).mean() > 0.999
    assert_nearest_consistent(X, C, k, metric, idx, dist)


def test_nearest_centroids_ties_go_to_the_lower_index():
    C = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    X = np.array([[5.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    idx, dist = K.nearest_centroids(X, C, 5, "cosine")
    np.testing.assert_array_equal(idx[0], [0, 2, 3, 1, 4])
    np.testing.assert_array_equal(idx[1], [1, 4, 0, 2, 3])
    # a zero query is at cosine distance 1 from every non-zero centroid: pure index order
    np.testing.assert_array_equal(idx[2], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(dist[2], [1.0] * 5)
    idx_e, dist_e = K.nearest_centroids(np.array([[1.0, 0.0]]), C, 3, "euclidean")
    np.testing.assert_array_equal(idx_e, [[0, 3, 2]])
    np.testing.assert_allclose(dist_e, [[0.0, 0.0, 1.0]])


def test_nearest_centroids_many_queries_span_many_blocks(rng):
    # enough queries and centroids for several query blocks per worker
    X = rng.normal(size=(20_011, 8)).astype(np.float32)
    C = rng.normal(size=(1500, 8)).astype(np.float32)
    idx, dist = K.nearest_centroids(X, C, 2, "euclidean")
    sub = rng.choice(len(X), 300, replace=False)
    assert_nearest_consistent(X[sub], C, 2, "euclidean", idx[sub], dist[sub])


def test_nearest_centroids_edge_shapes_and_errors():
    C = np.eye(3)
    idx, dist = K.nearest_centroids(np.empty((0, 3)), C, 2)
    assert idx.shape == (0, 2) and dist.shape == (0, 2)
    with pytest.raises(ValueError, match=r"^k: must be between 1 and the number of centroids \(3\), got 4"):
        K.nearest_centroids(np.ones((2, 3)), C, 4)
    with pytest.raises(ValueError, match=r"^k: must be between 1"):
        K.nearest_centroids(np.ones((2, 3)), C, 0)
    with pytest.raises(ValueError, match=r"^k: expected an integer"):
        K.nearest_centroids(np.ones((2, 3)), C, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^C: must have at least one centroid row"):
        K.nearest_centroids(np.ones((2, 3)), np.empty((0, 3)), 1)
    with pytest.raises(ValueError, match=r"^C: has 2 columns but X has 3"):
        K.nearest_centroids(np.ones((2, 3)), np.ones((4, 2)), 1)
    bad = np.ones((4, 3))
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"^X: contains NaN or infinity at row 2$"):
        K.nearest_centroids(bad, C, 1)
    with pytest.raises(ValueError, match=r"^C: contains NaN or infinity at row 2$"):
        K.nearest_centroids(C, bad, 1)
    with pytest.raises(ValueError, match=r"^metric:"):
        K.nearest_centroids(C, C, 1, "cityblock")


@st.composite
def queries_and_centroids(draw):
    dtype = draw(st.sampled_from(DTYPES))
    d = draw(st.integers(1, 5))
    n = draw(st.integers(0, 25))
    nc = draw(st.integers(1, 12))
    k = draw(st.integers(1, nc))
    # integer-valued coordinates make exact ties (duplicates, symmetric points) frequent
    elements = st.integers(-4, 4).map(float)
    X = draw(hnp.arrays(dtype, (n, d), elements=elements))
    C = draw(hnp.arrays(dtype, (nc, d), elements=elements))
    return X, C, k


@settings(max_examples=200, deadline=None)
@given(case=queries_and_centroids(), metric=st.sampled_from(METRICS))
def test_property_nearest_centroids_agrees_with_argsort_of_full_matrix(case, metric):
    X, C, k = case
    idx, dist = K.nearest_centroids(X, C, k, metric)
    assert_nearest_consistent(X, C, k, metric, idx, dist)


# ---------------------------------------------------------------- real data


def test_real_data_category_accuracy_and_nearest_category_centroid(data_dir):
    from cascal.io import load_dataset

    rm = load_dataset(data_dir, out_of_range="unparsable")
    cats, labels = np.unique(rm.subjects, return_inverse=True)
    asked = rm.answers != -2
    correct = np.where(asked, (rm.answers == rm.gold[:, None]).astype(np.float64), np.nan)
    means = K.cluster_means(labels, correct, len(cats))
    # independent check: a plain per-category loop
    for c in range(len(cats)):
        rows = correct[labels == c]
        with np.errstate(invalid="ignore"):
            expected = np.nanmean(rows, axis=0) if np.isfinite(rows).any() else np.full(rows.shape[1], np.nan)
        np.testing.assert_allclose(means[c], expected, rtol=1e-12, equal_nan=True)
    assert np.nanmax(means) <= 1.0 and np.nanmin(means) >= 0.0

    E = rm.embeddings
    assert E is not None and E.dtype == np.float32
    centroids = K.cluster_means(labels, E, len(cats)).astype(np.float32)
    idx, dist = K.nearest_centroids(E, centroids, 3, "cosine")
    ridx, rdist = R.nearest_centroids(E, centroids, 3, "cosine")
    np.testing.assert_allclose(dist, rdist, rtol=1e-5, atol=1e-6)
    assert (idx == ridx).mean() > 0.999
    # questions are nearer their own category centroid than chance (14 categories)
    assert (idx[:, 0] == labels).mean() > 0.3
