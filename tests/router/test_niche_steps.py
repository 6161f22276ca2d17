"""Each step of niche discovery pinned on hand-built inputs (docs/algorithm.md#skill-niches), and the
niche step pinned end to end on a synthetic answer set whose within-subject niches are known
(:func:`cascal.simulate.niche_data.within_subject_niches`).

The hand-built subject: four tight groups of questions, each the proficiency set of one model
(agreement 0.8, one group per set: ``max_k=1``), so the seed centroids are the group directions:

- G0 = e0 and G1 (cosine distance 0.3 from G0) share the top-3 model set {0, 1, 2};
- G2 = e2 and G3 (cosine distance 0.5 from G2) have top-3 sets {1, 2, 3} and {0, 2, 3}
  (Jaccard 2/4 = 0.5).

With ``merge_threshold=0.15`` nothing merges; pruning at ``prune_jaccard=0.95`` folds G0 and G1 (same
top-3 set): 3 niches. Merging at 0.95 instead merges G0+G1 and G2+G3: 2 niches. No pruning: 4.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascal.router import CascalRouter
from cascal.router.clustering import ClusteringConfig
from cascal.router.niches import (
    NicheConfig,
    _top_sets,
    _unit_cosine_distances,
    assign_and_score,
    discover_subject_niches,
    merge_centroids,
    proficiency_weights,
    prune_niches,
    seed_centroids,
    spherical_means,
)
from cascal.simulate.niche_data import within_subject_niches

PER_GROUP = 12


def _direction(a: np.ndarray, b: np.ndarray, distance: float) -> np.ndarray:
    """The unit vector in span(a, b) at cosine distance ``distance`` from unit ``a`` (a ⟂ b)."""
    cos = 1.0 - distance
    return cos * a + np.sqrt(1.0 - cos**2) * b


def hand_built_subject():
    e = np.eye(6)
    centres = [e[0], _direction(e[0], e[1], 0.3), e[2], _direction(e[2], e[3], 0.5)]
    rng = np.random.default_rng(0)
    X = np.vstack([c + 0.003 * rng.normal(size=(PER_GROUP, 6)) for c in centres])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    group_scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.1],  # top-3 {0, 1, 2}
            [0.8, 0.9, 0.7, 0.1],  # top-3 {0, 1, 2}
            [0.1, 0.2, 0.9, 0.8],  # top-3 {1, 2, 3}
            [0.9, 0.1, 0.7, 0.8],  # top-3 {0, 2, 3}
        ]
    )
    group = np.repeat(np.arange(4), PER_GROUP)
    scores = group_scores[group]
    plurality = np.eye(4, dtype=bool)[group]  # model g is in the plurality on group g only
    agreement = np.full(len(X), 0.8)
    return X, scores, plurality, agreement, group


def niches_of(merge_threshold: float, prune_jaccard: float):
    X, scores, plurality, agreement, _ = hand_built_subject()
    config = NicheConfig(
        merge_threshold=merge_threshold,
        prune_jaccard=prune_jaccard,
        clustering=ClusteringConfig(max_k=1),
    )
    return discover_subject_niches("s", X, scores, plurality, agreement, config, np.random.default_rng(0))


def top3_sets(niches) -> set[frozenset[int]]:
    return {frozenset(np.argsort(-n.scores, kind="stable")[:3].tolist()) for n in niches}


def test_defaults_keep_three_niches_with_distinct_top3_sets():
    niches = niches_of(0.15, 0.95)
    assert len(niches) == 3
    assert top3_sets(niches) == {frozenset({0, 1, 2}), frozenset({1, 2, 3}), frozenset({0, 2, 3})}
    # G0 and G1 were folded into one niche of their 24 questions; G2 and G3 kept 12 each
    assert sorted(n.size for n in niches) == [PER_GROUP, PER_GROUP, 2 * PER_GROUP]


def test_merge_threshold_merges_centroids_closer_than_it():
    # 0.6 > 0.5 and 0.3: both pairs merge before pruning
    niches = niches_of(0.6, 0.95)
    assert len(niches) == 2
    assert top3_sets(niches) == {frozenset({0, 1, 2}), frozenset({0, 2, 3})}
    # 0.4 lies between the two pair distances: G0+G1 merge, G2 and G3 stay apart
    assert len(niches_of(0.4, 0.95)) == 3
    # merging at the prune threshold's value (0.95) is not the default
    assert len(niches_of(0.95, 0.95)) == 2


def test_prune_jaccard_folds_niches_whose_top3_sets_are_that_similar():
    # nothing merges; at 1.0 only identical top-3 sets fold (G0 + G1)
    assert len(niches_of(0.15, 1.0)) == 3
    # at 0.5 every pair of the 3 remaining sets (Jaccard 0.5 each) folds: one niche
    assert len(niches_of(0.15, 0.5)) == 1
    # a threshold no pair reaches (Jaccard is at most 1): no folding, every group its own niche
    assert len(niches_of(0.15, 1.01)) == 4


def test_niche_centres_follow_their_groups():
    X, _, _, _, group = hand_built_subject()
    niches = niches_of(0.15, 0.95)
    for g in (2, 3):  # the groups that stay alone: centre = spherical mean of the group
        mean = X[group == g].mean(axis=0)
        assert any(np.allclose(n.centroid, mean / np.linalg.norm(mean), atol=1e-5) for n in niches)


# ---------------------------------------------------------------------- the niche step end to end
@pytest.fixture(scope="module")
def synthetic_split():
    from cascal.data import NO_ANSWER
    from cascal.evaluation.protocol import make_split

    data = within_subject_niches(seed=0)
    split = make_split(data, data.model_names, 0)
    blank = split.train.with_gold(np.full(split.train.n_questions, NO_ANSWER, dtype=np.int8))
    return blank, split.test


def _top1(router: CascalRouter, train, test) -> float:
    router.fit(train.embeddings, train)
    first = router.route(test.embeddings, top_k=1).ranked[:, 0]
    return float((test.answers[np.arange(test.n_questions), first] == test.gold).mean())


def test_niches_inside_a_subject_are_found_and_used(synthetic_split):
    """In every synthetic subject one specialist is strong on half its topics and another on the
    other half, while every generalist beats both on the subject as a whole: per-subject routing
    gets about the generalists' 65 %, niche routing about the specialists' 85 % (measured 86.1 vs
    66.9 on this split; docs/ablations.md)."""
    train, test = synthetic_split
    full = CascalRouter(random_state=0)
    subject_only = CascalRouter(random_state=0, max_niches=1, merge_threshold=2.0)
    global_only = CascalRouter(random_state=0, fallback_distance=0.0, fallback_width=1e-9)
    full_top1 = _top1(full, train, test)
    assert full_top1 >= 0.80
    assert full_top1 >= _top1(subject_only, train, test) + 0.10
    assert full_top1 >= _top1(global_only, train, test) + 0.10
    # more than one niche per subject, and the subject-only variant has exactly one
    assert all(len(n) >= 2 for n in full.niches_.values())
    assert all(len(n) == 1 for n in subject_only.niches_.values())
    # the global-only variant ranks every query the same way
    ranked = global_only.route(test.embeddings, top_k=3).ranked
    assert (ranked == ranked[0]).all()


def test_each_topic_half_goes_to_its_specialist(synthetic_split):
    train, test = synthetic_split
    router = CascalRouter(random_state=0).fit(train.embeddings, train)
    first = router.route(test.embeddings, top_k=1).ranked[:, 0]
    ids = np.asarray(test.question_ids).astype(str)
    for s in range(4):
        for half, topics in enumerate(((0, 1), (2, 3))):
            rows = np.array([any(q.startswith(f"s{s}-t{t}-") for t in topics) for q in ids])
            specialist = (2 * s + half) % test.n_models
            assert np.mean(first[rows] == specialist) >= 0.9, (s, half)


# ---------------------------------------------------------------------- each step on hand-made inputs
def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_proficiency_weights_boundaries():
    plurality = np.array([[True, True], [True, False], [False, True], [True, True]])
    agreement = np.array([0.3, 0.29999, 0.6, 0.0])
    w = proficiency_weights(plurality, agreement, 0.3)
    np.testing.assert_array_equal(w, [[0.3, 0.3], [0.0, 0.0], [0.0, 0.6], [0.0, 0.0]])
    # min_consensus 0: any question with some agreement, never one with none
    w0 = proficiency_weights(plurality, agreement, 0.0)
    np.testing.assert_array_equal(w0, [[0.3, 0.3], [0.29999, 0.0], [0.0, 0.6], [0.0, 0.0]])


def test_seed_centroids_one_group_per_model():
    rng = np.random.default_rng(9)
    X = unit(rng.normal(size=(20, 5)))
    weights = np.zeros((20, 3))
    weights[:10, 0] = rng.uniform(0.5, 1.0, 10)
    weights[5:, 2] = rng.uniform(0.5, 1.0, 15)  # model 1 has no proficiency set
    cents, counts = seed_centroids(X, weights, ClusteringConfig(max_k=1), np.random.default_rng(0))
    assert cents.shape == (2, 5) and cents.dtype == np.float64
    np.testing.assert_array_equal(counts, [10.0, 15.0])
    np.testing.assert_allclose(cents[0], unit(weights[:10, 0] @ X[:10]), atol=1e-9)
    np.testing.assert_allclose(cents[1], unit(weights[5:, 2] @ X[5:]), atol=1e-9)


def test_seed_centroids_without_any_set():
    cents, counts = seed_centroids(np.eye(4), np.zeros((4, 2)), ClusteringConfig(), np.random.default_rng(0))
    assert cents.shape == (0, 4) and counts.shape == (0,)


def test_seed_centroids_subsample_large_sets_and_scale_the_counts():
    rng = np.random.default_rng(10)
    X = unit(rng.normal(size=(11, 4)))
    w = rng.uniform(0.5, 1.0, size=(11, 1))
    cents, counts = seed_centroids(X, w, ClusteringConfig(max_k=1, max_points=4), np.random.default_rng(0))
    sub = [0, 3, 7, 10]  # linspace(0, 10, 4) = 0, 3.33, 6.67, 10, rounded
    np.testing.assert_allclose(cents[0], unit(w[sub, 0] @ X[sub]), atol=1e-9)
    np.testing.assert_allclose(counts, [11.0])
    # exactly max_points members: every one is used
    cents, counts = seed_centroids(X[:4], w[:4], ClusteringConfig(max_k=1, max_points=4), np.random.default_rng(0))
    np.testing.assert_allclose(cents[0], unit(w[:4, 0] @ X[:4]), atol=1e-9)
    np.testing.assert_array_equal(counts, [4.0])


def test_seed_centroids_split_a_set_of_two_groups():
    rng = np.random.default_rng(11)
    a, b = np.eye(6)[0], np.eye(6)[3]
    X = unit(np.vstack([a + 0.02 * rng.normal(size=(12, 6)), b + 0.02 * rng.normal(size=(8, 6))]))
    w = np.ones((20, 1))
    config = ClusteringConfig(max_k=3, min_cluster_size=5)
    cents, counts = seed_centroids(X, w, config, np.random.default_rng(0))
    assert sorted(counts.tolist()) == [8.0, 12.0]
    for c, n in zip(cents, counts):
        members = slice(0, 12) if n == 12 else slice(12, 20)
        np.testing.assert_allclose(c, unit(X[members].sum(axis=0)), atol=1e-9)
    # the same set subsampled to 10 points: the counts are scaled back up to the 20 questions
    _, scaled = seed_centroids(
        X, w, ClusteringConfig(max_k=3, min_cluster_size=3, max_points=10), np.random.default_rng(0)
    )
    assert scaled.sum() == pytest.approx(20.0)
    assert sorted(scaled.tolist()) == pytest.approx([8.0, 12.0])


def test_unit_cosine_distances_float32():
    rng = np.random.default_rng(12)
    X = unit(rng.normal(size=(30, 7)))
    X = np.vstack([X, X[:10]]).astype(np.float32)  # duplicates: 1 - x·x rounds around 0
    D = _unit_cosine_distances(X)
    assert D.dtype == np.float32
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0.0) and D.min() >= 0.0
    want = 1.0 - X.astype(np.float64) @ X.astype(np.float64).T
    np.testing.assert_allclose(D, np.maximum(want, 0.0), atol=1e-6)
    assert np.all(D[np.arange(10), np.arange(30, 40)] <= 1e-6)


def test_spherical_means_weighted():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 1, 0, 2])
    w = np.array([1.0, 2.0, 3.0, 0.5])
    got = spherical_means(X, labels, 3, w)
    np.testing.assert_allclose(got, [unit([1.0, 3.0]), [0.0, 1.0], unit([1.0, 1.0])], atol=1e-12)
    # a group with no member stays a zero row
    np.testing.assert_array_equal(spherical_means(X, labels, 4, w)[3], [0.0, 0.0])


def test_merge_threshold_is_strict():
    e = np.eye(3)
    # e0 and e1 are at cosine distance exactly 1
    kept, counts = merge_centroids(e[:2], np.array([1.0, 3.0]), 1.0)
    np.testing.assert_array_equal(kept, e[:2])
    np.testing.assert_array_equal(counts, [1.0, 3.0])
    merged, counts = merge_centroids(e[:2], np.array([1.0, 3.0]), 1.0 + 1e-9)
    np.testing.assert_allclose(merged, [unit([1.0, 3.0, 0.0])], atol=1e-12)
    np.testing.assert_array_equal(counts, [4.0])


def test_merge_recomputes_the_merged_centre_distances():
    # a and b are close; their merged centre is close to c while a and b each are not
    a, b = unit([1.0, 0.1, 0.0]), unit([1.0, -0.1, 0.0])
    c = unit([1.0, 0.0, 0.25])
    dist = lambda u, v: 1.0 - float(u @ v)  # noqa: E731
    m = unit(a + b)
    threshold = 0.032
    assert dist(a, b) < threshold and dist(m, c) < threshold
    assert dist(a, c) > threshold and dist(b, c) > threshold
    merged, counts = merge_centroids(np.vstack([c, a, b]), np.array([2.0, 1.0, 1.0]), threshold)
    want = 2.0 * c + 2.0 * m  # (a + b) merged to m with count 2, then 2c + 2m
    np.testing.assert_allclose(merged, [unit(want)], atol=1e-12)
    np.testing.assert_array_equal(counts, [4.0])
    # a merged centre that moved away from a third centre no longer merges with it
    at = lambda angle: np.array([np.cos(angle), 0.0, np.sin(angle)])  # noqa: E731
    p, q, far = at(0.0), at(0.3), at(-0.4)
    assert dist(p, q) < dist(p, far) < 0.1
    merged, counts = merge_centroids(np.vstack([p, q, far]), np.array([1.0, 9.0, 1.0]), 0.1)
    pq = unit(p + 9.0 * q)
    assert dist(pq, far) > 0.1
    np.testing.assert_allclose(merged, [pq, far], atol=1e-12)
    np.testing.assert_array_equal(counts, [10.0, 1.0])


def test_merge_takes_the_closest_pair_first_and_keeps_input_order():
    # centroids 1 and 2 are the closest pair; 0 and 1 are close too but farther
    c0, c1, c2, c3 = unit([1.0, 0.3, 0.0, 0.0]), unit([1.0, 0.0, 0.0, 0.0]), unit([1.0, -0.1, 0.0, 0.0]), np.eye(4)[3]
    cents = np.vstack([c0, c1, c2, c3])
    before = cents.copy()
    counts = np.array([1.0, 1.0, 1.0, 5.0])
    merged, out = merge_centroids(cents, counts, 1.0 - float(c0 @ unit(c1 + c2)) - 1e-9)
    np.testing.assert_allclose(merged, [c0, unit(c1 + c2), c3], atol=1e-12)
    np.testing.assert_array_equal(out, [1.0, 2.0, 5.0])
    np.testing.assert_array_equal(cents, before)
    np.testing.assert_array_equal(counts, [1.0, 1.0, 1.0, 5.0])


def test_merge_ties_go_to_the_first_pair():
    # 0-1 and 1-2 at the same distance; merging 0 and 1 first moves the centre away from 2
    s = np.sqrt(0.5)
    c0, c1, c2 = np.array([1.0, 0.0]), np.array([s, s]), np.array([0.0, 1.0])
    merged, counts = merge_centroids(np.vstack([c0, c1, c2]), np.array([1.0, 1.0, 1.0]), 0.3)
    np.testing.assert_allclose(merged, [unit(c0 + c1), c2], atol=1e-12)
    np.testing.assert_array_equal(counts, [2.0, 1.0])


def test_merge_of_one_or_no_centroid():
    merged, counts = merge_centroids(np.eye(3)[:1], np.array([2.0]), 2.0)
    np.testing.assert_array_equal(merged, np.eye(3)[:1])
    np.testing.assert_array_equal(counts, [2.0])
    merged, counts = merge_centroids(np.zeros((0, 3)), np.zeros(0), 2.0)
    assert merged.shape == (0, 3) and counts.shape == (0,)


def test_assign_and_score_drops_empty_centroids():
    nan = np.nan
    cents = np.eye(3)
    X = unit(np.array([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0], [1.0, 0.0, 0.1], [0.1, 0.0, 1.0]]))
    scores = np.array([[0.2, nan], [0.5, nan], [0.4, 0.7], [0.9, nan]])
    labels, kept, niche_scores = assign_and_score(X, scores, cents)
    np.testing.assert_array_equal(labels, [0, 1, 0, 1])
    np.testing.assert_array_equal(kept, cents[[0, 2]])
    np.testing.assert_allclose(niche_scores, [[0.3, 0.7], [0.7, 0.0]], atol=1e-12)


def test_top_sets_ties_go_to_the_lower_column():
    sets = _top_sets(np.array([[0.5, 0.5, 0.5, 0.1], [0.1, 0.2, 0.2, 0.9]]), 2)
    assert sets == [frozenset({0, 1}), frozenset({3, 1})]
    # a larger pool with many tied models: still the lowest columns among the tied
    tied = np.full((1, 17), 0.5)
    tied[0, 16] = 0.9
    assert _top_sets(tied, 3) == [frozenset({16, 0, 1})]


def _prune(X, scores, labels, jaccard=0.95, top=3):
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    cents = unit(np.vstack([X[labels == c].mean(axis=0) for c in range(k)]))
    niche_scores = np.vstack([np.nanmean(scores[labels == c], axis=0) for c in range(k)])
    return prune_niches(X, scores, labels, cents, niche_scores, jaccard, top)


def test_prune_equal_sizes_fold_the_later_niche():
    e = np.eye(4)
    X = e[[0, 0, 1, 1]] + 0.01 * np.eye(4)[[2, 3, 2, 3]]
    X = unit(X)
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1], [0.7, 0.9, 0.8, 0.2], [0.7, 0.9, 0.8, 0.2]])
    labels, cents, ns = _prune(X, scores, [0, 0, 1, 1])
    np.testing.assert_array_equal(labels, [0, 0, 0, 0])
    np.testing.assert_allclose(cents, [unit(X.mean(axis=0))], atol=1e-12)
    np.testing.assert_allclose(ns, [scores.mean(axis=0)], atol=1e-12)
    # the larger niche keeps its place: here the second one
    labels, cents, _ = _prune(X[[0, 2, 3]], scores[[0, 2, 3]], [0, 1, 1])
    np.testing.assert_array_equal(labels, [0, 0, 0])


def test_prune_keeps_the_larger_niche_and_renumbers():
    X = unit(np.eye(4)[[0, 1, 1, 1, 2, 3]] + 0.01)
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.1],  # niche 0: top-3 {0, 1, 2}
            [0.1, 0.9, 0.8, 0.7],  # niche 1: top-3 {1, 2, 3}
            [0.1, 0.9, 0.8, 0.7],
            [0.1, 0.9, 0.8, 0.7],
            [0.8, 0.9, 0.1, 0.7],  # niche 2: top-3 {0, 1, 3}
            [0.2, 0.7, 0.8, 0.9],  # niche 3: top-3 {1, 2, 3}, folds into niche 1 (3 questions)
        ]
    )
    labels, cents, ns = _prune(X, scores, [0, 1, 1, 1, 2, 3])
    np.testing.assert_array_equal(labels, [0, 1, 1, 1, 2, 1])
    assert cents.shape == (3, 4)
    np.testing.assert_allclose(cents[1], unit(X[[1, 2, 3, 5]].mean(axis=0)), atol=1e-12)
    np.testing.assert_allclose(cents[2], unit(X[4]), atol=1e-12)
    np.testing.assert_allclose(ns[1], scores[[1, 2, 3, 5]].mean(axis=0), atol=1e-12)
    # at Jaccard 0.5 niche 0 ({0,1,2}) and 2 ({0,1,3}) fold as well, then all: one niche
    labels, cents, ns = _prune(X, scores, [0, 1, 1, 1, 2, 3], jaccard=0.5)
    np.testing.assert_array_equal(labels, np.zeros(6))
    np.testing.assert_allclose(ns, [scores.mean(axis=0)], atol=1e-12)
    # a threshold just above 0.5: only the identical sets fold
    labels, _, _ = _prune(X, scores, [0, 1, 1, 1, 2, 3], jaccard=0.5 + 1e-9)
    assert labels.max() == 2
    # top-1 sets: niches 1, 2, 3 ({1}, {1}, {3}) -> 1 and 2 fold (the larger, niche 1, stays)
    labels, _, _ = _prune(X, scores, [0, 1, 1, 1, 2, 3], top=1)
    np.testing.assert_array_equal(labels, [0, 1, 1, 1, 1, 2])


def test_prune_folds_the_most_similar_then_closest_pair_first():
    # niches 0, 1, 2 share a top-3 set; 1 and 2 are the closest pair and fold first, then 0 joins
    # them (the folded niche is larger); the order shows in which centroid survives first
    X = unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.2], [0.0, 1.0, 0.3]]))
    scores = np.tile([0.9, 0.8, 0.7, 0.1], (4, 1))
    labels = np.array([0, 1, 1, 2])
    cents = unit(np.vstack([X[0], X[1:3].mean(axis=0), X[3]]))
    ns = np.tile([0.9, 0.8, 0.7, 0.1], (3, 1))
    out_labels, out_cents, _ = prune_niches(X, scores, labels, cents, ns, 1.0, 3)
    np.testing.assert_array_equal(out_labels, np.zeros(4))
    np.testing.assert_allclose(out_cents, [unit(X.mean(axis=0))], atol=1e-12)
    # stop after the first fold: a fourth niche with a different set survives, and the first fold
    # was 1 + 2 (closest) into niche 1 (2 questions), not 0 + 1
    X4 = np.vstack([X, [[0.0, 0.0, 1.0]]])
    scores4 = np.vstack([scores, [[0.1, 0.2, 0.3, 0.9]]])
    labels4 = np.array([0, 1, 1, 2, 3])
    cents4 = np.vstack([cents, [[0.0, 0.0, 1.0]]])
    ns4 = np.vstack([ns, [[0.1, 0.2, 0.3, 0.9]]])
    out_labels, out_cents, _ = prune_niches(X4, scores4, labels4, cents4, ns4, 1.0, 3)
    np.testing.assert_array_equal(out_labels, [0, 0, 0, 0, 1])
    np.testing.assert_allclose(out_cents[1], [0.0, 0.0, 1.0])


def test_prune_does_not_change_its_inputs():
    X = unit(np.eye(3)[[0, 1]] + 0.01)
    scores = np.array([[0.9, 0.5, 0.1, 0.0], [0.9, 0.5, 0.1, 0.0]])
    labels = np.array([0, 1])
    cents = X.copy()
    ns = scores.copy()
    prune_niches(X, scores, labels, cents, ns, 0.95, 3)
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(cents, X)
    np.testing.assert_array_equal(ns, scores)


def test_subject_without_consensus_gets_one_centred_niche():
    rng = np.random.default_rng(13)
    X = unit(rng.normal(size=(9, 4)))
    scores = rng.uniform(size=(9, 3))
    scores[:, 2] = np.nan
    plurality = np.ones((9, 3), dtype=bool)
    agreement = np.full(9, 0.49)
    niches = discover_subject_niches("law", X, scores, plurality, agreement, NicheConfig(), np.random.default_rng(0))
    assert len(niches) == 1
    (niche,) = niches
    assert niche.subject == "law" and niche.size == 9 and niche.centroid.dtype == np.float32
    np.testing.assert_allclose(niche.centroid, unit(X.mean(axis=0)), atol=1e-6)
    np.testing.assert_allclose(niche.scores, [scores[:, 0].mean(), scores[:, 1].mean(), 0.0], atol=1e-12)


def test_discovered_niches_follow_the_config():
    """Two proficiency sets far apart: two niches of the right sizes; merge_threshold above their
    distance: one; the models' scores decide the niche scores."""
    rng = np.random.default_rng(14)
    e = np.eye(5)
    X = unit(np.vstack([e[0] + 0.02 * rng.normal(size=(7, 5)), e[1] + 0.02 * rng.normal(size=(5, 5))]))
    group = np.repeat([0, 1], [7, 5])
    scores = np.where(group[:, None] == np.arange(4)[None, :], 1.0, 0.0)  # model g is right on group g
    scores[:, 2] = 0.5
    plurality = scores == 1.0
    agreement = np.full(12, 0.6)
    config = NicheConfig(prune_jaccard=1.0, prune_top=1, clustering=ClusteringConfig(max_k=1))
    niches = discover_subject_niches("s", X, scores, plurality, agreement, config, np.random.default_rng(0))
    assert sorted(n.size for n in niches) == [5, 7]
    for n in niches:
        g = 0 if n.size == 7 else 1
        np.testing.assert_allclose(n.centroid, unit(X[group == g].mean(axis=0)), atol=1e-6)
        np.testing.assert_allclose(n.scores, scores[group == g].mean(axis=0), atol=1e-12)

    def sizes(config: NicheConfig) -> list[int]:
        found = discover_subject_niches("s", X, scores, plurality, agreement, config, np.random.default_rng(0))
        return sorted(n.size for n in found)

    one = ClusteringConfig(max_k=1)
    # min_consensus above the agreement: no set, one niche of all questions
    assert sizes(NicheConfig(min_consensus=0.61, clustering=one)) == [12]
    # merging everything closer than cosine distance 1.5: one niche
    assert sizes(NicheConfig(merge_threshold=1.5, clustering=one)) == [12]
    # top-2 sets {0, 2} and {1, 2} (Jaccard 1/3): kept apart at 0.34, folded at 0.33
    assert sizes(NicheConfig(prune_jaccard=0.34, prune_top=2, clustering=one)) == [5, 7]
    assert sizes(NicheConfig(prune_jaccard=0.33, prune_top=2, clustering=one)) == [12]


def test_merged_centre_is_a_unit_vector_whatever_the_counts():
    a, b = unit([1.0, 0.1, 0.0]), unit([1.0, -0.1, 0.0])
    merged, counts = merge_centroids(np.vstack([a, b]), np.array([0.25, 0.125]), 0.15)
    np.testing.assert_allclose(merged, [unit(0.25 * a + 0.125 * b)], atol=1e-12)
    np.testing.assert_array_equal(counts, [0.375])


def _one_question_niches(centres: np.ndarray, scores: np.ndarray, labels) -> tuple:
    labels = np.asarray(labels)
    X = unit(centres[labels])
    k = int(labels.max()) + 1
    cents = unit(np.vstack([X[labels == c].mean(axis=0) for c in range(k)]))
    niche_scores = np.vstack([scores[labels == c].mean(axis=0) for c in range(k)])
    return X, cents, niche_scores


def test_prune_folded_niche_takes_the_place_of_the_larger_or_the_earlier():
    """Niche 0 (one question) and niche 2 (two questions) share their top-3 set, niche 1 does not:
    niche 0 joins niche 2, which stays after niche 1; with equal sizes the earlier one stays."""
    e = np.eye(3)
    a = np.array([0.9, 0.8, 0.7, 0.1])
    other = np.array([0.1, 0.2, 0.3, 0.9])
    scores = np.vstack([a, other, a, a])
    X, cents, ns = _one_question_niches(e, scores, [0, 1, 2, 2])
    labels, out, _ = prune_niches(X, scores, np.array([0, 1, 2, 2]), cents, ns, 0.95, 3)
    np.testing.assert_array_equal(labels, [1, 0, 1, 1])
    np.testing.assert_allclose(out[0], e[1], atol=1e-12)
    # equal sizes: niche 0 stays in front, niche 2 folds into it
    X, cents, ns = _one_question_niches(e, scores[:3], [0, 1, 2])
    labels, out, _ = prune_niches(X, scores[:3], np.array([0, 1, 2]), cents, ns, 0.95, 3)
    np.testing.assert_array_equal(labels, [0, 1, 0])
    np.testing.assert_allclose(out[1], e[1], atol=1e-12)


def test_prune_full_ties_fold_the_first_pair():
    """Three niches, every pair at Jaccard 0.5 and the same centroid distance: the first pair (0, 1)
    folds; its joined scores rank {0, 1, 4} on top, too far from niche 2's set to fold again."""
    scores = np.array(
        [
            [0.9, 0.85, 0.8, 0.0, 0.7],  # {0, 1, 2}
            [0.9, 0.85, 0.0, 0.8, 0.7],  # {0, 1, 3}
            [0.9, 0.0, 0.8, 0.85, 0.1],  # {0, 2, 3}
        ]
    )
    X, cents, ns = _one_question_niches(np.eye(3), scores, [0, 1, 2])
    labels, out, out_scores = prune_niches(X, scores, np.array([0, 1, 2]), cents, ns, 0.5, 3)
    np.testing.assert_array_equal(labels, [0, 0, 1])
    np.testing.assert_allclose(out_scores, [scores[:2].mean(axis=0), scores[2]], atol=1e-12)


def test_prune_in_one_dimension():
    X = np.array([[1.0], [1.0], [-1.0]])
    scores = np.array([[0.9, 0.8, 0.7, 0.1]] * 3)
    labels = np.array([0, 0, 1])
    cents = np.array([[1.0], [-1.0]])
    out_labels, out, _ = prune_niches(X, scores, labels, cents, scores[:2].copy(), 0.95, 3)
    np.testing.assert_array_equal(out_labels, [0, 0, 0])
    np.testing.assert_allclose(out, [[1.0]])
