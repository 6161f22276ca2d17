"""Batched routing kernel: parity with the numpy reference, hand-computed cases (ties, k_nearest
above the centroid count, both sides of the fallback threshold, NaN scores), properties, the
RoutingTables / RouteParams boundary, validation, and real MMLU-Pro embeddings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal import reference
from cascal.errors import CascalError, InvalidParameterError, KernelError
from cascal.kernels import RouteParams, RouteResult, RoutingTables
from cascal.kernels import route_batch as kernel_route_batch


def route_batch(X, subject_reps, centroids, centroid_subject, centroid_scores, global_scores, **params) -> RouteResult:
    """The kernel on tables and parameters made from plain arrays and keywords."""
    tables = RoutingTables(subject_reps, centroids, centroid_subject, centroid_scores, global_scores)
    return kernel_route_batch(X, tables, RouteParams(**params))


def reference_route(
    X, subject_reps, centroids, centroid_subject, centroid_scores, global_scores, **params
) -> RouteResult:
    """The numpy reference on the same objects as :func:`route_batch`."""
    tables = RoutingTables(subject_reps, centroids, centroid_subject, centroid_scores, global_scores)
    return reference.route_batch(X, tables, RouteParams(**params))


def random_model(rng: np.random.Generator, d: int, n_subjects: int, n_centroids: int, n_models: int, nan_share=0.15):
    reps = rng.normal(size=(n_subjects, d))
    centroid_subject = np.concatenate([np.arange(n_subjects), rng.integers(0, n_subjects, n_centroids - n_subjects)])
    # centroids near their subject's representative, so distances span both sides of the fallback
    centroids = reps[centroid_subject] + rng.normal(scale=0.9, size=(n_centroids, d))
    scores = rng.random((n_centroids, n_models))
    scores[rng.random(scores.shape) < nan_share] = np.nan
    scores[min(1, n_centroids - 1)] = np.nan  # one centroid without any data
    global_scores = rng.random(n_models)
    return reps, centroids, centroid_subject, scores, global_scores


def queries(rng: np.random.Generator, centroids: np.ndarray, n: int) -> np.ndarray:
    """Points around random centroids at random spreads: cosine distances from ~0 to ~0.8."""
    base = centroids[rng.integers(0, len(centroids), n)]
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    noise = rng.normal(size=base.shape)
    noise *= rng.uniform(0, 4, size=(n, 1)) / np.linalg.norm(noise, axis=1, keepdims=True)
    return base + noise


def assert_same(got: RouteResult, expected: RouteResult, atol: float = 1e-12) -> None:
    np.testing.assert_array_equal(got.subject, expected.subject)
    np.testing.assert_allclose(got.nearest_distance, expected.nearest_distance, atol=atol, rtol=0)
    np.testing.assert_allclose(got.alpha, expected.alpha, atol=atol * 10, rtol=0)
    np.testing.assert_allclose(got.probs, expected.probs, atol=atol * 10, rtol=0)
    np.testing.assert_array_equal(got.ranked, expected.ranked)


# ---------------------------------------------------------------- parity
@pytest.mark.parametrize("seed", range(4))
def test_parity_random_float64(seed):
    rng = np.random.default_rng(seed)
    d, S, C, M = [(16, 3, 9, 4), (64, 14, 70, 12), (5, 2, 2, 6), (384, 6, 30, 8)][seed]
    reps, cents, csub, scores, glob = random_model(rng, d, S, C, M)
    X = queries(rng, cents, 2500)
    kwargs = dict(
        k_nearest=[3, 1, 5, 4][seed],
        distance_temp=[0.1, 0.05, 1.0, 0.2][seed],
        score_temp=[0.1, 0.5, 0.02, 1.0][seed],
        fallback_distance=[0.5, 0.6, 0.3, 0.55][seed],
        fallback_width=[0.2, 0.1, 0.5, 0.3][seed],
        top_k=[3, 12, 1, 8][seed],
    )
    got = route_batch(X, reps, cents, csub, scores, glob, **kwargs)
    assert_same(got, reference_route(X, reps, cents, csub, scores, glob, **kwargs))
    assert got.probs.dtype == np.float64 and got.ranked.dtype == np.int64 and got.subject.dtype == np.int64
    # the random models put queries on both sides of the fallback threshold
    assert (got.alpha == 0).any() and ((got.alpha > 0) & (got.alpha < 1)).any()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("subject_temp", [0.01, 0.05, 0.5, 10.0])
def test_parity_soft_subjects_float64(seed, subject_temp):
    rng = np.random.default_rng(100 + seed)
    d, S, C, M = [(16, 3, 9, 4), (64, 14, 70, 12), (5, 2, 2, 6), (384, 6, 30, 8)][seed]
    reps, cents, csub, scores, glob = random_model(rng, d, S, C, M)
    X = queries(rng, cents, 1500)
    kwargs = dict(k_nearest=[3, 1, 5, 4][seed], top_k=[3, 12, 1, 8][seed], subject_temp=subject_temp)
    got = route_batch(X, reps, cents, csub, scores, glob, **kwargs)
    assert_same(got, reference_route(X, reps, cents, csub, scores, glob, **kwargs))
    hard = route_batch(X, reps, cents, csub, scores, glob, **{**kwargs, "subject_temp": 0.0})
    # the soft weights leave the chosen subject, its nearest distance and the fallback unchanged ...
    np.testing.assert_array_equal(got.subject, hard.subject)
    np.testing.assert_allclose(got.nearest_distance, hard.nearest_distance, atol=1e-12, rtol=0)
    np.testing.assert_allclose(got.alpha, hard.alpha, atol=1e-11, rtol=0)
    # ... but mix in the other subjects' niches wherever there is more than one subject
    if S > 1:
        assert np.abs(got.probs - hard.probs).max() > (1e-3 if subject_temp >= 0.5 else 1e-6)


def test_soft_subjects_hand_computed():
    # subjects at 0 and 90 degrees, one centroid each, preferring models 0 and 1 respectively
    reps = np.array([_unit(0), _unit(90)])
    scores = np.array([[0.9, 0.1], [0.2, 0.7]])
    glob = np.array([0.5, 0.5])
    X = np.array([_unit(30), _unit(50)])
    res = route_batch(X, reps, reps, [0, 1], scores, glob, top_k=2, subject_temp=0.2, fallback_distance=1.9)
    dist = 1 - np.cos(np.radians([[30, 60], [50, 40]]))
    pi = np.exp(-dist / 0.2) / np.exp(-dist / 0.2).sum(axis=1, keepdims=True)
    expected = pi[:, :1] * _softmax([0.9, 0.1], 0.1) + pi[:, 1:] * _softmax([0.2, 0.7], 0.1)
    np.testing.assert_allclose(res.probs, expected, atol=1e-12)
    assert res.subject.tolist() == [0, 1]
    # as the temperature grows, every subject weighs the same
    flat = route_batch(X, reps, reps, [0, 1], scores, glob, top_k=2, subject_temp=1e6, fallback_distance=1.9)
    even = 0.5 * _softmax([0.9, 0.1], 0.1) + 0.5 * _softmax([0.2, 0.7], 0.1)
    np.testing.assert_allclose(flat.probs, np.vstack([even, even]), atol=1e-6)


def test_parity_float32(rng):
    reps, cents, csub, scores, glob = random_model(rng, 384, 14, 70, 12)
    X = queries(rng, cents, 3000).astype(np.float32)
    got = route_batch(X, reps.astype(np.float32), cents.astype(np.float32), csub, scores, glob)
    ref = reference_route(X, reps.astype(np.float32), cents.astype(np.float32), csub, scores, glob)
    np.testing.assert_array_equal(got.subject, ref.subject)
    np.testing.assert_allclose(got.nearest_distance, ref.nearest_distance, atol=1e-6)
    np.testing.assert_allclose(got.probs, ref.probs, atol=1e-4)
    # the ranking agrees wherever consecutive probabilities are not within float32 noise
    sorted_p = np.take_along_axis(ref.probs, ref.ranked, axis=1)
    gaps = -np.diff(-np.sort(-ref.probs, axis=1)[:, :4], axis=1)  # among the top_k + 1 = 4 best
    clear = np.all((gaps == 0) | (gaps > 1e-5), axis=1)
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(got.ranked[clear], ref.ranked[clear])
    assert np.all(np.diff(sorted_p, axis=1) <= 0)


def test_parity_spans_many_blocks_and_empty_batch(rng):
    reps, cents, csub, scores, glob = random_model(rng, 8, 4, 12, 5)
    X = queries(rng, cents, 5000)
    assert_same(route_batch(X, reps, cents, csub, scores, glob), reference_route(X, reps, cents, csub, scores, glob))
    empty = route_batch(np.zeros((0, 8)), reps, cents, csub, scores, glob)
    assert empty.probs.shape == (0, 5) and empty.ranked.shape == (0, 3) and empty.subject.shape == (0,)


@pytest.mark.parametrize("subject_temp", [0.0, 0.05])
def test_one_block_on_the_calling_thread_equals_the_pools_blocks(rng, subject_temp):
    """Up to 512 queries are routed on the calling thread, more on the kernel pool: the same
    rankings and subjects for the same rows, the same numbers to rounding (subject weights and
    costs included; a row's last bits depend on the batch it is routed in, on the pool too)."""
    reps, cents, csub, scores, glob = random_model(rng, 8, 4, 12, 5)
    costs = rng.random((12, 5)), rng.random(5)
    tables = RoutingTables(reps, cents, csub, scores, glob, centroid_costs=costs[0], global_costs=costs[1])
    params = RouteParams(subject_temp=subject_temp)
    X = queries(rng, cents, 1100)
    pooled = kernel_route_batch(X, tables, params, subject_weights=True)  # three blocks on the pool
    for rows in (slice(0, 1), slice(3, 67), slice(600, 1100)):  # one block each: this thread
        alone = kernel_route_batch(X[rows], tables, params, subject_weights=True)
        part = {f.name: getattr(pooled, f.name) for f in dataclasses.fields(RouteResult)}
        assert_same(alone, RouteResult(**{k: None if v is None else v[rows] for k, v in part.items()}))
        for field in ("expected_cost", "subject_weights"):
            np.testing.assert_allclose(getattr(alone, field), getattr(pooled, field)[rows], atol=1e-12, err_msg=field)


# ---------------------------------------------------------------- hand-computed cases
def _unit(deg: float) -> list[float]:
    return [np.cos(np.radians(deg)), np.sin(np.radians(deg))]


def _softmax(v, t):
    e = np.exp((np.asarray(v, dtype=float) - np.nanmax(v)) / t)
    return e / e.sum()


def test_fallback_both_sides_of_threshold():
    # one subject, one centroid at angle 0; the global ranking prefers model 1, the niche model 0
    reps = np.array([_unit(0)])
    cents = np.array([_unit(0)])
    scores = np.array([[0.9, 0.2]])
    glob = np.array([0.1, 0.8])
    angles = np.array([10.0, 55.0, 62.0, 70.0, 100.0])
    X = np.array([_unit(a) for a in angles]) * 3.0
    res = route_batch(X, reps, cents, [0], scores, glob, top_k=2)
    dist = 1 - np.cos(np.radians(angles))  # 0.015, 0.426, 0.531, 0.658, 1.17
    np.testing.assert_allclose(res.nearest_distance, dist, atol=1e-12)
    alpha = np.clip((dist - 0.5) / 0.2, 0, 1)
    np.testing.assert_allclose(res.alpha, alpha, atol=1e-12)
    assert res.alpha[0] == 0 and res.alpha[1] == 0 and 0 < res.alpha[2] < 1 and res.alpha[4] == 1
    niche, global_p = _softmax([0.9, 0.2], 0.1), _softmax([0.1, 0.8], 0.1)
    expected = (1 - alpha)[:, None] * niche + alpha[:, None] * global_p
    np.testing.assert_allclose(res.probs, expected, atol=1e-12)
    assert res.ranked[:, 0].tolist() == [0, 0, 0, 1, 1]


def test_k_nearest_above_centroid_count_and_blend_weights():
    reps = np.array([_unit(0), _unit(180)])
    cents = np.array([_unit(0), _unit(20), _unit(180)])
    csub = np.array([0, 0, 1])
    scores = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.3, 0.3, 0.9]])
    glob = np.zeros(3)
    X = np.array([_unit(5), _unit(170)])
    res = route_batch(X, reps, cents, csub, scores, glob, k_nearest=10, score_temp=0.5)
    assert res.subject.tolist() == [0, 1]
    d = np.array([1 - np.cos(np.radians(5)), 1 - np.cos(np.radians(15))])
    w = _softmax(-d, 0.1)
    expected0 = w[0] * _softmax(scores[0], 0.5) + w[1] * _softmax(scores[1], 0.5)
    np.testing.assert_allclose(res.probs[0], expected0, atol=1e-12)
    # subject 1 has a single centroid: its sharpened scores, whatever k_nearest says
    np.testing.assert_allclose(res.probs[1], _softmax(scores[2], 0.5), atol=1e-12)


def test_ties_prefer_lower_indices():
    # subjects 0 and 1 have identical representatives; centroids 0 and 1 are identical too
    reps = np.array([_unit(30), _unit(30), _unit(200)])
    cents = np.array([_unit(30), _unit(30), _unit(30), _unit(200)])
    csub = np.array([0, 0, 1, 2])
    scores = np.array([[0.5, 0.9, 0.9, 0.1], [0.9, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2]])
    glob = np.full(4, 0.5)
    X = np.array([_unit(31), _unit(200)])
    res = route_batch(X, reps, cents, csub, scores, glob, k_nearest=1, top_k=4)
    assert res.subject.tolist() == [0, 2]
    # k_nearest=1 with two equidistant centroids: the lower index (centroid 0) wins
    np.testing.assert_allclose(res.probs[0], _softmax(scores[0], 0.1), atol=1e-12)
    # equal probabilities rank by model index: models 1 and 2 tie first
    assert res.ranked[0].tolist() == [1, 2, 0, 3]
    assert res.ranked[1].tolist() == [0, 1, 2, 3]
    assert_same(res, reference_route(X, reps, cents, csub, scores, glob, k_nearest=1, top_k=4))


def test_nan_scores_get_zero_probability_and_all_nan_rows_use_global():
    reps = np.array([_unit(0), _unit(90)])
    cents = np.array([_unit(0), _unit(90)])
    scores = np.array([[np.nan, 0.4, 0.6], [np.nan, np.nan, np.nan]])
    glob = np.array([0.7, np.nan, 0.1])
    X = np.array([_unit(1), _unit(89)])
    res = route_batch(X, reps, cents, [0, 1], scores, glob, top_k=3)
    assert res.probs[0, 0] == 0
    np.testing.assert_allclose(res.probs[0, 1:], _softmax([0.4, 0.6], 0.1), atol=1e-12)
    g = _softmax([0.7, 0.1], 0.1)
    np.testing.assert_allclose(res.probs[1], [g[0], 0.0, g[1]], atol=1e-12)
    assert res.ranked[1].tolist() == [0, 2, 1]


# ---------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    d=st.integers(1, 12),
    n_subjects=st.integers(1, 4),
    extra_centroids=st.integers(0, 6),
    n_models=st.integers(1, 7),
    k_nearest=st.integers(1, 8),
    scale=st.floats(1e-3, 1e3),
    subject_temp=st.sampled_from([0.0, 1e-3, 0.05, 1.0]),
)
def test_property_distribution_ranking_and_scale_invariance(
    seed, n, d, n_subjects, extra_centroids, n_models, k_nearest, scale, subject_temp
):
    rng = np.random.default_rng(seed)
    reps, cents, csub, scores, glob = random_model(
        rng, d, n_subjects, n_subjects + extra_centroids, n_models, nan_share=0.3
    )
    X = queries(rng, cents, n)
    top_k = int(rng.integers(1, n_models + 1))
    kw = dict(k_nearest=k_nearest, top_k=top_k, subject_temp=subject_temp)
    res = route_batch(X, reps, cents, csub, scores, glob, **kw)
    assert_same(res, reference_route(X, reps, cents, csub, scores, glob, **kw), atol=1e-9)
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(res.probs >= 0)
    assert np.all((res.alpha >= 0) & (res.alpha <= 1))
    assert np.all((res.nearest_distance >= -1e-12) & (res.nearest_distance <= 2 + 1e-12))
    picked = np.take_along_axis(res.probs, res.ranked, axis=1)
    assert np.all(np.diff(picked, axis=1) <= 0)
    # the best model is a maximiser of P
    np.testing.assert_array_equal(picked[:, 0], res.probs.max(axis=1))
    # cosine geometry: rescaling queries and representatives changes nothing
    scaled = route_batch(X * scale, reps / scale, cents * 2.0, csub, scores, glob, **kw)
    np.testing.assert_array_equal(scaled.subject, res.subject)
    np.testing.assert_allclose(scaled.probs, res.probs, atol=1e-9)


# ---------------------------------------------------------------- validation
def _valid():
    return dict(
        X=np.array([_unit(10), _unit(80)]),
        subject_reps=np.array([_unit(0), _unit(90)]),
        centroids=np.array([_unit(0), _unit(90)]),
        centroid_subject=np.array([0, 1]),
        centroid_scores=np.array([[0.2, 0.8], [0.6, 0.4]]),
        global_scores=np.array([0.5, 0.5]),
    )


@pytest.mark.parametrize(
    "change, match, error",
    [
        ({"X": np.array([_unit(10), [0.0, 0.0]])}, r"X: row 1 is all zeros", KernelError),
        ({"X": np.array([[np.nan, 1.0]])}, r"X: row 0 contains NaN", KernelError),
        ({"X": np.array([[np.inf, 1.0]])}, r"X: row 0 contains NaN or infinite", KernelError),
        ({"X": np.array([1.0, 0.0])}, r"X: expected a 2-D", KernelError),
        ({"X": np.array([["a", "b"]])}, r"X: expected numbers", KernelError),
        ({"X": np.array([[1.0, 0.0, 0.0]])}, r"X: expected 2 columns like the tables", KernelError),
        ({"subject_reps": np.array([[0.0, 0.0], _unit(90)])}, r"subject_reps: row 0 is all zeros", KernelError),
        ({"subject_reps": np.array([1.0, 0.0])}, r"subject_reps: expected a 2-D", KernelError),
        (
            {"centroids": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])},
            r"centroids: expected 2 columns like subject_reps",
            KernelError,
        ),
        ({"centroids": np.array([_unit(0), [np.nan, 0.0]])}, r"centroids: row 1 contains NaN", KernelError),
        ({"centroid_subject": np.array([0, 2])}, r"centroid_subject: centroid 1 has subject 2", KernelError),
        ({"centroid_subject": np.array([0, -1])}, r"centroid_subject: centroid 1 has subject -1", KernelError),
        ({"centroid_subject": np.array([0, 0])}, r"centroid_subject: subject 1 has no centroid", KernelError),
        ({"centroid_subject": np.array([0])}, r"centroid_subject: expected shape \(2,\)", KernelError),
        ({"centroid_subject": np.array([0.0, 1.0])}, r"centroid_subject: expected integer", KernelError),
        ({"centroid_scores": np.array([[0.2, 0.8]])}, r"centroid_scores: expected shape \(2, 2\)", KernelError),
        (
            {"centroid_scores": np.array([[0.2, np.inf], [0.6, 0.4]])},
            r"centroid_scores: row 0, column 1 is infinite",
            KernelError,
        ),
        ({"global_scores": np.array([0.5, 0.5, 0.1])}, r"global_scores: expected shape \(2,\)", KernelError),
        ({"global_scores": np.array([np.nan, np.nan])}, r"global_scores: every entry is NaN", KernelError),
        ({"global_scores": np.array([0.1, -np.inf])}, r"global_scores: entry 1 is infinite", KernelError),
        ({"k_nearest": 0}, r"k_nearest: ", InvalidParameterError),
        ({"k_nearest": 1.5}, r"k_nearest: ", InvalidParameterError),
        ({"k_nearest": True}, r"k_nearest: ", InvalidParameterError),
        ({"top_k": 3}, r"top_k: must lie in 1..=2", KernelError),
        ({"top_k": 0}, r"top_k: ", InvalidParameterError),
        ({"distance_temp": 0.0}, r"distance_temp: must be a finite number > 0", InvalidParameterError),
        ({"score_temp": -1.0}, r"score_temp: ", InvalidParameterError),
        ({"score_temp": "0.1"}, r"score_temp: ", InvalidParameterError),
        ({"fallback_width": np.nan}, r"fallback_width: ", InvalidParameterError),
        ({"fallback_distance": np.inf}, r"fallback_distance: must be a finite number", InvalidParameterError),
        ({"subject_temp": -0.1}, r"subject_temp: must be a finite number >= 0", InvalidParameterError),
        ({"subject_temp": np.nan}, r"subject_temp: ", InvalidParameterError),
    ],
)
def test_validation(change, match, error):
    args = _valid()
    kwargs = {"top_k": 2, **{k: v for k, v in change.items() if k not in args}}
    args.update({k: v for k, v in change.items() if k in args})
    with pytest.raises(error, match="^" + match) as info:
        route_batch(**args, **kwargs)
    # every error is a CascalError and a ValueError whose message starts with the argument's name;
    # a KernelError also carries that name in .arg
    name = match.split(":")[0]
    assert isinstance(info.value, CascalError) and isinstance(info.value, ValueError)
    if error is KernelError:
        assert info.value.arg == name


def test_valid_baseline_routes():
    res = route_batch(**_valid(), top_k=2)
    assert res.subject.tolist() == [0, 1] and res.ranked[:, 0].tolist() == [1, 0]


def test_input_dtypes(rng):
    reps, cents, csub, scores, glob = random_model(rng, 6, 3, 7, 4)
    X = rng.normal(size=(50, 6))
    expected = route_batch(X, reps, cents, csub, scores, glob)
    # integer queries become float64, non-contiguous queries are copied, int32 subjects accepted
    Xi = np.round(X * 100).astype(np.int64)
    assert_same(route_batch(Xi, reps, cents, csub, scores, glob), reference_route(Xi, reps, cents, csub, scores, glob))
    wide = np.repeat(X, 2, axis=1)[:, ::2]
    assert_same(route_batch(wide, reps, cents, csub.astype(np.int32), scores, glob), expected)


# ---------------------------------------------------------------- real embeddings
def test_real_embeddings_parity_and_subject_recovery(data_dir):
    import json

    emb = np.load(data_dir / "embeddings_all-MiniLM-L6-v2.npy")
    with open(data_dir / "questions.jsonl") as fh:
        categories = np.array([json.loads(line)["category"] for line in fh])
    names, subject_of = np.unique(categories, return_inverse=True)
    rng = np.random.default_rng(7)
    train = rng.random(len(emb)) < 0.6
    reps = np.stack([emb[train & (subject_of == s)].mean(axis=0) for s in range(len(names))])
    # five centroids per subject: means of random fifths of its training questions
    cents, csub = [], []
    for s in range(len(names)):
        rows = np.flatnonzero(train & (subject_of == s))
        for part in np.array_split(rng.permutation(rows), 5):
            cents.append(emb[part].mean(axis=0))
            csub.append(s)
    cents = np.array(cents, dtype=np.float32)
    scores = rng.random((len(cents), 6))
    glob = rng.random(6)
    X = emb[~train]
    got = route_batch(X, reps.astype(np.float32), cents, csub, scores, glob)
    ref = reference_route(X, reps.astype(np.float32), cents, csub, scores, glob)
    np.testing.assert_array_equal(got.subject, ref.subject)
    np.testing.assert_allclose(got.probs, ref.probs, atol=1e-4)
    np.testing.assert_allclose(got.nearest_distance, ref.nearest_distance, atol=1e-6)
    soft = route_batch(X, reps.astype(np.float32), cents, csub, scores, glob, subject_temp=0.05)
    soft_ref = reference_route(X, reps.astype(np.float32), cents, csub, scores, glob, subject_temp=0.05)
    np.testing.assert_allclose(soft.probs, soft_ref.probs, atol=1e-4)
    # nearest subject representative recovers the MMLU-Pro category far above chance (1/14)
    assert np.mean(got.subject == subject_of[~train]) > 0.4


# ---------------------------------------------------------------- the RoutingTables / RouteParams boundary
def test_tables_convert_once_into_read_only_copies():
    reps = np.array([_unit(0), _unit(90)], dtype=np.float32)
    tables = RoutingTables(
        reps,
        [[1, 0], [0, 1]],
        np.array([0, 1], dtype=np.int32),
        [[2, 8], [6, 4]],
        [0.5, 0.5],
        centroid_sizes=np.array([3, 4], dtype=np.int32),
    )
    assert tables.subject_reps.dtype == np.float32  # float32/float64 kept, other numbers become float64
    assert tables.centroids.dtype == np.float64 and tables.centroid_scores.dtype == np.float64
    assert tables.centroid_subject.dtype == np.int64 and tables.centroid_sizes.dtype == np.int64
    assert tables.n_models == 2 and tables.dim == 2
    arrays = [
        tables.subject_reps,
        tables.centroids,
        tables.centroid_subject,
        tables.centroid_scores,
        tables.global_scores,
        tables.centroid_sizes,
    ]
    assert all(a.flags.c_contiguous and not a.flags.writeable for a in arrays)
    # the caller's arrays are not aliased: changing them later does not change the tables
    reps[0] = [5.0, 5.0]
    assert tables.subject_reps[0].tolist() == [1.0, 0.0]
    assert reps.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        tables.centroids[0, 0] = 2.0
    with pytest.raises(AttributeError):
        tables.centroids = np.eye(2)  # type: ignore[misc]
    with pytest.raises(KernelError, match=r"^centroid_sizes: expected shape \(2,\)") as info:
        RoutingTables(reps, reps, [0, 1], [[2, 8], [6, 4]], [0.5, 0.5], centroid_sizes=[1])
    assert info.value.arg == "centroid_sizes"


def test_tables_are_used_in_the_query_dtype(rng):
    reps, cents, csub, scores, glob = random_model(rng, 12, 3, 8, 4)
    t32 = RoutingTables(reps.astype(np.float32), cents.astype(np.float32), csub, scores, glob)
    t64 = t32.astype(np.float64)
    assert t64.subject_reps.dtype == np.float64 and t64.centroids.dtype == np.float64
    assert np.array_equal(t64.centroids, t32.centroids) and t64.centroid_scores is not None
    assert t32.astype(np.float32) is t32 and t64.astype("float64") is t64
    X = queries(rng, cents, 300)
    # float64 queries route against the float64 copy of float32 tables, float32 queries against the tables
    for got, expected in (
        (kernel_route_batch(X, t32), kernel_route_batch(X, t64)),
        (kernel_route_batch(X.astype(np.float32), t64), kernel_route_batch(X.astype(np.float32), t32)),
    ):
        for field in ("probs", "ranked", "subject", "nearest_distance", "alpha"):
            assert np.array_equal(getattr(got, field), getattr(expected, field)), field


def test_route_params_defaults_and_conversion():
    p = RouteParams()
    assert (
        p.k_nearest,
        p.distance_temp,
        p.score_temp,
        p.fallback_distance,
        p.fallback_width,
        p.top_k,
        p.subject_temp,
    ) == (3, 0.1, 0.1, 0.5, 0.2, 3, 0.0)
    q = RouteParams(
        k_nearest=np.int64(2), distance_temp=np.float32(0.5), top_k=np.uint8(1), subject_temp=1, fallback_distance=-1
    )
    assert type(q.k_nearest) is int and type(q.top_k) is int and q.top_k == 1
    assert type(q.distance_temp) is float and q.distance_temp == 0.5
    assert type(q.subject_temp) is float and q.fallback_distance == -1.0
    with pytest.raises(AttributeError):
        q.top_k = 2  # type: ignore[misc]
    # the kernel's default parameters are RouteParams' defaults
    args = _valid()
    X = args.pop("X")
    tables = RoutingTables(**args, centroid_sizes=None)
    with pytest.raises(KernelError, match=r"^top_k: must lie in 1..=2 \(the number of models\), got 3"):
        kernel_route_batch(X, tables)


def test_kernel_and_reference_take_the_boundary_objects_only():
    args = _valid()
    X = args.pop("X")
    tables = RoutingTables(**args)
    for route in (kernel_route_batch, reference.route_batch):
        with pytest.raises(TypeError, match="tables"):
            route(X, tuple(args.values()), RouteParams(top_k=2))
    with pytest.raises(TypeError, match="params"):
        kernel_route_batch(X, tables, {"top_k": 2})
    assert_same(
        kernel_route_batch(X, tables, RouteParams(top_k=2)), reference.route_batch(X, tables, RouteParams(top_k=2))
    )


def test_extension_reads_the_attributes_of_any_object(rng):
    """The extension reads the tables' and parameters' attributes itself, and checks what it reads:
    wrong dtypes, layouts and shapes raise KernelError naming the attribute."""
    from types import SimpleNamespace

    from cascal import _core

    reps, cents, csub, scores, glob = random_model(rng, 8, 3, 7, 4)
    X = queries(rng, cents, 40)
    fields = dict(
        subject_reps=reps,
        centroids=cents,
        centroid_subject=csub.astype(np.int64),
        centroid_scores=scores,
        global_scores=glob,
    )
    params = dict(
        k_nearest=2,
        distance_temp=0.2,
        score_temp=0.3,
        fallback_distance=0.4,
        fallback_width=0.5,
        top_k=4,
        subject_temp=0.05,
    )
    got = RouteResult(*_core.route_batch(X, SimpleNamespace(**fields), SimpleNamespace(**params)))
    assert_same(got, kernel_route_batch(X, RoutingTables(**fields), RouteParams(**params)), atol=0)

    def error(tables=None, route_params=None, x=X):
        with pytest.raises(KernelError) as info:
            _core.route_batch(
                x,
                SimpleNamespace(**{**fields, **(tables or {})}),
                SimpleNamespace(**{**params, **(route_params or {})}),
            )
        assert isinstance(info.value, ValueError) and isinstance(info.value, CascalError)
        assert str(info.value).startswith(f"{info.value.arg}: ")
        return info.value

    assert error(tables={"subject_reps": reps.astype(np.float32)}).arg == "subject_reps"  # not X's dtype
    assert error(tables={"centroids": cents[:, :5]}).arg == "centroids"
    assert error(tables={"centroid_scores": np.asfortranarray(scores)}).arg == "centroid_scores"  # not C-contiguous
    assert error(tables={"centroid_scores": scores.T.copy()}).arg == "centroid_scores"
    assert error(tables={"centroid_subject": csub.astype(np.int32)}).arg == "centroid_subject"
    assert error(route_params={"k_nearest": -1}).arg == "k_nearest"
    assert "must be >= 1" in str(error(route_params={"k_nearest": 0}))  # the core's own check
    assert error(route_params={"score_temp": "hot"}).arg == "score_temp"
    assert error(x=X.astype(np.int64)).arg == "X"
    with pytest.raises(AttributeError, match="top_k"):
        _core.route_batch(
            X, SimpleNamespace(**fields), SimpleNamespace(**{k: v for k, v in params.items() if k != "top_k"})
        )


def test_python_and_rust_defaults_agree():
    """The defaults are written twice, once per language (the Rust core is a crate of its own):
    RouteParams' and the core's RouteParams::default must say the same."""
    import dataclasses
    import re
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "rust" / "cascal-core" / "src" / "routing.rs"
    if not source.exists():
        pytest.skip("the Rust sources are not next to the tests")
    body = re.search(r"impl Default for RouteParams \{.*?Self \{(.*?)\}", source.read_text(), re.S)
    assert body, "RouteParams::default not found"
    rust = {k: float(v) for k, v in re.findall(r"(\w+):\s*([-0-9.e]+)", body.group(1))}
    python = {f.name: float(getattr(RouteParams(), f.name)) for f in dataclasses.fields(RouteParams)}
    assert rust == python


def test_tables_survive_pickle_and_copy_checked_and_read_only():
    import copy
    import pickle

    args = _valid()
    X = args.pop("X")
    tables = RoutingTables(**args, centroid_sizes=[4, 5])
    for clone in (pickle.loads(pickle.dumps(tables)), copy.deepcopy(tables), copy.copy(tables)):
        assert isinstance(clone, RoutingTables)
        for field in (
            "subject_reps",
            "centroids",
            "centroid_subject",
            "centroid_scores",
            "global_scores",
            "centroid_sizes",
        ):
            value = getattr(clone, field)
            assert np.array_equal(value, getattr(tables, field)) and not value.flags.writeable, field
        assert_same(
            kernel_route_batch(X, clone, RouteParams(top_k=2)), kernel_route_batch(X, tables, RouteParams(top_k=2))
        )


# ---------------------------------------------------------------- soft routing skips negligible subjects
@pytest.mark.parametrize("subject_temp", [0.002, 0.01, 0.03])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_soft_routing_with_many_subjects_matches_the_reference(subject_temp, dtype):
    """60 well separated subjects at small temperatures: most subjects of a row are negligible,
    so blocks take the grouped path (rows routed per subject) — or the dense one, for the larger
    temperature; both agree with the reference (which applies the same cutoff), and with a
    reference that weighs every subject up to float rounding."""
    rng = np.random.default_rng(11)
    d, S, C, M = 32, 60, 180, 7
    reps, cents, csub, scores, glob = random_model(rng, d, S, C, M)
    X = queries(rng, cents, 3000).astype(dtype)
    kwargs = dict(k_nearest=3, top_k=M, subject_temp=subject_temp)
    got = route_batch(X, reps.astype(dtype), cents.astype(dtype), csub, scores, glob, **kwargs)
    want = reference_route(X.astype(np.float64), reps, cents, csub, scores, glob, **kwargs)
    if dtype == np.float64:
        assert_same(got, want)
    else:
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-5)
    # the cutoff: subjects below 2^-52 of the nearest one's weight change no probability visibly
    gap = 1.0 - X.astype(np.float64) @ (reps / np.linalg.norm(reps, axis=1, keepdims=True)).T
    gap /= np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    gap -= gap.min(axis=1, keepdims=True)
    skipped = gap / subject_temp > reference.routing.SOFT_SKIP_EXPONENT
    # most (row, subject) pairs are never touched at the small temperatures, few at 0.03
    assert (skipped.mean() > 0.5) == (subject_temp < 0.03), skipped.mean()
    no_cutoff = _reference_without_cutoff(X.astype(np.float64), reps, cents, csub, scores, glob, **kwargs)
    np.testing.assert_allclose(want.probs, no_cutoff.probs, atol=1e-14, rtol=0)


@pytest.mark.parametrize("k_nearest", [1, 2, 3, 5])
@pytest.mark.parametrize("subject_temp", [0.0, 0.02, 1.0])
def test_exact_distance_ties_within_subjects_match_the_reference(k_nearest, subject_temp):
    """Subjects of 1 to 12 centroids with many duplicated centroids, on small-integer vectors whose
    products are exact in any summation order: every tie in distance is exact, so the nearest
    centroids must come out in (distance, index) order exactly as the reference takes them. The
    duplicates carry different scores, so a wrongly broken tie shows in the probabilities.
    Subjects of up to 8 centroids are ranked without branches, larger ones by insertion."""
    rng = np.random.default_rng(13)
    d, sizes, M = 8, [1, 2, 3, 5, 8, 9, 12], 6
    reps = rng.integers(-3, 4, size=(len(sizes), d)).astype(np.float64)
    reps[np.abs(reps).sum(axis=1) == 0, 0] = 1.0
    csub = np.repeat(np.arange(len(sizes)), sizes)
    # each subject's centroids: a few distinct small-integer vectors, repeated
    cents = np.vstack(
        [rng.integers(-2, 3, size=(max(1, n // 3), d))[rng.integers(0, max(1, n // 3), n)] for n in sizes]
    )
    cents = cents.astype(np.float64) + reps[csub]
    cents[np.abs(cents).sum(axis=1) == 0, 0] = 1.0
    scores = rng.random((len(csub), M))
    glob = rng.random(M)
    X = rng.integers(-3, 4, size=(4000, d)).astype(np.float64)
    X[np.abs(X).sum(axis=1) == 0, 0] = 1.0
    kwargs = dict(k_nearest=k_nearest, top_k=M, subject_temp=subject_temp, fallback_distance=0.4)
    got = route_batch(X, reps, cents, csub, scores, glob, **kwargs)
    assert_same(got, reference_route(X, reps, cents, csub, scores, glob, **kwargs))
    # the input really is full of ties: many rows are equidistant from two centroids of a subject
    dists = (
        1.0 - (X / np.linalg.norm(X, axis=1, keepdims=True)) @ (cents / np.linalg.norm(cents, axis=1, keepdims=True)).T
    )
    same_subject_pairs = [(a, b) for a in range(len(csub)) for b in range(a) if csub[a] == csub[b]]
    tied = np.mean([np.any(dists[:, a] == dists[:, b]) for a, b in same_subject_pairs])
    assert tied > 0.5, tied


def _reference_without_cutoff(X, reps, cents, csub, scores, glob, **kwargs):
    """The reference with every subject weighed (cutoff at an exponent no gap reaches)."""
    import cascal.reference.routing as ref_routing

    saved = ref_routing.SOFT_SKIP_EXPONENT
    ref_routing.SOFT_SKIP_EXPONENT = np.inf
    try:
        return reference_route(X, reps, cents, csub, scores, glob, **kwargs)
    finally:
        ref_routing.SOFT_SKIP_EXPONENT = saved


def test_soft_routing_of_one_row_equals_its_routing_in_a_batch():
    """A row routed alone (its block has one row) and inside a large mixed batch gets the same
    ranking and, up to rounding, the same distribution."""
    rng = np.random.default_rng(12)
    reps, cents, csub, scores, glob = random_model(rng, 24, 40, 120, 6)
    X = queries(rng, cents, 2000)
    kwargs = dict(top_k=6, subject_temp=0.01)
    batch = route_batch(X, reps, cents, csub, scores, glob, **kwargs)
    for i in (0, 17, 1999):
        alone = route_batch(X[i : i + 1], reps, cents, csub, scores, glob, **kwargs)
        np.testing.assert_array_equal(alone.ranked[0], batch.ranked[i])
        np.testing.assert_allclose(alone.probs[0], batch.probs[i], atol=1e-14)


# ---------------------------------------------------------------- optional cost table
def _with_costs(rng, reps, cents, csub, scores, glob, *, spread=100.0):
    costs = rng.random(scores.shape) * spread
    costs[rng.random(costs.shape) < 0.1] = 0.0
    return RoutingTables(reps, cents, csub, scores, glob, centroid_costs=costs, global_costs=rng.random(len(glob)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("subject_temp", [0.0, 0.05, 2.0])
def test_cost_table_parity_and_no_effect_on_routing(seed, subject_temp):
    """The kernel's expected costs match the reference's linear mix (hard and soft), and carrying a
    cost table changes nothing else, bit for bit."""
    rng = np.random.default_rng(300 + seed)
    d, S, C, M = [(16, 3, 9, 4), (64, 14, 70, 12), (5, 2, 2, 6), (384, 6, 30, 8)][seed]
    reps, cents, csub, scores, glob = random_model(rng, d, S, C, M)
    X = queries(rng, cents, 1300)  # more than one row block of the kernel
    params = RouteParams(k_nearest=[3, 1, 5, 4][seed], top_k=[3, 12, 1, 8][seed], subject_temp=subject_temp)
    tables = _with_costs(rng, reps, cents, csub, scores, glob)
    got = kernel_route_batch(X, tables, params)
    expected = reference.route_batch(X, tables, params)
    assert_same(got, expected)
    assert got.expected_cost is not None and got.expected_cost.shape == (len(X), M)
    np.testing.assert_allclose(got.expected_cost, expected.expected_cost, rtol=1e-11, atol=1e-10)
    plain = kernel_route_batch(X, RoutingTables(reps, cents, csub, scores, glob), params)
    assert plain.expected_cost is None
    for name in ("probs", "ranked", "subject", "nearest_distance", "alpha"):
        np.testing.assert_array_equal(getattr(got, name), getattr(plain, name))
    # a linear mix of non-negative costs stays within the table's range, per model
    lo = np.minimum(tables.centroid_costs.min(axis=0), tables.global_costs)
    hi = np.maximum(tables.centroid_costs.max(axis=0), tables.global_costs)
    assert (got.expected_cost >= lo - 1e-9).all() and (got.expected_cost <= hi + 1e-9).all()
    # float32 queries mix the same weights up to float32 distances
    got32 = kernel_route_batch(X.astype(np.float32), tables, params)
    assert np.median(np.abs(got32.expected_cost - got.expected_cost)) < 1e-3


def test_cost_table_adversarial():
    """Constant costs mix to that constant whatever the weights; a query far from every niche
    (alpha = 1) gets exactly the global costs; all-NaN niches cost the global costs; huge costs stay finite."""
    reps = np.array([[1.0, 0.0], [0.0, 1.0]])
    cents = np.array([[1.0, 0.05], [0.95, -0.2], [0.0, 1.0]])
    csub = np.array([0, 0, 1])
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [np.nan, np.nan, np.nan]])
    glob = np.array([0.3, 0.6, 0.2])
    const = RoutingTables(
        reps, cents, csub, scores, glob, centroid_costs=np.full((3, 3), 7.5), global_costs=np.full(3, 7.5)
    )
    X = np.array([[1.0, 0.0], [0.9, -0.1], [0.2, 1.0], [-1.0, -1.0], [1e-30, 1e-30]])
    for temp in (0.0, 0.1):
        params = RouteParams(k_nearest=2, top_k=2, subject_temp=temp, fallback_distance=0.4, fallback_width=0.3)
        got = kernel_route_batch(X, const, params)
        np.testing.assert_allclose(got.expected_cost, 7.5, rtol=1e-14)
    ccosts = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [1e6, 1e6, 1e6]])
    gcosts = np.array([10.0, 20.0, 30.0])
    tables = RoutingTables(reps, cents, csub, scores, glob, centroid_costs=ccosts, global_costs=gcosts)
    params = RouteParams(k_nearest=2, top_k=2, fallback_distance=0.4, fallback_width=0.3)
    got = kernel_route_batch(X, tables, params)
    ref = reference.route_batch(X, tables, params)
    np.testing.assert_allclose(got.expected_cost, ref.expected_cost, rtol=1e-12)
    assert got.alpha[3] == 1.0
    np.testing.assert_array_equal(got.expected_cost[3], gcosts)
    np.testing.assert_allclose(got.expected_cost[2], gcosts, rtol=1e-14)  # subject 1's only niche is all-NaN
    huge = RoutingTables(reps, cents, csub, scores, glob, centroid_costs=ccosts * 1e290, global_costs=gcosts * 1e290)
    assert np.isfinite(kernel_route_batch(X, huge, params).expected_cost).all()


@pytest.mark.parametrize(
    "change, arg",
    [
        ({"centroid_costs": np.ones((2, 2)), "global_costs": None}, "global_costs"),
        ({"centroid_costs": None, "global_costs": np.ones(2)}, "centroid_costs"),
        ({"centroid_costs": np.ones((2, 3)), "global_costs": np.ones(2)}, "centroid_costs"),
        ({"centroid_costs": np.ones((2, 2)), "global_costs": np.ones(3)}, "global_costs"),
    ],
)
def test_cost_table_shapes_are_checked(change, arg):
    base = dict(
        subject_reps=np.eye(2),
        centroids=np.eye(2),
        centroid_subject=[0, 1],
        centroid_scores=np.ones((2, 2)),
        global_scores=np.ones(2),
    )
    with pytest.raises(KernelError) as info:
        RoutingTables(**base, **change)
    assert info.value.arg == arg


def test_cost_table_values_are_checked_by_the_kernel():
    tables = RoutingTables(
        np.eye(2),
        np.eye(2),
        [0, 1],
        np.ones((2, 2)),
        np.ones(2),
        centroid_costs=[[1.0, np.nan], [1.0, 1.0]],
        global_costs=[1.0, 1.0],
    )
    with pytest.raises(KernelError) as info:
        kernel_route_batch(np.eye(2), tables, RouteParams(top_k=1))
    assert info.value.arg == "centroid_costs"
    tables = RoutingTables(
        np.eye(2),
        np.eye(2),
        [0, 1],
        np.ones((2, 2)),
        np.ones(2),
        centroid_costs=np.ones((2, 2)),
        global_costs=[1.0, np.inf],
    )
    with pytest.raises(KernelError) as info:
        kernel_route_batch(np.eye(2), tables, RouteParams(top_k=1))
    assert info.value.arg == "global_costs"


def test_cost_table_on_the_grouped_soft_path():
    """Many separated subjects at a small temperature (rows routed per subject): the expected
    costs still equal the reference's linear mix."""
    rng = np.random.default_rng(13)
    reps, cents, csub, scores, glob = random_model(rng, 32, 60, 180, 5)
    tables = _with_costs(rng, reps, cents, csub, scores, glob)
    X = queries(rng, cents, 2000)
    params = RouteParams(top_k=5, subject_temp=0.002)
    got = kernel_route_batch(X, tables, params)
    want = reference.route_batch(X, tables, params)
    assert_same(got, want)
    np.testing.assert_allclose(got.expected_cost, want.expected_cost, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------- optional subject weights
@pytest.mark.parametrize("subject_temp", [0.0, 0.002, 0.03, 0.5, 10.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_subject_weights_match_the_reference_and_change_nothing_else(subject_temp, dtype):
    """Asked for, the kernel returns the (n, S) subject weights it mixed with: the reference's
    (same cutoff: negligible subjects exactly 0), one-hot of ``subject`` when hard, rows summing
    to 1; every other output is the same bits as without them, and without them it is None. 60
    subjects over 3000 rows cover both soft paths (grouped at the small temperatures, dense at
    the large ones) and several row blocks."""
    rng = np.random.default_rng(21)
    d, S, C, M = 32, 60, 180, 7
    reps, cents, csub, scores, glob = random_model(rng, d, S, C, M)
    X = queries(rng, cents, 3000).astype(dtype)
    tables = RoutingTables(reps.astype(dtype), cents.astype(dtype), csub, scores, glob)
    params = RouteParams(k_nearest=3, top_k=M, subject_temp=subject_temp)
    plain = kernel_route_batch(X, tables, params)
    got = kernel_route_batch(X, tables, params, subject_weights=True)
    assert plain.subject_weights is None
    assert_same(got, plain, atol=0)
    w = got.subject_weights
    assert w.shape == (len(X), S) and w.dtype == np.float64
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(np.argmax(w, axis=1), got.subject)
    if subject_temp == 0.0:
        np.testing.assert_array_equal(w, np.eye(S)[got.subject])
    want = reference.route_batch(
        X.astype(np.float64), RoutingTables(reps, cents, csub, scores, glob), params, subject_weights=True
    )
    assert reference.route_batch(X, tables, params).subject_weights is None
    if dtype == np.float64:
        np.testing.assert_allclose(w, want.subject_weights, atol=1e-12, rtol=0)
        np.testing.assert_array_equal(w == 0, want.subject_weights == 0)
    else:  # float32 distances agree to ~1e-6, divided by the temperature
        np.testing.assert_allclose(w, want.subject_weights, atol=1e-4 / max(subject_temp, 0.01) if subject_temp else 0)


@pytest.mark.parametrize("subject_temp", [0.0, 0.01, 0.3])
def test_subject_weights_are_the_weights_of_the_mixture(subject_temp):
    """One centroid per subject makes the routing distribution linear in the subject weights:
    ``probs = (1 - alpha) * W @ sharp + alpha * G``. The returned W reproduces the kernel's probs
    to rounding, so they are the weights it used, not a recomputation nearby."""
    rng = np.random.default_rng(5)
    d, S, M = 16, 9, 5
    reps = rng.normal(size=(S, d))
    scores = rng.random((S, M))
    glob = rng.random(M)
    X = queries(rng, reps, 2000)
    params = RouteParams(top_k=M, subject_temp=subject_temp, score_temp=0.2)
    got = kernel_route_batch(X, RoutingTables(reps, reps, np.arange(S), scores, glob), params, subject_weights=True)
    sharp = np.vstack([_softmax(row, 0.2) for row in scores])
    a = got.alpha[:, None]
    mixed = (1.0 - a) * got.subject_weights @ sharp + a * _softmax(glob, 0.2)[None, :]
    np.testing.assert_allclose(got.probs, mixed, atol=1e-14, rtol=0)
    assert (got.alpha > 0).any() and (got.alpha == 0).any()


def test_subject_weights_of_an_empty_batch_and_through_the_extension(rng):
    from cascal import _core

    reps, cents, csub, scores, glob = random_model(rng, 8, 4, 12, 5)
    tables = RoutingTables(reps, cents, csub, scores, glob)
    empty = kernel_route_batch(np.zeros((0, 8)), tables, RouteParams(), subject_weights=True)
    assert empty.subject_weights.shape == (0, 4)
    X = queries(rng, cents, 10)
    raw = _core.route_batch(X, tables, RouteParams(subject_temp=0.1), True)
    assert len(raw) == 7 and raw[6].shape == (10, 4)
    assert _core.route_batch(X, tables, RouteParams(subject_temp=0.1))[6] is None
