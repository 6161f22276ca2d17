"""cascal.kernels.linkage / fcluster against scipy.cluster.hierarchy.

- tie-free random data (gaussian): identical linkage matrices to scipy for float64 (ids, sizes,
  heights to 1e-6 relative) and identical flat labels at every k; float32 within float32
  precision (partitions equal at every k whose cut is resolvable at that precision);
- tied data (duplicates, integer grids, all-equal points): valid hierarchy, scipy's heights;
- hypothesis properties, bad input, real MiniLM embeddings, and one n > 65,536 run (slow).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist

from cascal import kernels, reference
from cascal.kernels import fcluster, linkage

METHODS = ["single", "complete", "average", "weighted", "ward"]
REDUCIBLE = ["complete", "average", "weighted", "ward"]
METHOD_METRIC = [
    (m, metric) for m in METHODS for metric in ("cosine", "euclidean") if not (m == "ward" and metric == "cosine")
]


def gaussian(rng: np.random.Generator, n: int, d: int, dtype) -> np.ndarray:
    """Random gaussian vectors with a random offset and scale (no tied distances)."""
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 20.0) + rng.uniform(-3, 3, size=d)
    return X.astype(dtype)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the labelings define the same partition (equal up to renaming labels)."""
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return pairs == len(np.unique(a)) == len(np.unique(b))


def assert_valid_hierarchy(Z: np.ndarray, n: int) -> None:
    """Every observation and every formed cluster is merged exactly once; sizes add up."""
    assert Z.shape == (n - 1, 4) and Z.dtype == np.float64
    assert hierarchy.is_valid_linkage(Z, throw=True)
    ids = Z[:, :2].astype(np.int64).ravel()
    assert np.array_equal(np.sort(ids), np.arange(2 * n - 2)), "each id merged exactly once"
    assert Z[-1, 3] == n


# --------------------------------------------------------------------------------------------
# parity on tie-free data


@pytest.mark.parametrize("method,metric", METHOD_METRIC)
@pytest.mark.parametrize("form", ["vectors", "condensed"])
@pytest.mark.parametrize("n,d", [(2, 3), (3, 5), (37, 12), (150, 24)])
def test_float64_equals_scipy_exactly(method, metric, form, n, d):
    rng = np.random.default_rng([n, d, METHODS.index(method), len(metric)])
    X = gaussian(rng, n, d, np.float64)
    data = X if form == "vectors" else pdist(X, metric)
    Z = linkage(data, method, metric)
    Zs = hierarchy.linkage(pdist(X, metric), method)
    assert_valid_hierarchy(Z, n)
    np.testing.assert_array_equal(Z[:, [0, 1, 3]], Zs[:, [0, 1, 3]])
    np.testing.assert_allclose(Z[:, 2], Zs[:, 2], rtol=1e-6, atol=0)
    for k in range(1, n + 1):
        np.testing.assert_array_equal(fcluster(Z, k, "maxclust"), hierarchy.fcluster(Zs, k, "maxclust"))


@pytest.mark.parametrize("method,metric", METHOD_METRIC)
@pytest.mark.parametrize("form", ["vectors", "condensed"])
def test_float32_matches_scipy_to_float32_precision(method, metric, form):
    n, d = 160, 32
    rng = np.random.default_rng([7, METHODS.index(method), len(metric), len(form)])
    X = gaussian(rng, n, d, np.float32)
    if form == "vectors":
        data = X
        Zs = hierarchy.linkage(pdist(X, metric), method)  # scipy computes in float64
    else:
        data = pdist(X, metric).astype(np.float32)
        Zs = hierarchy.linkage(data, method)
    Z = linkage(data, method, metric)
    assert_valid_hierarchy(Z, n)
    np.testing.assert_allclose(Z[:, 2], Zs[:, 2], rtol=1e-6, atol=0)
    # A cut between merges k and k+1 is well defined at float32 precision when their heights differ
    # by more than 1e-5 relative; there the partitions must be identical.
    heights = Zs[:, 2]
    resolvable = [k for k in range(2, n) if heights[n - k] - heights[n - k - 1] > 1e-5 * heights[n - k]]
    assert len(resolvable) >= 0.9 * (n - 2), "test data should be nearly tie-free"
    for k in resolvable:
        assert same_partition(fcluster(Z, k, "maxclust"), hierarchy.fcluster(Zs, k, "maxclust")), k


@pytest.mark.parametrize("method", METHODS)
def test_large_float32_average_heights(method):
    """n = 1,500 at d = 384 (the benchmark's shape): heights within 1e-6 relative."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1500, 384)).astype(np.float32)
    metric = "euclidean" if method == "ward" else "cosine"
    Z = linkage(X, method, metric)
    Zs = hierarchy.linkage(pdist(X, metric), method)
    np.testing.assert_allclose(Z[:, 2], Zs[:, 2], rtol=1e-6, atol=0)
    assert_valid_hierarchy(Z, 1500)


def test_reference_module_is_scipy():
    rng = np.random.default_rng(0)
    X = gaussian(rng, 30, 4, np.float64)
    np.testing.assert_array_equal(
        reference.linkage(X, "average", "cosine"), hierarchy.linkage(pdist(X, "cosine"), "average")
    )
    assert kernels.linkage is linkage and kernels.fcluster is fcluster


# --------------------------------------------------------------------------------------------
# tied distances


def tied_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    base = rng.standard_normal((12, 3))
    grid = np.stack(np.meshgrid(np.arange(5), np.arange(4)), axis=-1).reshape(-1, 2).astype(np.float64)
    return {
        "duplicates": np.repeat(base, 3, axis=0),
        "integer_grid": grid + 1.0,  # +1: no zero vector under cosine
        "all_equal": np.ones((9, 4)),
        "two_points_equal": np.array([[1.0, 2.0], [1.0, 2.0]]),
    }


@pytest.mark.parametrize("name", list(tied_inputs()))
@pytest.mark.parametrize("method,metric", METHOD_METRIC)
def test_ties_give_valid_hierarchy_with_scipy_heights(name, method, metric):
    X = tied_inputs()[name]
    n = len(X)
    Z = linkage(X, method, metric)
    Zs = hierarchy.linkage(pdist(X, metric), method)
    assert_valid_hierarchy(Z, n)
    np.testing.assert_allclose(Z[:, 2], Zs[:, 2], rtol=1e-6, atol=1e-12)
    # Condensed input: scipy's tie-breaking, hence scipy's matrix exactly.
    np.testing.assert_array_equal(linkage(pdist(X, metric), method), Zs)


# --------------------------------------------------------------------------------------------
# fcluster


def test_fcluster_distance_equals_scipy_at_many_thresholds():
    rng = np.random.default_rng(5)
    X = gaussian(rng, 80, 6, np.float64)
    Zs = hierarchy.linkage(X, "average")
    for t in [-1.0, 0.0, *np.quantile(Zs[:, 2], np.linspace(0, 1, 25)), Zs[-1, 2] * 2]:
        np.testing.assert_array_equal(fcluster(Zs, t, "distance"), hierarchy.fcluster(Zs, t, "distance"))


@pytest.mark.parametrize("method", ["centroid", "median"])
def test_fcluster_on_non_monotone_scipy_matrices(method):
    """scipy's centroid/median matrices can have inversions: cuts use cophenetic (max) heights."""
    rng = np.random.default_rng(9)
    X = gaussian(rng, 60, 2, np.float64)
    Zs = hierarchy.linkage(X, method)
    for k in range(1, 61):
        np.testing.assert_array_equal(fcluster(Zs, k, "maxclust"), hierarchy.fcluster(Zs, k, "maxclust"))
    for t in np.quantile(Zs[:, 2], [0.1, 0.5, 0.9]):
        np.testing.assert_array_equal(fcluster(Zs, t), hierarchy.fcluster(Zs, t, "distance"))


def test_maxclust_with_tied_heights_and_large_t():
    Z = linkage(np.array([[0.0], [0.0], [0.0], [5.0]]), "single", "euclidean")
    assert fcluster(Z, 3, "maxclust").tolist() == [1, 1, 1, 2]  # cannot split the zero-height triple
    assert fcluster(Z, 4, "maxclust").tolist() == [1, 2, 3, 4]
    assert fcluster(Z, 100, "maxclust").tolist() == [1, 2, 3, 4]
    assert fcluster(Z, 0.0, "distance").tolist() == [1, 1, 1, 2]
    assert fcluster(Z, np.int64(2), "maxclust").dtype == np.int32


def test_fcluster_rejects_invalid_input():
    Z = linkage(np.arange(8.0).reshape(4, 2), "single", "euclidean")
    with pytest.raises(ValueError, match="Z: expected an"):
        fcluster(Z[:, :3], 2)
    with pytest.raises(ValueError, match="Z: expected an"):
        fcluster(np.zeros((0, 4)), 2)
    bad = Z.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        fcluster(bad, 1.0)
    bad = Z.copy()
    bad[0, 1] = 6  # cluster 6 is formed only at the last row
    with pytest.raises(ValueError, match="ids must exist"):
        fcluster(bad, 1.0)
    bad = Z.copy()
    bad[2, 0] = bad[1, 0]
    with pytest.raises(ValueError, match="Z: row 2"):
        fcluster(bad, 1.0)
    bad = Z.copy()
    bad[2, 3] = 7
    with pytest.raises(ValueError, match="size 7"):
        fcluster(bad, 1.0)
    for t in (0, 2.5, -1, True):
        with pytest.raises(ValueError, match="t: maxclust"):
            fcluster(Z, t, "maxclust")
    with pytest.raises(ValueError, match="t: threshold is NaN"):
        fcluster(Z, float("nan"))
    with pytest.raises(ValueError, match="criterion"):
        fcluster(Z, 2, "inconsistent")


# --------------------------------------------------------------------------------------------
# bad input to linkage


def test_linkage_rejects_bad_input():
    good = np.random.default_rng(0).standard_normal((5, 3))
    cases = [
        (np.zeros((0, 3)), "at least 2 observations"),
        (np.ones((1, 3)), "at least 2 observations"),
        (np.zeros(0), "condensed distance vector needs length"),
        (np.ones(4), "condensed distance vector needs length"),
        (np.ones((2, 2, 2)), "got a 3-D"),
        (np.array(3.0), "got a 0-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or infinity at row 0, column 1"),
        (np.array([[1.0, 2.0], [np.inf, 1.0]], dtype=np.float32), "NaN or infinity at row 1"),
        (np.array([1.0, np.nan, 2.0]), "NaN or infinity at position 1"),
        (np.array([1.0, -2.0, 2.0]), "negative distance at position 1"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
        (np.zeros((3, 0)), "dimension 0"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError, match=message):
            linkage(data, "average", "euclidean")
    with pytest.raises(ValueError, match="row 1 is a zero vector"):
        linkage(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), "average", "cosine")
    with pytest.raises(ValueError, match="not implemented; use scipy"):
        linkage(good, "centroid")
    with pytest.raises(ValueError, match="method: unknown"):
        linkage(good, "upgma")
    with pytest.raises(ValueError, match="ward.*requires.*euclidean"):
        linkage(good, "ward", "cosine")
    with pytest.raises(ValueError, match="metric: unknown"):
        linkage(good, "average", "manhattan")


def test_linkage_accepts_integer_bool_and_strided_input():
    grid = np.arange(24).reshape(6, 4)
    np.testing.assert_allclose(
        linkage(grid, "complete", "euclidean"), hierarchy.linkage(grid.astype(float), "complete")
    )
    X = np.random.default_rng(1).standard_normal((20, 10))
    strided, fortran = X[:, ::2], np.asfortranarray(X)
    np.testing.assert_allclose(linkage(strided), hierarchy.linkage(pdist(strided, "cosine"), "average"), rtol=1e-12)
    np.testing.assert_allclose(linkage(fortran), hierarchy.linkage(pdist(X, "cosine"), "average"), rtol=1e-12)
    b = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=bool)
    assert_valid_hierarchy(linkage(b, "average", "euclidean"), 4)


def test_linkage_does_not_modify_condensed_input():
    y = pdist(np.random.default_rng(2).standard_normal((30, 3)))
    before = y.copy()
    linkage(y, "average")
    np.testing.assert_array_equal(y, before)


# --------------------------------------------------------------------------------------------
# hypothesis properties

sizes = st.integers(min_value=2, max_value=60)
dims = st.integers(min_value=1, max_value=8)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(n=sizes, d=dims, seed=seeds, method=st.sampled_from(REDUCIBLE), grid=st.booleans())
def test_property_reducible_heights_monotone_and_tree_valid(n, d, seed, method, grid):
    """Holds with and without ties (integer grid data has many).

    With ties only the condensed path (same distances bit for bit as scipy) must reproduce
    scipy's heights; from vectors the GEMM distances may break exact ties differently.
    """
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 3, size=(n, d)).astype(float) if grid else rng.standard_normal((n, d))
    y = pdist(X)
    Zs = hierarchy.linkage(y, method)
    for Z in (linkage(X, method, "euclidean"), linkage(y, method)):
        assert_valid_hierarchy(Z, n)
        assert np.all(np.diff(Z[:, 2]) >= 0)
    np.testing.assert_array_equal(linkage(y, method), Zs)
    if not grid:
        np.testing.assert_allclose(linkage(X, method, "euclidean")[:, 2], Zs[:, 2], rtol=1e-6, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(n=sizes, d=dims, seed=seeds, method=st.sampled_from(METHODS), metric=st.sampled_from(["cosine", "euclidean"]))
def test_property_permutation_invariant_heights(n, d, seed, method, metric):
    if method == "ward":
        metric = "euclidean"
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + (3.0 if metric == "cosine" else 0.0)
    perm = rng.permutation(n)
    Z, Zp = linkage(X, method, metric), linkage(X[perm], method, metric)
    assert_valid_hierarchy(Zp, n)
    np.testing.assert_allclose(np.sort(Z[:, 2]), np.sort(Zp[:, 2]), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=2, max_value=40), seed=seeds, t=st.floats(min_value=-1, max_value=5, allow_nan=False))
def test_property_fcluster_distance_respects_threshold(n, seed, t):
    """Within a flat cluster every cophenetic distance is <= t; across clusters it is > t."""
    X = np.random.default_rng(seed).standard_normal((n, 2))
    Z = linkage(X, "average", "euclidean")
    labels = fcluster(Z, t)
    np.testing.assert_array_equal(labels, hierarchy.fcluster(Z, t, "distance"))
    coph = hierarchy.cophenet(Z)
    same = pdist(labels[:, None].astype(float)) == 0
    assert np.all(coph[same] <= t) and np.all(coph[~same] > t)


# --------------------------------------------------------------------------------------------
# real data


def test_real_embeddings_average_cosine(data_dir):
    """MiniLM embeddings of MMLU-Pro questions (the router's default clustering), vs scipy."""
    E = np.load(data_dir / "embeddings_all-MiniLM-L6-v2.npy", mmap_mode="r")
    X = np.asarray(E[::10][:1000], dtype=np.float64)
    Z = linkage(X, "average", "cosine")
    Zs = hierarchy.linkage(pdist(X, "cosine"), "average")
    assert_valid_hierarchy(Z, len(X))
    np.testing.assert_allclose(Z[:, 2], Zs[:, 2], rtol=1e-6, atol=1e-12)
    for k in (2, 3, 5, 10, 50):
        assert same_partition(fcluster(Z, k, "maxclust"), hierarchy.fcluster(Zs, k, "maxclust"))
    # float32 as stored: same hierarchy up to float32 resolution of the heights.
    Z32 = linkage(np.asarray(E[::10][:1000]), "average", "cosine")
    np.testing.assert_allclose(Z32[:, 2], Zs[:, 2], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# beyond 65,536 observations


@pytest.mark.slow
def test_single_linkage_beyond_65536_points():
    """n = 66,000 > 2^16 points on a line: single-linkage heights are exactly the sorted gaps."""
    rng = np.random.default_rng(8)
    n = 66_000
    x = rng.permutation(np.cumsum(rng.uniform(1.0, 2.0, size=n)))
    X = x[:, None]
    Z = linkage(X, "single", "euclidean")
    assert_valid_hierarchy(Z, n)
    gaps = np.diff(np.sort(x))
    np.testing.assert_allclose(Z[:, 2], np.sort(gaps), rtol=1e-12)
    labels = fcluster(Z, 2, "maxclust")
    cut = np.sort(x)[np.argmax(gaps)]
    assert same_partition(labels, (x > cut).astype(np.int32))
