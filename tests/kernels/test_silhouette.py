"""best_silhouette_cut and weighted_silhouettes: parity with the scipy/numpy references on random
and adversarial sets, hand-computed values, properties, errors, and the router's use of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_score

import cascal.kernels as K
import cascal.reference as R

METHODS = ("ward", "average", "complete", "weighted", "single")


def unit_rows(rng: np.random.Generator, n: int, d: int = 16, topics: int = 4, noise: float = 0.6) -> np.ndarray:
    centres = rng.normal(size=(topics, d))
    X = centres[rng.integers(0, topics, n)] + noise * rng.normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def cosine_distances(X: np.ndarray, dtype=np.float64) -> np.ndarray:
    D = (1.0 - X @ X.T).astype(dtype)
    D = np.maximum(np.minimum(D, D.T), 0)
    np.fill_diagonal(D, 0)
    return np.ascontiguousarray(D)


def cut_both(D, w, **kw):
    return K.best_silhouette_cut(D, w, **kw), R.best_silhouette_cut(D, w, **kw)


# ---------------------------------------------------------------- weighted_silhouettes


def test_silhouettes_by_hand():
    # points 0,1 in group 0 and 2 in group 1 on a line: d(0,1)=1, d(0,2)=3, d(1,2)=2
    D = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    w = np.array([1.0, 3.0, 2.0])
    s0, s1, s2 = (3.0 - 1.0) / 3.0, (2.0 - 1.0) / 2.0, 0.0  # point 2 is alone: 0
    (got,) = K.weighted_silhouettes(D, [np.array([0, 0, 1])], w)
    assert got == pytest.approx((1 * s0 + 3 * s1 + 2 * s2) / 6, abs=1e-15)
    # over anchors 1 and 2 only
    (got,) = K.weighted_silhouettes(D, [np.array([0, 0, 1])], w, anchors=np.array([1, 2]))
    assert got == pytest.approx((3 * s1 + 2 * s2) / 5, abs=1e-15)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_unit_weight_silhouette_equals_sklearn(rng, k):
    D = cosine_distances(unit_rows(rng, 90))
    labels = np.arange(90) % k
    rng.shuffle(labels)
    (got,) = K.weighted_silhouettes(D, [labels], np.ones(90))
    assert got == pytest.approx(silhouette_score(D, labels, metric="precomputed"), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silhouettes_match_reference_for_nested_and_crossing_partitions(rng, dtype):
    n = 150
    D = cosine_distances(unit_rows(rng, n), dtype)
    Z = hierarchy.linkage(squareform(D.astype(np.float64), checks=False), "average")
    nested = [hierarchy.fcluster(Z, k, "maxclust") - 1 for k in (2, 3, 5, 8)]  # cuts of one tree
    crossing = [rng.integers(0, 4, n), np.arange(n) % 3]
    w = rng.uniform(0.1, 2.0, n)
    anchors = np.sort(rng.choice(n, 60, replace=False))
    for parts in (nested, crossing, nested + crossing):
        parts = [np.unique(p, return_inverse=True)[1] for p in parts]  # groups 0..k-1, none empty
        got = K.weighted_silhouettes(D, parts, w, anchors)
        want = R.weighted_silhouettes(D, parts, w, anchors)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        # scoring several at once equals scoring each alone
        alone = [K.weighted_silhouettes(D, [p], w, anchors)[0] for p in parts]
        np.testing.assert_allclose(got, alone, rtol=1e-12, atol=1e-15)


def test_silhouette_of_identical_points_is_zero():
    D = np.zeros((12, 12))
    assert K.weighted_silhouettes(D, [np.arange(12) % 2], np.ones(12)) == [0.0]


# ---------------------------------------------------------------- best_silhouette_cut


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(6))
def test_cut_matches_reference_on_random_float64_sets(method, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    D = cosine_distances(unit_rows(rng, n, topics=int(rng.integers(1, 6))))
    w = rng.uniform(0.05, 1.0, n)
    kw = dict(
        method=method,
        max_k=int(rng.integers(2, 8)),
        min_cluster_size=int(rng.integers(1, 15)),
        min_silhouette=float(rng.uniform(-0.2, 0.3)),
        anchors=np.unique(rng.integers(0, n, int(rng.integers(1, n + 1)))),
    )
    got, want = cut_both(D, w, **kw)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_cut_matches_reference_on_float32_sets_of_the_fits_shape(rng):
    """float32 distances of 256 points in 384 dimensions, the fit's defaults."""
    split = 0
    for _ in range(8):
        D = cosine_distances(unit_rows(rng, 256, d=384, topics=3, noise=0.08), np.float32)
        w = rng.uniform(0.3, 1.0, 256)
        anchors = np.unique(np.linspace(0, 255, 200).round().astype(np.int64))
        got, want = cut_both(D, w, anchors=anchors)
        np.testing.assert_array_equal(got, want)
        split += got.max() > 0
    assert split == 8  # three topics: every set is split, so the cut choice was exercised


def test_well_separated_bundles_come_out_as_their_groups(rng):
    truth = rng.permutation(np.arange(90) % 3)
    X = np.eye(16)[truth] + 0.05 * rng.normal(size=(90, 16))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = K.best_silhouette_cut(cosine_distances(X), np.ones(90), min_cluster_size=5)
    assert labels.max() == 2
    # the same partition as the topics, up to naming
    assert len({(a, b) for a, b in zip(labels, truth)}) == 3


def test_a_set_below_twice_the_size_floor_stays_one_group(rng):
    D = cosine_distances(unit_rows(rng, 19))
    labels = K.best_silhouette_cut(D, np.ones(19), min_cluster_size=10)
    np.testing.assert_array_equal(labels, np.zeros(19, dtype=np.int64))


def test_a_high_silhouette_floor_keeps_one_group(rng):
    D = cosine_distances(unit_rows(rng, 80, topics=2, noise=0.05))
    assert K.best_silhouette_cut(D, np.ones(80), min_cluster_size=5).max() == 1
    assert K.best_silhouette_cut(D, np.ones(80), min_cluster_size=5, min_silhouette=0.9999).max() == 0


@pytest.mark.parametrize("method", METHODS)
def test_adversarial_ties_match_reference(method):
    # duplicated points (zero distances, tied heights), all-identical points, a lattice of ties
    blocks = np.repeat(np.eye(4), 6, axis=0)  # 4 groups of 6 identical unit vectors
    lattice = np.array([[np.cos(a), np.sin(a)] for a in np.linspace(0, np.pi, 30)])
    for X in (blocks, np.ones((15, 3)) / np.sqrt(3), lattice):
        D = cosine_distances(X)
        for mcs in (1, 3, 6):
            got, want = cut_both(D, np.ones(len(X)), method=method, min_cluster_size=mcs)
            np.testing.assert_array_equal(got, want)


def test_tied_top_merges_still_split_identical_blocks():
    """4 blocks of identical points: every cut into 2 or 3 groups ties into fewer (here one) group,
    which is no split; the cut into 4 is perfect (silhouette 1) and wins."""
    X = np.repeat(np.eye(4), 6, axis=0)
    labels = K.best_silhouette_cut(cosine_distances(X), np.ones(24), min_cluster_size=3)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 6))
    assert K.weighted_silhouettes(cosine_distances(X), [np.zeros(24, dtype=np.int64)], np.ones(24)) == [0.0]


def test_small_negative_rounding_counts_as_zero_distance(rng):
    D = cosine_distances(unit_rows(rng, 60))
    noisy = D.copy()
    noisy[D == 0] = -1e-9  # what 1 - x.x can give for unit rows
    np.testing.assert_array_equal(
        K.best_silhouette_cut(noisy, np.ones(60), min_cluster_size=5),
        K.best_silhouette_cut(D, np.ones(60), min_cluster_size=5),
    )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 80),
    max_k=st.integers(0, 9),
    min_cluster_size=st.integers(0, 12),
    scale=st.floats(0.01, 100.0),
)
def test_cut_properties(seed, n, max_k, min_cluster_size, scale):
    rng = np.random.default_rng(seed)
    D = cosine_distances(unit_rows(rng, n, topics=3, noise=0.3))
    w = rng.uniform(0.1, 1.0, n)
    kw = dict(max_k=max_k, min_cluster_size=min_cluster_size, min_silhouette=0.0)
    labels = K.best_silhouette_cut(D, w, **kw)
    k = int(labels.max()) + 1
    # labels are 0..k-1 in order of first appearance
    firsts = [int(np.flatnonzero(labels == g)[0]) for g in range(k)]
    assert firsts == sorted(firsts) and labels[0] == 0
    if k > 1:
        assert k <= max_k
        assert np.bincount(labels).min() >= max(min_cluster_size, 1)
    # the silhouette is a weighted mean: scaling every weight changes nothing
    np.testing.assert_array_equal(K.best_silhouette_cut(D, w * scale, **kw), labels)
    np.testing.assert_array_equal(R.best_silhouette_cut(D, w, **kw), labels)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "change, arg",
    [
        (lambda D, w, a: (D[:, :-1], w, a), "distances"),
        (lambda D, w, a: (np.where(np.eye(len(D)) > 0, np.nan, D), w, a), "distances"),
        (lambda D, w, a: (D, w[:-1], a), "weights"),
        (lambda D, w, a: (D, np.where(np.arange(len(w)) == 3, 0.0, w), a), "weights"),
        (lambda D, w, a: (D, np.where(np.arange(len(w)) == 3, np.inf, w), a), "weights"),
        (lambda D, w, a: (D, w, np.array([0, len(D)])), "anchors"),
        (lambda D, w, a: (D, w, np.array([-1])), "anchors"),
        (lambda D, w, a: (D, w, np.array([], dtype=np.int64)), "anchors"),
        (lambda D, w, a: (D, w, np.array([0.5])), "anchors"),
        (lambda D, w, a: (D.astype(complex), w, a), "distances"),
    ],
)
def test_bad_input_names_the_argument(rng, change, arg):
    D = cosine_distances(unit_rows(rng, 30))
    bad_D, bad_w, bad_a = change(D, np.ones(30), np.arange(30))
    with pytest.raises(ValueError, match=arg):
        K.best_silhouette_cut(bad_D, bad_w, anchors=bad_a, min_cluster_size=3)


def test_bad_options_and_partitions_name_the_argument(rng):
    D = cosine_distances(unit_rows(rng, 30))
    w = np.ones(30)
    with pytest.raises(ValueError, match="method"):
        K.best_silhouette_cut(D, w, method="centroid")
    with pytest.raises(ValueError, match="max_k"):
        K.best_silhouette_cut(D, w, max_k=-1)
    with pytest.raises(ValueError, match="min_silhouette"):
        K.best_silhouette_cut(D, w, min_silhouette=float("nan"))
    with pytest.raises(ValueError, match="partitions"):
        K.weighted_silhouettes(D, [np.arange(30) - 1], w)
    with pytest.raises(ValueError, match="partitions"):
        K.weighted_silhouettes(D, [np.zeros(29, dtype=np.int64)], w)


# ---------------------------------------------------------------- the router uses it


def test_fit_with_the_reference_cut_finds_the_same_niches():
    from cascal.bench.cases.fit import make_fit_input
    from cascal.router import CascalRouter

    data = make_fit_input(6_000, 6)
    fast = CascalRouter(random_state=0).fit(data.embeddings, data.responses)
    saved = K.best_silhouette_cut
    K.best_silhouette_cut = R.best_silhouette_cut
    try:
        slow = CascalRouter(random_state=0).fit(data.embeddings, data.responses)
    finally:
        K.best_silhouette_cut = saved
    assert sum(len(v) for v in fast.niches_.values()) > len(fast.niches_)  # some subject was split
    np.testing.assert_array_equal(fast.centroids_, slow.centroids_)
    np.testing.assert_array_equal(fast.centroid_scores_, slow.centroid_scores_)
