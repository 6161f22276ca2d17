"""Baselines: label-free routers never read the key, query-answer routers match brute-force
references, Smoothie's closed form matches the triplet loop, and bad input is refused."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cascal.baselines import (
    BestSingleConsensus,
    BestSingleGold,
    ClusterRank,
    KNNCorrectness,
    RandomRouter,
    SmoothieTrain,
    oracle_correct,
)
from cascal.baselines._compute import consensus_scores, cosine_neighbors
from cascal.baselines.label_free import pairwise_squared_distances, triplet_noise_estimates
from cascal.data import NO_ANSWER, NOT_ASKED, ResponseMatrix
from cascal.router.base import NotFittedError

LABEL_FREE = [lambda: RandomRouter(random_state=3), BestSingleConsensus, lambda: SmoothieTrain(n_neighbors=7)]
QUERY_ANSWER = [lambda: KNNCorrectness(k=5), lambda: ClusterRank(n_clusters=4, random_state=0), BestSingleGold]


def random_world(rng: np.random.Generator, n: int = 120, m: int = 5, d: int = 8, n_options: int = 4):
    """Random embeddings and responses with unparsable and not-asked cells and a random gold."""
    answers = rng.integers(0, n_options, size=(n, m))
    answers[rng.random((n, m)) < 0.1] = NO_ANSWER
    answers[rng.random((n, m)) < 0.05] = NOT_ASKED
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(n, n_options),
        subjects=rng.choice(["a", "b", "c"], size=n),
        model_names=[f"m{i}" for i in range(m)],
        gold=rng.integers(0, n_options, size=n),
    )
    return rng.normal(size=(n, d)), responses


def two_niche_world(rng: np.random.Generator, n_per: int = 60):
    """Two well separated blobs; model 0 is always right on blob 0, model 1 on blob 1, model 2
    always wrong-ish (random). Gold is option 0 everywhere."""
    centers = np.zeros((2, 6))
    centers[0, 0] = centers[1, 1] = 1.0
    emb = np.concatenate(
        [centers[0] + 0.05 * rng.normal(size=(n_per, 6)), centers[1] + 0.05 * rng.normal(size=(n_per, 6))]
    )
    blob = np.repeat([0, 1], n_per)
    answers = np.zeros((2 * n_per, 3), dtype=int)
    answers[blob == 1, 0] = 1  # model 0 wrong on blob 1
    answers[blob == 0, 1] = 2  # model 1 wrong on blob 0
    answers[:, 2] = rng.integers(1, 4, size=2 * n_per)  # model 2 always wrong
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(2 * n_per, 4),
        subjects=np.full(2 * n_per, "s"),
        model_names=["a", "b", "c"],
        gold=np.zeros(2 * n_per, dtype=int),
    )
    return emb, responses, blob


# ---------------------------------------------------------------------------- label-free: no key
@pytest.mark.parametrize("make", LABEL_FREE)
def test_label_free_routers_ignore_the_key(make, rng):
    emb, responses = random_world(rng)
    other = responses.with_gold((responses.gold + 1) % 4)
    blank = responses.with_gold(np.full(responses.n_questions, -1))
    queries = rng.normal(size=(30, emb.shape[1]))
    reference = make().fit(emb, responses).route_scores(queries)
    assert not make().uses_answer_key
    np.testing.assert_array_equal(make().fit(emb, other).route_scores(queries), reference)
    np.testing.assert_array_equal(make().fit(emb, blank).route_scores(queries), reference)


@pytest.mark.parametrize("make", QUERY_ANSWER)
def test_query_answer_routers_need_a_key(make, rng):
    emb, responses = random_world(rng)
    router = make()
    assert router.uses_answer_key
    with pytest.raises(ValueError, match="responses.gold"):
        router.fit(emb, responses.with_gold(np.full(responses.n_questions, -1)))


@pytest.mark.parametrize("make", QUERY_ANSWER)
def test_query_answer_routers_follow_the_key(make, rng):
    emb, responses, blob = two_niche_world(rng)
    # a key that copies model 2's answers makes model 2 the only "right" model everywhere
    copied = responses.with_gold(responses.answers[:, 2])
    assert (make().fit(emb, responses).route(emb, top_k=1).ranked[:, 0] != 2).all()
    assert (make().fit(emb, copied).route(emb, top_k=1).ranked[:, 0] == 2).all()


def test_random_router_is_deterministic_per_seed(rng):
    emb, responses = random_world(rng)
    a = RandomRouter(random_state=7).fit(emb, responses).route_scores(emb[:10])
    b = RandomRouter(random_state=7).fit(emb, responses).route_scores(emb[:10])
    c = RandomRouter(random_state=8).fit(emb, responses).route_scores(emb[:10])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_best_single_consensus_hand_example():
    # one 2-option question, answers A, A, B, no logprobs: every vote weighs sigmoid(0) = 0.5, so
    # votes are A: 1.0, B: 0.5 and p(A) = 1 / (1 + e^-0.5); question 2: answers B, B, unparsable.
    responses = ResponseMatrix(
        answers=np.array([[0, 0, 1], [1, 1, NO_ANSWER]]),
        n_options=np.array([2, 2]),
        subjects=np.array(["s", "s"]),
        model_names=["x", "y", "z"],
    )
    p_a = 1.0 / (1.0 + math.exp(-0.5))
    p_b2 = 1.0 / (1.0 + math.exp(-1.0))  # votes B: 1.0, A: 0
    scores = consensus_scores(responses)
    np.testing.assert_allclose(scores, [[p_a, p_a, 1 - p_a], [p_b2, p_b2, 0.0]], rtol=1e-6)
    router = BestSingleConsensus().fit(np.eye(2, 3), responses)
    np.testing.assert_allclose(router.global_scores_, [(p_a + p_b2) / 2, (p_a + p_b2) / 2, (1 - p_a) / 2], rtol=1e-6)
    assert router.route(np.eye(2, 3), top_k=3).ranked.tolist() == [[0, 1, 2], [0, 1, 2]]


# ---------------------------------------------------------------------------- Smoothie
def test_pairwise_squared_distances_hand_example():
    answers = np.array([[0, 0, 1, NO_ANSWER, NOT_ASKED]])
    d = pairwise_squared_distances(answers)[0]
    nan = np.nan
    expected = np.array(
        [
            [0, 0, 2, 2, nan],
            [0, 0, 2, 2, nan],
            [2, 2, 0, 2, nan],
            [2, 2, 2, 0, nan],  # an unparsable answer agrees with nobody (itself: 0 on the diagonal)
            [nan, nan, nan, nan, nan],
        ]
    )
    np.testing.assert_array_equal(d, expected)


def _triplet_loop(d: np.ndarray) -> np.ndarray:
    m = d.shape[0]
    out = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        vals = [(d[i, j] + d[i, k] - d[j, k]) / 2 for j, k in itertools.combinations(others, 2)]
        out[i] = np.mean(vals)
    return out


@settings(max_examples=60, deadline=None)
@given(m=st.integers(3, 9), data=st.data())
def test_triplet_closed_form_matches_the_loop(m, data):
    upper = data.draw(arrays(np.float64, (m, m), elements=st.floats(0, 2, allow_nan=False)))
    d = np.triu(upper, 1)
    d = d + d.T
    np.testing.assert_allclose(triplet_noise_estimates(d), _triplet_loop(d), atol=1e-12)


def test_triplet_recovers_the_noise_of_an_additive_model():
    delta = np.array([0.1, 0.4, 0.9, 1.6])
    d = delta[:, None] + delta[None, :]
    np.fill_diagonal(d, 0.0)
    np.testing.assert_allclose(triplet_noise_estimates(d), delta)


def test_smoothie_ranks_the_locally_reliable_model_first(rng):
    # two blobs, 10 options, truth = option 0: model 0 is perfect on blob 0 and random on blob 1,
    # model 1 the reverse; models 2..4 are right half of the time; wrong answers are spread out.
    emb, _, blob = two_niche_world(rng)
    n = len(blob)
    wrong = rng.integers(1, 10, size=(n, 5))
    right = np.zeros((n, 5), dtype=bool)
    right[:, 0] = blob == 0
    right[:, 1] = blob == 1
    right[:, 2:] = rng.random((n, 3)) < 0.5
    pool = ResponseMatrix(
        answers=np.where(right, 0, wrong),
        n_options=np.full(n, 10),
        subjects=np.full(n, "s"),
        model_names=["a", "b", "c", "d", "e"],
    )
    first = SmoothieTrain(n_neighbors=15).fit(emb, pool).route(emb, top_k=1).ranked[:, 0]
    assert (first[blob == 0] == 0).mean() > 0.9
    assert (first[blob == 1] == 1).mean() > 0.9


def test_smoothie_needs_three_models(rng):
    emb, responses = random_world(rng, m=2)
    with pytest.raises(ValueError, match="at least 3 models"):
        SmoothieTrain().fit(emb, responses)


# ---------------------------------------------------------------------------- kNN and clusters
def test_knn_correctness_matches_brute_force(rng):
    emb, responses = random_world(rng, n=90, m=4)
    queries = rng.normal(size=(25, emb.shape[1]))
    k = 6
    router = KNNCorrectness(k=k).fit(emb, responses)
    got = router.route_scores(queries)
    correct = responses.correctness()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for i, q in enumerate(queries):
        sims = unit @ (q / np.linalg.norm(q))
        nearest = sorted(range(len(sims)), key=lambda j: (-sims[j], j))[:k]
        for m in range(responses.n_models):
            vals = [correct[j, m] for j in nearest if not np.isnan(correct[j, m])]
            expected = np.mean(vals) if vals else np.nanmean(correct[:, m])
            assert got[i, m] == pytest.approx(expected)


def test_cluster_rank_tables_match_brute_force(rng):
    emb, responses = random_world(rng, n=150, m=4)
    router = ClusterRank(n_clusters=5, random_state=1).fit(emb, responses)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.argmax(unit @ router.centers_.T, axis=1)
    correct = responses.correctness()
    for c in range(5):
        members = correct[labels == c]
        for m in range(4):
            vals = members[:, m][~np.isnan(members[:, m])]
            expected = vals.mean() if len(vals) else np.nanmean(correct[:, m])
            assert router.cluster_accuracy_[c, m] == pytest.approx(expected)
    # a query is scored by its nearest centre's accuracies
    scores = router.route_scores(emb[:10])
    np.testing.assert_allclose(
        scores, router.cluster_accuracy_[labels[:10]] + 1e-6 * router.global_accuracy_, rtol=1e-12
    )


def test_cluster_rank_routes_each_blob_to_its_specialist(rng):
    emb, responses, blob = two_niche_world(rng)
    router = ClusterRank(n_clusters=2, random_state=0).fit(emb, responses)
    first = router.route(emb, top_k=1).ranked[:, 0]
    assert (first == blob).all()


def test_best_single_gold_ranks_by_key_accuracy():
    # accuracies against the key: model 0 2/3, model 1 1, model 2 1/2 (its not-asked row is left out)
    responses = ResponseMatrix(
        answers=np.array([[0, 1, 1], [0, 0, NOT_ASKED], [1, 1, 0]]),
        n_options=np.array([2, 2, 2]),
        subjects=np.array(["s"] * 3),
        model_names=["x", "y", "z"],
        gold=np.array([1, 0, 1]),
    )
    router = BestSingleGold().fit(np.eye(3), responses)
    np.testing.assert_allclose(router.global_scores_, [2 / 3, 1.0, 1 / 2])
    assert router.route(np.eye(3), top_k=3).ranked[0].tolist() == [1, 0, 2]


def test_oracle_hand_example():
    responses = ResponseMatrix(
        answers=np.array([[0, 1], [2, 2], [NO_ANSWER, 1], [NOT_ASKED, 0]]),
        n_options=np.full(4, 3),
        subjects=np.array(["s"] * 4),
        model_names=["x", "y"],
        gold=np.array([1, 0, 1, -1]),
    )
    assert oracle_correct(responses).tolist() == [True, False, True, False]


# ---------------------------------------------------------------------------- neighbour search
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cosine_neighbors_match_a_brute_force_sort_even_with_ties(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n_base = data.draw(st.integers(1, 30))
    base = rng.normal(size=(n_base, 4))
    base = np.vstack([base, base[: n_base // 2]])  # duplicated rows: exact ties
    queries = rng.normal(size=(data.draw(st.integers(1, 8)), 4))
    k = data.draw(st.integers(1, len(base)))
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    distance = 1.0 - unit(queries).astype(np.float64) @ unit(base).astype(np.float64).T
    got = cosine_neighbors(queries, base, k)
    for i in range(len(queries)):
        # the same distances within float32 rounding; duplicated rows keep the lower index first
        np.testing.assert_allclose(distance[i, got[i]], np.sort(distance[i])[:k], atol=1e-5)
        for a, b in zip(got[i][:-1], got[i][1:]):
            if np.array_equal(base[a], base[b]):
                assert a < b


def test_cosine_neighbors_are_scale_free(rng):
    base = rng.normal(size=(40, 5))
    queries = rng.normal(size=(7, 5))
    np.testing.assert_array_equal(cosine_neighbors(queries, base, 4), cosine_neighbors(3 * queries, 0.5 * base, 4))
    with pytest.raises(ValueError, match="k: must be between 1 and the 40"):
        cosine_neighbors(queries, base, 41)


# ---------------------------------------------------------------------------- validation
ALL = LABEL_FREE + QUERY_ANSWER


@pytest.mark.parametrize("make", ALL)
def test_bad_input_is_refused(make, rng):
    emb, responses = random_world(rng)
    with pytest.raises(ValueError, match="embeddings: 119 rows but responses has 120"):
        make().fit(emb[:-1], responses)
    bad = emb.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="embeddings: contains NaN"):
        make().fit(bad, responses)
    with pytest.raises(ValueError, match="embeddings: expected a 2-D"):
        make().fit(emb[:, 0], responses)
    with pytest.raises(NotFittedError):
        make().route(emb)
    router = make().fit(emb, responses)
    with pytest.raises(ValueError, match="expected 8 columns"):
        router.route_scores(emb[:, :5])


@pytest.mark.parametrize(
    "router, message",
    [
        (KNNCorrectness(k=0), "k: must be an integer >= 1"),
        (ClusterRank(n_clusters=-1), "n_clusters: must be an integer >= 1"),
        (SmoothieTrain(n_neighbors=2.5), "n_neighbors: must be an integer >= 1"),
    ],
)
def test_bad_parameters_are_refused(router, message, rng):
    emb, responses = random_world(rng)
    with pytest.raises(ValueError, match=message):
        router.fit(emb, responses)


# ---------------------------------------------------------------------------- CASCAL-GT
def test_cascal_gt_learns_niches_from_the_key(rng):
    from cascal.baselines.cascal_gt import CascalGT

    emb, responses, blob = two_niche_world(rng)
    # two more models (right 60 % of the time on one blob each) so that the two niches' top-3 model
    # sets differ; with only 3 models every niche has the same top-3 set and niche pruning folds them
    n = len(blob)
    extra = np.where(rng.random((n, 2)) < 0.6, 0, 3)
    extra[blob == 1, 0] = 3
    extra[blob == 0, 1] = 3
    pool = ResponseMatrix(
        answers=np.hstack([responses.answers, extra]),
        n_options=responses.n_options,
        subjects=responses.subjects,
        model_names=["a", "b", "c", "d", "e"],
        gold=responses.gold,
    )
    router = CascalGT(random_state=0).fit(emb, pool)
    assert router.uses_answer_key
    np.testing.assert_allclose(router.global_scores_[:3], [0.5, 0.5, 0.0])  # key accuracy of each model
    first = router.route(emb, top_k=1).ranked[:, 0]
    assert (first == blob).mean() > 0.95  # each blob goes to its specialist
    copied = CascalGT(random_state=0).fit(emb, pool.with_gold(pool.answers[:, 2]))
    assert (copied.route(emb, top_k=1).ranked[:, 0] == 2).all()  # the key now says model 2 is always right
    with pytest.raises(ValueError, match="responses.gold"):
        CascalGT().fit(emb, pool.with_gold(np.full(n, -1)))
