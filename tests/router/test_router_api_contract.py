"""CascalRouter's public surface pinned against independent expectations: labels (``label_base``,
``with_labels``, ``suggest_labels``), routing results, the ensemble answer's ``top_k``, tie-break
statistics of a loaded router, the documented parameter defaults, and :meth:`Niche.best_models`.

Expected values come from the plain numpy reference (:mod:`cascal.reference`) and the rules of
docs/algorithm.md#labels and #choosing-questions-to-label, never from the code under test."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cascal import reference
from cascal.data import NOT_ASKED, ResponseMatrix
from cascal.errors import DataError, InvalidParameterError
from cascal.kernels import ConsensusParams
from cascal.router import CascalRouter
from cascal.router.labels import best_model_probabilities
from cascal.router.niches import Niche

N_OPTIONS = 5
MODELS = ["m0", "m1", "m2", "m3", "m4", "m5"]
#: non-default consensus constants: a mutant that drops one of them from a consensus call is seen
PARAMS = {"z_scale": 2.5, "clamp": (0.1, 0.8), "tau": 0.5}


def make_world(seed: int = 0, per_subject: int = 60):
    """Three subjects (blobs in 12-d), six models of different accuracy with logprobs that are
    higher when right; about 8 % of the answers are not asked, 4 % unparsable, and the last two
    rows were asked of nobody. Returns ``(X, responses)`` with gold."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(12, 3)))[0].T
    n = 3 * per_subject
    X = np.vstack([c + 0.15 * rng.normal(size=(per_subject, 12)) for c in centres]).astype(np.float32)
    subjects = np.repeat(["alg", "bio", "chem"], per_subject)
    gold = rng.integers(0, N_OPTIONS, size=n)
    accuracy = np.array([0.9, 0.75, 0.6, 0.5, 0.4, 0.3])
    right = rng.random((n, len(MODELS))) < accuracy
    wrong = (gold[:, None] + rng.integers(1, N_OPTIONS, size=(n, len(MODELS)))) % N_OPTIONS
    answers = np.where(right, gold[:, None], wrong)
    answers[rng.random(answers.shape) < 0.04] = -1
    answers[rng.random(answers.shape) < 0.08] = NOT_ASKED
    answers[-2:] = NOT_ASKED
    logprobs = np.where(right, -0.3, -1.5) + 0.4 * rng.normal(size=answers.shape)
    logprobs[answers < 0] = np.nan
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(n, N_OPTIONS),
        subjects=subjects,
        model_names=MODELS,
        gold=gold,
        logprobs=logprobs,
    )
    return X, responses


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def router(world):
    X, responses = world
    return CascalRouter(random_state=7, **PARAMS).fit(X, responses)


def reference_scores(responses: ResponseMatrix) -> np.ndarray:
    """Consensus scores by the numpy reference with the router's constants (``PARAMS``)."""
    params = ConsensusParams(z_scale=PARAMS["z_scale"], tau=PARAMS["tau"], clamp=PARAMS["clamp"])
    result = reference.consensus_scores(responses.answers, responses.n_options, responses.logprobs, params)
    return np.asarray(result.scores, dtype=np.float64)


def zero_labels(responses: ResponseMatrix, count: int) -> np.ndarray:
    """Labels on the first ``count`` rows whose answer is option 0 (every label value is 0)."""
    y = np.full(responses.n_questions, -1, dtype=np.int64)
    y[np.flatnonzero(responses.gold == 0)[:count]] = 0
    return y


def expected_suggestions(router: CascalRouter, X, responses: ResponseMatrix, n: int, labels=None, seed: int = 7):
    """docs/algorithm.md#choosing-questions-to-label step by step: the candidates are the models
    with a probability of at least 1 % of being the best (normal posteriors: the calibrated global
    scores and their spread after labels, label-free the global scores and their range; Monte Carlo
    seeded with ``seed``) plus each row's first routing choice; eligible rows are those where the
    candidates asked do not all answer alike; the picks are a seeded uniform sample of them,
    stratified by subject (each pick to the subject furthest below its share), then the others."""
    y = np.full(responses.n_questions, -1, dtype=np.int64) if labels is None else labels
    if (y >= 0).any():
        router = router.with_labels(y, router.label_base(X, responses))
        mean, spread = np.nan_to_num(router.label_fit_.global_scores, nan=0.0), router.label_fit_.spread
    else:
        mean = np.nan_to_num(router.global_scores_, nan=0.0)  # NaN = no data: 0, as routing reads it
        spread = np.full(len(mean), float(np.ptp(mean)) + 1e-6)
    best = best_model_probabilities(mean, spread, seed=seed)
    first = np.argmax(router.route_scores(X), axis=1)
    eligible = np.zeros(responses.n_questions, dtype=bool)
    for q in range(responses.n_questions):
        models = set(np.flatnonzero(best >= 0.01).tolist()) | {int(first[q])}
        given = {int(responses.answers[q, m]) for m in models if responses.answers[q, m] != NOT_ASKED}
        eligible[q] = len(given) > 1
    order = np.random.default_rng(seed).permutation(responses.n_questions)
    names = sorted(set(responses.subjects.tolist()))
    picks: list[int] = []
    for pool in (eligible, ~eligible):
        size = {s: sum(pool[q] and responses.subjects[q] == s for q in range(len(pool))) for s in names}
        taken = {s: sum(pool[q] and y[q] >= 0 and responses.subjects[q] == s for q in range(len(pool))) for s in names}
        queue = {s: [int(q) for q in order if pool[q] and y[q] < 0 and responses.subjects[q] == s] for s in names}
        total, all_rows = sum(taken.values()), sum(size.values())
        while len(picks) < n and any(queue.values()):
            s = max(
                (s for s in names if queue[s]),
                key=lambda s: (size[s] / all_rows * (total + 1) - taken[s], -names.index(s)),
            )
            picks.append(queue[s].pop(0))
            taken[s] += 1
            total += 1
    return np.asarray(picks, dtype=np.int64)


# ---------------------------------------------------------------------- label_base / with_labels
def test_label_base_scores_are_the_consensus_with_the_router_constants_and_logprobs(world, router):
    X, responses = world
    base = router.label_base(X, responses)
    np.testing.assert_allclose(base.scores, reference_scores(responses), atol=1e-9, equal_nan=True)
    # the constants matter here: the kernel's own defaults give other scores
    plain = reference.consensus_scores(responses.answers, responses.n_options, None, ConsensusParams()).scores
    assert not np.allclose(base.scores, plain, equal_nan=True)


@pytest.mark.parametrize("subject", ["aaa", "zzz", "bio2"])
def test_label_base_refuses_subjects_the_router_was_not_fitted_on(world, router, subject):
    # "zzz" sorts after every fitted subject, "aaa" before, "bio2" between
    X, responses = world
    subjects = responses.subjects.copy()
    subjects[5] = subject
    with pytest.raises(DataError, match=r"^responses: has subjects the router was not fitted on$"):
        router.label_base(X, replace(responses, subjects=subjects))


@pytest.mark.parametrize(
    "labels",
    [
        np.zeros(5, dtype=np.int64),  # an integer array of the wrong length
        np.zeros((180, 1), dtype=np.int64),
        np.zeros(180, dtype=np.float64),  # the right length but not integers
        np.zeros(180, dtype=bool),
    ],
)
def test_with_labels_refuses_labels_that_do_not_fit_the_base(world, router, labels):
    X, responses = world
    base = router.label_base(X, responses)
    with pytest.raises(InvalidParameterError, match=r"^labels: expected an integer array of shape \(180,\), got "):
        router.with_labels(labels, base)


def test_labels_that_are_all_option_zero_still_calibrate(world, router):
    # label value 0 (the first option) is a label like any other
    X, responses = world
    y = zero_labels(responses, 12)
    assert (y == 0).sum() == 12
    calibrated = router.with_labels(y.astype(np.int32), router.label_base(X, responses))
    assert calibrated.label_fit_.n_labels == 12
    direct = CascalRouter(random_state=7, **PARAMS).fit(X, responses, labels=y)
    assert np.array_equal(direct.global_scores_, calibrated.global_scores_)
    assert np.array_equal(direct.centroid_scores_, calibrated.centroid_scores_)
    # unsigned labels are integers too
    unsigned = router.with_labels(np.where(y >= 0, y, 0).astype(np.uint8), router.label_base(X, responses))
    assert unsigned.label_fit_.n_labels == responses.n_questions


# ---------------------------------------------------------------------- suggest_labels
def test_suggest_labels_follows_the_documented_rule(world, router):
    X, responses = world
    got = router.suggest_labels(X, responses, 16)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected_suggestions(router, X, responses, 16))


def test_suggest_labels_with_labels_uses_the_calibrated_router_and_its_spread(world, router):
    X, responses = world
    rng = np.random.default_rng(1)
    y = np.full(responses.n_questions, -1, dtype=np.int64)
    rows = rng.choice(responses.n_questions - 2, 40, replace=False)
    y[rows] = responses.gold[rows]
    got = router.suggest_labels(X, responses, 16, labels=y)
    np.testing.assert_array_equal(got, expected_suggestions(router, X, responses, 16, labels=y))
    assert not set(got.tolist()) & set(rows.tolist())


def test_suggest_labels_calibrates_with_labels_of_option_zero(world, router):
    X, responses = world
    y = zero_labels(responses, 15)
    got = router.suggest_labels(X, responses, 16, labels=y)
    np.testing.assert_array_equal(got, expected_suggestions(router, X, responses, 16, labels=y))


def test_suggest_labels_takes_rows_where_the_candidates_agree_last(world, router):
    # candidate rows: three where every answer is unparsable (every model answers alike), one asked
    # of nobody, four ordinary ones: the ordinary ones where the candidates disagree come first
    X, responses = world
    rows = np.arange(8)
    answers = responses.answers[rows].copy()
    answers[:3] = -1
    answers[3] = NOT_ASKED
    logprobs = np.where(answers >= 0, responses.logprobs[rows], np.nan)
    candidates = replace(
        responses,
        answers=answers,
        n_options=responses.n_options[rows],
        subjects=responses.subjects[rows],
        gold=responses.gold[rows],
        logprobs=logprobs,
        question_ids=None,
    )
    got = router.suggest_labels(X[rows], candidates, 8)
    np.testing.assert_array_equal(got, expected_suggestions(router, X[rows], candidates, 8))
    assert sorted(got.tolist()) == list(range(8))
    assert set(got[:4].tolist()) <= {4, 5, 6, 7} and set(got[-4:].tolist()) >= {0, 1, 2, 3}


def test_suggest_labels_reads_a_missing_global_score_as_zero(world, router):
    # a loaded router may carry NaN global scores (RoutingTables: NaN = no data)
    X, responses = world
    record = router.to_record()
    scores = np.asarray(record.tables.global_scores, dtype=np.float64).copy()
    scores[int(np.argmin(scores))] = np.nan
    loaded = CascalRouter.from_record(replace(record, tables=replace(record.tables, global_scores=scores)))
    got = loaded.suggest_labels(X, responses, 16)
    np.testing.assert_array_equal(got, expected_suggestions(loaded, X, responses, 16))


def test_suggest_labels_without_random_state_is_deterministic(world):
    X, responses = world
    free = CascalRouter(random_state=None, subject_temp=0.0, **PARAMS).fit(X, responses)
    first = free.suggest_labels(X, responses, 10)
    assert np.array_equal(first, free.suggest_labels(X, responses, 10))
    assert len(first) == 10


@pytest.mark.parametrize("n", [2.5, True, "3", None, -1])
def test_suggest_labels_refuses_an_n_that_is_not_a_count(world, router, n):
    X, responses = world
    with pytest.raises(InvalidParameterError, match=r"^n: must be a non-negative integer, got "):
        router.suggest_labels(X, responses, n)


def test_suggest_labels_takes_numpy_integers(world, router):
    X, responses = world
    assert router.suggest_labels(X, responses, np.int64(3)).shape == (3,)


# ---------------------------------------------------------------------- routing and the answer
def test_route_names_the_pool(world, router):
    X, _ = world
    routing = router.route(X[:4])
    assert routing.model_names == MODELS
    assert routing.top_models(0) == [MODELS[j] for j in routing.ranked[0]]
    assert routing.expected_cost is None


def first_choice_answers(ranked: np.ndarray, responses: ResponseMatrix) -> np.ndarray:
    """The answer of the first routed model, -1 where it gave no letter or was not asked."""
    chosen = responses.answers[np.arange(len(ranked)), ranked[:, 0]].astype(np.int64)
    return np.where(chosen >= 0, chosen, -1)


def test_answer_uses_the_given_top_k_and_otherwise_the_parameter(world, router):
    X, responses = world
    assert router.top_k == 3
    top1 = first_choice_answers(router.route(X, top_k=1).ranked, responses)
    np.testing.assert_array_equal(router.answer(X, responses, top_k=1), top1)
    # a router whose parameter is 1 answers with its first choice when no top_k is given
    one = CascalRouter(random_state=7, top_k=1, **PARAMS).fit(X, responses)
    np.testing.assert_array_equal(one.answer(X, responses), first_choice_answers(one.route(X).ranked, responses))
    assert one.route(X).ranked.shape == (len(X), 1)


# ---------------------------------------------------------------------- tie-break statistics
def test_tie_break_of_a_loaded_router_with_unusable_statistics(world, router):
    """Statistics that cannot z-score (NaN location; NaN, infinite, zero or negative scale) fall
    back to the convention of docs/algorithm.md#logprob-statistics: ``mu = 0``, ``sigma = 1``."""
    _, responses = world
    record = router.to_record()
    mu = np.array([np.nan, -1.0, -0.5, np.inf, -1.0, -0.8])
    sigma = np.array([0.5, 0.0, np.nan, 0.4, -2.0, np.inf])
    loaded = CascalRouter.from_record(replace(record, stats_mu=mu, stats_sigma=sigma))
    z = loaded.tie_break_confidence(responses)
    lp = responses.logprobs.astype(np.float64)
    want = np.stack(
        [lp[:, 0] / 0.5, lp[:, 1] + 1.0, lp[:, 2] + 0.5, lp[:, 3] / 0.4, lp[:, 4] + 1.0, lp[:, 5] + 0.8], axis=1
    )
    assert z.dtype == np.float64 and z.shape == lp.shape
    np.testing.assert_allclose(z, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(z).sum() == np.isnan(lp).sum()


# ---------------------------------------------------------------------- Niche.best_models
def test_best_models_are_the_top_three_by_score_ties_to_the_lower_column():
    names = [f"model{i}" for i in range(40)]
    scores = np.zeros(40)
    scores[[31, 7, 22, 3, 38, 15]] = [0.9, 0.5, 0.5, 0.5, 0.5, 0.1]
    niche = Niche(subject="s", centroid=np.ones(4) / 2, size=10, scores=scores)
    assert niche.best_models(names) == ["model31", "model3", "model7"]
    assert niche.best_models(names, top=6) == ["model31", "model3", "model7", "model22", "model38", "model15"]
    # below the scored models every other one scores 0: they follow in column order
    assert niche.best_models(names, top=10)[6:] == ["model0", "model1", "model2", "model4"]


# ---------------------------------------------------------------------- parameters
def documented_defaults() -> dict[str, object]:
    """The defaults of the parameter table of docs/algorithm.md#parameters, parsed from the page
    (first token of the default column: a number, a pair, a quoted string or None)."""
    import ast
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "algorithm.md").read_text(encoding="utf-8")
    table = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    out: dict[str, object] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        default = cells[1].split(" (")[0] if not cells[1].startswith("(") else cells[1].split(")")[0] + ")"
        out[cells[0].strip("`")] = ast.literal_eval(default.strip("`").strip())
    return out


def test_defaults_are_the_documented_ones():
    documented = documented_defaults()
    assert len(documented) == 25
    params = CascalRouter().get_params(deep=False)
    assert set(params) == set(documented)
    for name, value in documented.items():
        assert params[name] == value and type(params[name]) is type(value), name


NON_DEFAULT = {
    "z_scale": 1.7,
    "clamp": (0.2, 0.7),
    "tau": 0.6,
    "min_consensus": 0.4,
    "max_niches": 2,
    "clustering": "kmeans",
    "linkage": "average",
    "min_niche_size": 4,
    "max_cluster_points": 64,
    "min_silhouette": 0.2,
    "merge_threshold": 0.3,
    "prune_jaccard": 0.5,
    "k_nearest": 2,
    "distance_temp": 0.3,
    "score_temp": 0.4,
    "fallback_distance": 0.6,
    "fallback_quantile": 0.9,
    "fallback_width": 0.5,
    "top_k": 2,
    "subject_representative": "centroids",
    "subject_temp": 0.07,
    "random_state": 11,
    "embedding_model": "mini",
    "cost_weight": 0.5,
    "embedding_sha256": "0f" * 32,
}


def test_constructor_arguments_are_stored_as_given():
    router = CascalRouter(**NON_DEFAULT)
    assert router.get_params(deep=False) == NON_DEFAULT
    for name, value in NON_DEFAULT.items():
        assert getattr(router, name) is value, name


def test_fit_warns_about_a_silent_model_at_the_callers_line(world):
    X, responses = world
    answers = responses.answers.copy()
    answers[:, 4] = NOT_ASKED
    silent = replace(responses, answers=answers, logprobs=None)
    with pytest.warns(UserWarning, match=r"^CascalRouter\.fit: 1 of 6 models have no usable answer") as caught:
        CascalRouter(random_state=0).fit(X, silent)
    assert [w.filename for w in caught] == [__file__]


def test_routing_uses_every_routing_parameter_read_at_each_call(world):
    from cascal.kernels import RouteParams

    X, responses = world
    given = {"k_nearest": 2, "distance_temp": 0.3, "score_temp": 0.4, "fallback_width": 0.5, "top_k": 2}
    router = CascalRouter(random_state=7, fallback_distance=0.05, subject_temp=0.03, **given, **PARAMS)
    router.fit(X, responses)
    queries = np.random.default_rng(5).normal(size=(30, X.shape[1]))
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for change in ({}, {"score_temp": 0.05, "distance_temp": 0.02, "k_nearest": 1, "top_k": 4}):
        router.set_params(**change)
        values = {**given, **change}
        params = RouteParams(fallback_distance=0.05, subject_temp=0.03, **values)
        assert router.route_params() == params
        ref = reference.route_batch(unit, router.tables_, params)
        got = router.route_details(queries)
        np.testing.assert_allclose(got.probs, ref.probs, atol=1e-6)
        assert got.ranked.shape == (30, values["top_k"])
        assert (ref.alpha > 0).any()  # the fallback width is in play


def test_the_trust_diagnostic_names_the_consensus_favourite_whatever_its_column(world):
    # m0 is right on 90 % of the questions, the others on 75 % or less: the consensus ranks it
    # first; with the columns reversed it is the last column
    X, responses = world
    order = np.arange(len(MODELS))[::-1]
    reversed_pool = replace(
        responses,
        answers=responses.answers[:, order],
        logprobs=responses.logprobs[:, order],
        model_names=[MODELS[i] for i in order],
    )
    for pool in (responses, reversed_pool):
        fitted = CascalRouter(random_state=7, **PARAMS).fit(X, pool)
        assert fitted.model_names_[int(np.argmax(fitted.global_scores_))] == "m0"
        assert fitted.diagnostics_.favourite == "m0"


def test_label_base_refuses_answers_of_another_pool_and_names_both(world, router):
    X, responses = world
    renamed = replace(responses, model_names=[f"other-{name}" for name in responses.model_names])
    with pytest.raises(ValueError) as info:
        router.label_base(X, renamed)
    message = str(info.value)
    assert message.startswith("responses: model columns")
    assert "other-" + MODELS[0] in message and repr(MODELS[0]) in message
