"""The numpy references of the consensus and routing kernels (cascal.reference) on the corners the
random parity tests rarely reach: the std / 1 fallbacks of the logprob scale, overflowing z-scores
with a zero or unit z_scale, saturated sigmoids, tiny temperatures, questions nobody answered, the
documented output dtypes, float32 inputs (computed in float64), score rows at very different levels,
the 2^-52 cut-off of soft subject weights, the ArgumentTypeError message, and silence (no RuntimeWarning) on
valid inputs. Expected values are computed by hand here; the Rust kernel is checked alongside."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from cascal import reference
from cascal.errors import ArgumentTypeError
from cascal.kernels import ConsensusParams, RouteParams, RoutingTables, consensus_scores, consensus_stats
from cascal.kernels import route_batch as kernel_route_batch

CONSENSUS = {
    "kernel": consensus_scores,
    "numpy": reference.consensus_scores,
    "loop": reference.consensus_scores_loop,
}
both_references = pytest.mark.parametrize("impl", ["numpy", "loop"])
all_three = pytest.mark.parametrize("impl", ["kernel", "numpy", "loop"])


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _posterior(votes: list[float], tau: float = 1.0) -> list[float]:
    """softmax(votes / tau), written out for a handful of options."""
    top = max(votes)
    e = [math.exp((v - top) / tau) for v in votes]
    return [v / sum(e) for v in e]


# ---------------------------------------------------------------- consensus: statistics
@pytest.mark.parametrize("stats", [reference.consensus_stats, consensus_stats])
def test_zero_mad_falls_back_to_a_std_below_one(stats):
    """MAD 0 -> population std, kept even when it is below 1; std 0 -> 1; no logprob -> (0, 1)."""
    lp = np.array(
        [
            [0.0, 2.0, np.nan, -3.0],
            [0.0, 2.0, np.nan, -3.0],
            [0.0, 2.0, np.nan, -3.0],
            [1.0, 2.0, np.nan, -3.5],
            [np.nan, np.nan, np.nan, -3.0],
        ]
    )
    mu, sigma = stats(lp)
    assert mu.tolist() == [0.0, 2.0, 0.0, -3.0]
    # column 0: median 0, deviations 0,0,0,1 -> MAD 0; std of (0,0,0,1) = sqrt(3)/4
    assert sigma[0] == pytest.approx(math.sqrt(3) / 4, rel=1e-12)
    # column 3: deviations 0,0,0,0.5,0 -> MAD 0; std of (-3,-3,-3,-3.5,-3) = 0.2
    assert sigma[3] == pytest.approx(0.2, rel=1e-12)
    assert sigma[1] == 1.0 and sigma[2] == 1.0
    assert mu.dtype == np.float64 and sigma.dtype == np.float64


# ---------------------------------------------------------------- consensus: dtypes and stats reuse
@all_three
def test_documented_result_dtypes_with_float32_inputs_and_stats(impl):
    """ConsensusResult: scores float32, plurality bool, agreement float64, majority int8, mu and sigma
    float64 -- also when logprobs and the reused stats come in float32."""
    answers = np.array([[0, 1, 1, -1], [2, 2, -2, 0], [-1, -2, -1, -1]], dtype=np.int8)
    n_options = np.array([3, 4, 2], dtype=np.int8)
    lp = np.array([[-0.5, -1.0, -2.0, np.nan], [-0.25, -0.5, -1.0, -3.0], [np.nan] * 4], dtype=np.float32)
    stats = (np.array([-1.0, -1.0, -1.5, -2.0], dtype=np.float32), np.array([0.5, 0.5, 1.0, 2.0], dtype=np.float32))
    res = CONSENSUS[impl](answers, n_options, lp, ConsensusParams(), stats=stats)
    assert res.scores.dtype == np.float32 and res.scores.shape == (3, 4)
    assert res.plurality.dtype == np.bool_ and res.plurality.shape == (3, 4)
    assert res.agreement.dtype == np.float64 and res.agreement.shape == (3,)
    assert res.majority.dtype == np.int8 and res.majority.shape == (3,)
    assert res.mu.dtype == np.float64 and res.sigma.dtype == np.float64
    np.testing.assert_array_equal(res.mu, [-1.0, -1.0, -1.5, -2.0])
    np.testing.assert_array_equal(res.sigma, [0.5, 0.5, 1.0, 2.0])
    # question 0 by hand with the given stats: z = (lp - mu) / sigma = 1, 0, -0.5; model 3 no answer
    w = [_sigmoid(1.0), _sigmoid(0.0), _sigmoid(-0.5)]
    post = _posterior([w[0], w[1] + w[2], 0.0])
    np.testing.assert_allclose(res.scores[0], [post[0], post[1], post[1], 0.0], rtol=1e-6)
    # question 1: z = 1.5, 1, (not asked), -0.5
    w = [_sigmoid(1.5), _sigmoid(1.0), _sigmoid(-0.5)]
    post = _posterior([w[2], 0.0, w[0] + w[1], 0.0])
    assert res.scores[1, 0] == pytest.approx(post[2], rel=1e-6) and np.isnan(res.scores[1, 2])
    assert res.scores[1, 3] == pytest.approx(post[0], rel=1e-6)
    assert res.plurality.tolist() == [[False, True, True, False], [True, True, False, False], [False] * 4]
    np.testing.assert_allclose(res.agreement, [2 / 3, 2 / 3, 0.0], rtol=1e-12)


@all_three
def test_nobody_answered_gives_majority_minus_one(impl):
    answers = np.array([[-1, -2, -1], [1, -1, 1], [-2, -2, -2], [-1, 0, 1]])
    res = CONSENSUS[impl](answers, np.array([4, 2, 3, 2]))
    assert res.majority.tolist() == [-1, 1, -1, 0]
    assert res.agreement.tolist() == [0.0, 1.0, 0.0, 0.5]
    assert not res.plurality[0].any() and not res.plurality[2].any()
    assert res.plurality[3].tolist() == [False, True, True]


# ---------------------------------------------------------------- consensus: extreme weights
def _overflowing_z():
    """Model 0's z-score overflows to +inf: (1e308 - (-1e308)) / 1; models 1 and 2 have z = -1."""
    answers = np.array([[0, 0, 1]])
    lp = np.array([[1e308, -1.0, -1.0]])
    stats = (np.array([-1e308, 0.0, 0.0]), np.array([1.0, 1.0, 1.0]))
    return answers, np.array([2]), lp, stats


@all_three
def test_zero_z_scale_means_uniform_weights_even_for_an_infinite_z(impl):
    answers, n_options, lp, stats = _overflowing_z()
    res = CONSENSUS[impl](answers, n_options, lp, ConsensusParams(z_scale=0.0), stats=stats)
    # every weight 0.5: votes 1.0 for option 0, 0.5 for option 1
    post = _posterior([1.0, 0.5])
    np.testing.assert_allclose(res.scores[0], [post[0], post[0], post[1]], rtol=1e-6)


@all_three
def test_an_infinite_z_takes_the_upper_clamp(impl):
    answers, n_options, lp, stats = _overflowing_z()
    res = CONSENSUS[impl](answers, n_options, lp, ConsensusParams(z_scale=1.0, clamp=(0.01, 0.99)), stats=stats)
    post = _posterior([0.99 + _sigmoid(-1.0), _sigmoid(-1.0)])
    np.testing.assert_allclose(res.scores[0], [post[0], post[0], post[1]], rtol=1e-6)


@all_three
def test_saturated_sigmoid_on_both_sides_hits_the_clamps(impl):
    """z = +-1000 and +-1e300 saturate the sigmoid to 1 and 0 (no overflow), then clamp."""
    answers = np.array([[0, 1, 1], [0, 1, 1]])
    lp = np.array([[1000.0, -1000.0, -1000.0], [1e300, -1e300, -1e300]])
    stats = (np.zeros(3), np.ones(3))
    res = CONSENSUS[impl](answers, np.array([2, 2]), lp, ConsensusParams(clamp=(0.1, 0.8)), stats=stats)
    post = _posterior([0.8, 0.2])
    for q in range(2):
        np.testing.assert_allclose(res.scores[q], [post[0], post[1], post[1]], rtol=1e-6)


@all_three
def test_tiny_tau_gives_the_heaviest_option_everything(impl):
    answers = np.array([[0, 0, 0, 1, 2], [3, 3, 1, 1, -1]])
    res = CONSENSUS[impl](answers, np.array([3, 4]), None, ConsensusParams(tau=1e-3))
    # votes 1.5 / 0.5 / 0.5: the runner-up is exp(-1000) = 0 behind
    np.testing.assert_array_equal(res.scores[0], [1.0, 1.0, 1.0, 0.0, 0.0])
    # a 1.0 / 1.0 tie between options 1 and 3 (and two empty options)
    np.testing.assert_allclose(res.scores[1], [0.5, 0.5, 0.5, 0.5, 0.0], rtol=1e-6)


def test_references_are_silent_on_extreme_valid_inputs():
    """Overflowing z-scores, 0 * inf and all-NaN niches are valid inputs: no RuntimeWarning."""
    answers, n_options, lp, stats = _overflowing_z()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for z_scale in (0.0, 1.0):
            params = ConsensusParams(z_scale=z_scale)
            for impl in ("numpy", "loop"):
                CONSENSUS[impl](answers, n_options, lp, params, stats=stats)
            reference.consensus_scores(answers, n_options, lp, params)
        tables = RoutingTables(
            np.eye(2), np.eye(2), np.array([0, 1]), np.array([[0.2, 0.8], [np.nan, np.nan]]), np.array([0.6, 0.4])
        )
        res = reference.route_batch(np.array([[0.1, 1.0]]), tables, RouteParams(top_k=2))
    np.testing.assert_allclose(res.probs[0], _softmax([0.6, 0.4], 0.1), rtol=1e-12)


# ---------------------------------------------------------------- routing
def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _softmax(v, t):
    v = np.asarray(v, dtype=np.float64)
    e = np.exp((v - v.max()) / t)
    return e / e.sum()


def test_float32_inputs_are_computed_in_float64():
    """The reference computes everything in float64: float32 tables and queries give bit for bit
    the result of the same (exactly widened) values in float64."""
    rng = np.random.default_rng(7)
    reps = rng.normal(size=(3, 16)).astype(np.float32)
    cents = (reps[[0, 0, 1, 2, 2]] + rng.normal(scale=0.7, size=(5, 16))).astype(np.float32)
    scores = rng.random((5, 4))
    glob = rng.random(4)
    X = (cents[rng.integers(0, 5, 200)] + rng.normal(scale=0.8, size=(200, 16))).astype(np.float32)
    params = RouteParams(k_nearest=2, top_k=4, subject_temp=0.05)
    t32 = RoutingTables(reps, cents, [0, 0, 1, 2, 2], scores, glob)
    t64 = RoutingTables(reps.astype(np.float64), cents.astype(np.float64), [0, 0, 1, 2, 2], scores, glob)
    assert t32.subject_reps.dtype == np.float32
    got = reference.route_batch(X, t32, params)
    wide = reference.route_batch(X.astype(np.float64), t64, params)
    for field in ("probs", "ranked", "subject", "nearest_distance", "alpha"):
        np.testing.assert_array_equal(getattr(got, field), getattr(wide, field), err_msg=field)
    assert got.probs.dtype == np.float64 and got.nearest_distance.dtype == np.float64


@pytest.mark.parametrize("route", [reference.route_batch, kernel_route_batch])
def test_score_rows_at_very_different_levels_are_sharpened_row_by_row(route):
    """softmax(scores / score_temp) is taken per niche: a niche whose scores are all far below
    another niche's keeps its own distribution (no underflow to 0/0, no overflow)."""
    reps = np.array([_unit(0), _unit(90)])
    scores = np.array([[1.0, 0.9995, 0.2], [0.0, -0.001, -0.0005]])
    tables = RoutingTables(reps, reps, [0, 1], scores, np.array([0.5, 0.5, 0.5]))
    res = route(np.array([_unit(2), _unit(88)]), tables, RouteParams(k_nearest=1, score_temp=0.001, top_k=3))
    np.testing.assert_allclose(res.probs[0], [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(0.5)), 0.0], rtol=1e-12)
    e = [1.0, math.exp(-1.0), math.exp(-0.5)]
    np.testing.assert_allclose(res.probs[1], [v / sum(e) for v in e], rtol=1e-12)
    assert res.ranked.tolist() == [[0, 1, 2], [0, 2, 1]]
    # the same for the global scores: the fallback blends in softmax(global / score_temp)
    far = RoutingTables(reps, reps, [0, 1], scores, np.array([-3.0, -3.0005, -3.001]))
    res = route(np.array([_unit(45)]), far, RouteParams(k_nearest=1, score_temp=0.001, fallback_distance=0.0))
    assert res.alpha[0] == 1.0
    e = [1.0, math.exp(-0.5), math.exp(-1.0)]
    np.testing.assert_allclose(res.probs[0], [v / sum(e) for v in e], rtol=1e-12)


def test_reference_type_error_names_both_types():
    tables = RoutingTables(np.eye(2), np.eye(2), [0, 1], np.eye(2), np.ones(2))
    with pytest.raises(ArgumentTypeError, match=r"^tables, params: .* got dict and RouteParams$"):
        reference.route_batch(np.eye(2), {"k": 1}, RouteParams())
    with pytest.raises(ArgumentTypeError, match=r"^tables, params: .* got RoutingTables and tuple$"):
        reference.route_batch(np.eye(2), tables, (1, 2))


@pytest.mark.parametrize("route", [reference.route_batch, kernel_route_batch])
def test_soft_subject_weight_of_exactly_two_to_the_minus_52_is_kept(route):
    """A subject whose softmax exponent is exactly -52 ln 2 below the nearest one's keeps its weight
    2^-52 (docs/algorithm.md: only a gap above 52 ln 2 gives weight 0); just beyond, it is 0."""
    gap_limit = 52 * math.log(2.0)
    temp = 1.0 / gap_limit
    assert -1.0 / temp == -gap_limit  # the exponent of a cosine-distance gap of exactly 1
    reps = np.eye(2)  # the query e0 is at distance 0 from subject 0 and 1 from subject 1
    # score_temp 0.001: niche 0 is (1, 0) and niche 1 is (0, 1) exactly (exp(-1000) = 0)
    tables = RoutingTables(reps, reps, [0, 1], np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, 0.5]))
    X = np.array([[1.0, 0.0]])
    kept = route(X, tables, RouteParams(k_nearest=1, score_temp=0.001, top_k=2, subject_temp=temp))
    w = 2.0**-52 / (1.0 + 2.0**-52)
    assert kept.probs[0, 1] == pytest.approx(w, rel=1e-9)
    assert kept.probs[0, 0] == pytest.approx(1.0 - w, abs=1e-18) and kept.probs[0, 0] < 1.0
    cooler = 1.0 / float(np.nextafter(gap_limit, np.inf))
    assert -1.0 / cooler < -gap_limit  # the exponent is now just beyond the cut-off
    cut = route(X, tables, RouteParams(k_nearest=1, score_temp=0.001, top_k=2, subject_temp=cooler))
    assert cut.probs[0].tolist() == [1.0, 0.0]
    assert kept.subject.tolist() == cut.subject.tolist() == [0]


@pytest.mark.parametrize("route", [reference.route_batch, kernel_route_batch])
def test_k_nearest_among_many_tied_centroids_takes_the_lowest_indices(route):
    """One subject, 20 centroids at 25 degrees then 40 identical ones at 20 degrees: the 5 nearest
    are the first 5 of the tied group (ties: lower centroid index), each with weight 1/5."""
    cents = np.array([_unit(25)] * 20 + [_unit(20)] * 40)
    i = np.arange(60)
    scores = np.column_stack([i / 60, np.full(60, 0.5), 1 - i / 60])
    tables = RoutingTables(np.array([_unit(0)]), cents, np.zeros(60, dtype=np.int64), scores, np.full(3, 0.5))
    X = np.array([_unit(0), _unit(-3)])
    res = route(X, tables, RouteParams(k_nearest=5, score_temp=0.1, top_k=3, fallback_distance=1.0))
    expected = np.mean([_softmax(scores[c], 0.1) for c in range(20, 25)], axis=0)
    np.testing.assert_allclose(res.probs, [expected, expected], rtol=1e-12)
    np.testing.assert_allclose(res.nearest_distance, [1 - math.cos(math.radians(a)) for a in (20, 23)], rtol=1e-9)
    # documented RouteResult dtypes
    assert res.subject.dtype == np.int64 and res.ranked.dtype == np.int64 and res.subject.tolist() == [0, 0]
    assert res.probs.dtype == res.nearest_distance.dtype == res.alpha.dtype == np.float64


@pytest.mark.parametrize("route", [reference.route_batch, kernel_route_batch])
def test_far_centroids_with_a_tiny_distance_temp_keep_finite_weights(route):
    """softmax(-dist / distance_temp) is max-subtracted: centroids 0.5 and 0.66 away with
    distance_temp 0.001 give weights 1 : exp(-158), not 0 / 0."""
    cents = np.array([_unit(60), _unit(70)])
    scores = np.array([[0.9, 0.1], [0.1, 0.9]])
    tables = RoutingTables(np.array([_unit(0)]), cents, [0, 0], scores, np.array([0.5, 0.5]))
    params = RouteParams(k_nearest=2, distance_temp=0.001, score_temp=0.5, fallback_distance=1.9, top_k=2)
    res = route(np.array([_unit(0)]), tables, params)
    d = [1 - math.cos(math.radians(60)), 1 - math.cos(math.radians(70))]
    w1 = math.exp(-(d[1] - d[0]) / 0.001)
    expected = (_softmax(scores[0], 0.5) + w1 * _softmax(scores[1], 0.5)) / (1 + w1)
    np.testing.assert_allclose(res.probs[0], expected, rtol=1e-12)
    assert res.nearest_distance[0] == pytest.approx(0.5, rel=1e-12) and res.alpha[0] == 0.0
