"""CascalRouter with a few labels: validation, the unchanged label-free fit, the estimator on a
pool where one strong model dissents from a correlated weak crowd, active selection and the
trust diagnostic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cascal.data import ResponseMatrix
from cascal.errors import DataError, InvalidParameterError
from cascal.router import CascalRouter
from cascal.router.labels import fit_consensus_prior, looks_random, overrule_contradicted

N_OPTIONS = 6
CROWD = [f"crowd{i}" for i in range(6)]
MODELS = ["strong", *CROWD]


def lone_strong_world(seed: int = 0, per_subject: int = 150, n_subjects: int = 3, trap: float = 0.45):
    """``n_subjects`` subjects, each a blob in 16-d. ``strong`` is right on 90 % of the questions;
    the six crowd models share a *trap*: on a ``trap`` share of the questions each falls (with
    probability 0.85) for the same wrong option, elsewhere each is right with probability 0.8.
    The crowd's plurality is therefore wrong on the trap questions, and the consensus ranks the
    strong model below the crowd. Returns ``(X, responses)``; gold is the true answer."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(16, n_subjects)))[0].T
    n = per_subject * n_subjects
    X = np.vstack([c + 0.1 * rng.normal(size=(per_subject, 16)) for c in centres]).astype(np.float32)
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], per_subject)
    gold = rng.integers(0, N_OPTIONS, size=n)
    trap_answer = (gold + rng.integers(1, N_OPTIONS, size=n)) % N_OPTIONS
    is_trap = rng.random(n) < trap
    answers = np.empty((n, len(MODELS)), dtype=np.int64)
    wrong = (gold[:, None] + rng.integers(1, N_OPTIONS, size=(n, len(MODELS)))) % N_OPTIONS
    answers[:, 0] = np.where(rng.random(n) < 0.9, gold, wrong[:, 0])
    for m in range(1, len(MODELS)):
        fooled = is_trap & (rng.random(n) < 0.85)
        right = ~is_trap & (rng.random(n) < 0.8)
        answers[:, m] = np.where(fooled, trap_answer, np.where(right, gold, wrong[:, m]))
    responses = ResponseMatrix(
        answers=answers, n_options=np.full(n, N_OPTIONS), subjects=subjects, model_names=MODELS, gold=gold
    )
    return X, responses


def random_labels(responses: ResponseMatrix, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.full(responses.n_questions, -1, dtype=np.int64)
    rows = rng.choice(responses.n_questions, n, replace=False)
    y[rows] = responses.gold[rows]
    return y


def first_choice_accuracy(router: CascalRouter, X: np.ndarray, responses: ResponseMatrix) -> float:
    first = router.route(X, top_k=1).ranked[:, 0]
    return float((responses.answers[np.arange(len(first)), first] == responses.gold).mean())


@pytest.fixture(scope="module")
def world():
    return lone_strong_world()


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "labels, error, text",
    [
        (np.zeros(5, dtype=np.int64), InvalidParameterError, "labels: expected shape"),
        (np.zeros((450, 1), dtype=np.int64), InvalidParameterError, "labels: expected shape"),
        (np.zeros(450, dtype=np.float64), InvalidParameterError, "labels: expected an integer array"),
        (np.zeros(450, dtype=bool), InvalidParameterError, "labels: expected an integer array"),
    ],
)
def test_labels_of_the_wrong_shape_or_type_are_refused(world, labels, error, text):
    X, responses = world
    with pytest.raises(error, match=text):
        CascalRouter(random_state=0).fit(X, responses, labels=labels)


@pytest.mark.parametrize("bad_value, row", [(N_OPTIONS, 7), (-2, 3), (99, 0)])
def test_a_label_outside_its_options_names_the_first_bad_row(world, bad_value, row):
    X, responses = world
    y = np.full(responses.n_questions, -1, dtype=np.int64)
    y[row] = bad_value
    y[row + 20] = bad_value  # a later bad row is not the one reported
    with pytest.raises(DataError, match=rf"labels: row {row} is {bad_value} but its question has {N_OPTIONS} options"):
        CascalRouter(random_state=0).fit(X, responses, labels=y)


# ---------------------------------------------------------------------- no labels = today's fit
@pytest.mark.parametrize("labels", [None, "all-unlabelled"])
def test_fit_without_labels_is_bit_identical(world, labels):
    X, responses = world
    plain = CascalRouter(random_state=0).fit(X, responses)
    y = None if labels is None else np.full(responses.n_questions, -1, dtype=np.int32)
    other = CascalRouter(random_state=0).fit(X, responses, labels=y)
    for field in (
        "subject_reps",
        "centroids",
        "centroid_subject",
        "centroid_scores",
        "global_scores",
        "centroid_sizes",
    ):
        a, b = getattr(plain.tables_, field), getattr(other.tables_, field)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), field
    assert plain.fitted_constants() == other.fitted_constants()
    assert (plain.route(X).ranked == other.route(X).ranked).all()
    assert not hasattr(other, "label_fit_")


def test_fit_with_labels_equals_label_free_fit_plus_with_labels(world):
    X, responses = world
    y = random_labels(responses, 30, seed=1)
    direct = CascalRouter(random_state=0).fit(X, responses, labels=y)
    free = CascalRouter(random_state=0).fit(X, responses)
    later = free.with_labels(y, free.label_base(X, responses))
    assert np.array_equal(direct.centroid_scores_, later.centroid_scores_)
    assert np.array_equal(direct.global_scores_, later.global_scores_)
    # the label-free router itself is untouched
    assert not np.array_equal(free.global_scores_, later.global_scores_)
    assert np.array_equal(free.centroids_, later.centroids_)


def test_labels_and_prices_compose(world):
    # labels change the scores only, prices the cost tables only
    X, responses = world
    priced = replace(responses, cost=np.full(responses.answers.shape, 100.0, dtype=np.float32))
    prices = {m: (1.0, 2.0 + i) for i, m in enumerate(priced.model_names)}
    y = random_labels(priced, 20, seed=0)
    both = CascalRouter(random_state=0).fit(X, priced, y, prices=prices)
    costs_only = CascalRouter(random_state=0).fit(X, priced, prices=prices)
    labels_only = CascalRouter(random_state=0).fit(X, priced, y)
    assert np.array_equal(both.tables_.centroid_costs, costs_only.tables_.centroid_costs)
    assert np.array_equal(both.centroid_scores_, labels_only.centroid_scores_)
    assert not np.array_equal(both.centroid_scores_, costs_only.centroid_scores_)


# ---------------------------------------------------------------------- the estimator
def test_labels_find_the_strong_model_the_crowd_outvotes(world):
    X, responses = world
    free = CascalRouter(random_state=0).fit(X, responses)
    # the premise: without labels the consensus prefers the crowd
    assert free.model_names_[int(np.argmax(free.global_scores_))] != "strong"
    free_acc = first_choice_accuracy(free, X, responses)
    base = free.label_base(X, responses)
    strong_acc = float((responses.answers[:, 0] == responses.gold).mean())
    for seed in range(5):
        router = free.with_labels(random_labels(responses, 20, seed), base)
        assert router.model_names_[int(np.argmax(router.global_scores_))] == "strong"
        assert first_choice_accuracy(router, X, responses) >= strong_acc - 0.01 > free_acc + 0.15


def test_labels_that_agree_with_the_consensus_keep_its_ranking():
    # a pool without trap: the crowd's plurality is right, consensus ranks the strong model first
    X, responses = lone_strong_world(trap=0.0)
    free = CascalRouter(random_state=0).fit(X, responses)
    base = free.label_base(X, responses)
    order = np.argsort(-free.global_scores_, kind="stable")
    for seed in range(3):
        router = free.with_labels(random_labels(responses, 20, seed), base)
        assert router.label_fit_.prior.follows.min() > 0.5
        assert int(np.argmax(router.global_scores_)) == order[0]


def test_consensus_prior_recovers_its_link_and_the_outlier():
    # 12 followers right with probability sigmoid(-0.5 + 0.8 * logit(s)); model 12 right 90 % of
    # the time whatever its consensus score (which is low where it dissents)
    rng = np.random.default_rng(3)
    n_q, M = 400, 13
    s = rng.uniform(0.02, 0.98, size=(n_q, M))
    eta = -0.5 + 0.8 * np.log(s / (1 - s))
    correct = (rng.random((n_q, M)) < 1 / (1 + np.exp(-eta))).astype(float)
    correct[:, 12] = rng.random(n_q) < 0.9
    prior = fit_consensus_prior(correct, s, s)
    assert prior.alpha == pytest.approx(-0.5, abs=0.15) and prior.beta == pytest.approx(0.8, abs=0.1)
    assert prior.follows[12] < 0.01 and prior.follows[:12].min() > 0.9
    assert prior.accuracy[12] == pytest.approx(correct[:, 12].mean(), abs=0.01)
    # followers keep the calibrated consensus' estimate: these labels do not contradict it
    assert np.abs(prior.accuracy[:12] - prior.consensus_accuracy[:12]).max() < 0.02


def test_looks_random_tells_a_uniform_sample_from_a_chosen_one():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, size=(2000, 5))
    uniform = [looks_random(scores[rng.choice(2000, 50, replace=False)], scores) for _ in range(40)]
    assert sum(uniform) >= 34  # a 5 % test: about 38 of 40
    hardest = np.argsort(scores.max(axis=1))[:50]
    assert not looks_random(scores[hardest], scores)


def test_a_significant_head_to_head_win_overrules_the_consensus():
    # model 0 is the estimated best; on 40 labels model 1 is right where model 0 is wrong 20
    # times and the reverse twice (one-sided sign test p ~ 6e-5 < 0.05 / 2)
    y = np.zeros((40, 3))
    y[:20, 1] = 1
    y[20:22, 0] = 1
    y[22:, :2] = 1
    asked = np.ones_like(y, dtype=bool)
    follower, own = np.array([0.8, 0.5, 0.4]), (y.sum(axis=0) + 1) / 42
    r = overrule_contradicted(y, asked, np.ones(3), follower, own)
    assert r.tolist() == [1.0, 0.0, 1.0]
    # 6 against 2 is not significant: nothing changes
    y2 = y.copy()
    y2[6:20, 1] = 0
    assert overrule_contradicted(y2, asked, np.ones(3), follower, own).tolist() == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------------- suggest_labels
def test_suggest_labels_skips_labelled_rows_and_spreads_over_subjects(world):
    X, responses = world
    router = CascalRouter(random_state=0).fit(X, responses)
    first = router.suggest_labels(X, responses, 12)
    assert len(first) == 12 and len(set(first.tolist())) == 12
    # 3 subjects, 12 rows: 4 from each
    assert sorted(np.unique(responses.subjects[first], return_counts=True)[1].tolist()) == [4, 4, 4]
    y = np.full(responses.n_questions, -1, dtype=np.int64)
    y[first] = responses.gold[first]
    second = router.suggest_labels(X, responses, 12, labels=y)
    assert not set(second.tolist()) & set(first.tolist())
    # asking for more than is unlabelled returns every unlabelled row once
    y[:] = responses.gold
    y[[5, 77, 300]] = -1
    assert sorted(router.suggest_labels(X, responses, 10, labels=y).tolist()) == [5, 77, 300]
    assert router.suggest_labels(X, responses, 0).shape == (0,)


def test_suggested_rows_separate_the_candidates(world):
    X, responses = world
    router = CascalRouter(random_state=0).fit(X, responses)
    rows = router.suggest_labels(X, responses, 20)
    # a suggested question is one where the pool disagrees (a unanimous one tells nothing apart)
    unanimous = (responses.answers == responses.answers[:, :1]).all(axis=1)
    assert not unanimous[rows].any()


def test_suggest_labels_validates_n(world):
    X, responses = world
    router = CascalRouter(random_state=0).fit(X, responses)
    with pytest.raises(InvalidParameterError, match="n: must be a non-negative integer"):
        router.suggest_labels(X, responses, -1)


# ---------------------------------------------------------------------- real data (one seed)
def test_fifty_random_labels_find_the_lone_strong_model_of_pool_all(data_dir):
    """Pool ``all``, seed 0: label-free CASCAL trails the best single model by > 15 points; with 50
    random training labels (3 draws) it must come within 2 points of it, and labels that only
    confirm the consensus (pool ``large``) must leave its routing unchanged."""
    from cascal.evaluation.metrics import ensemble_correct, model_accuracy
    from cascal.evaluation.protocol import make_split, resolve_pool
    from cascal.io import load_dataset

    data = load_dataset(data_dir, out_of_range="unparsable")
    for spec in ("all", "large"):
        split = make_split(data, resolve_pool(spec, data.model_names), 0)
        train, test = split.train, split.test
        blank = train.with_gold(np.full(train.n_questions, -1, dtype=np.int8))
        free = CascalRouter(random_state=0).fit(train.embeddings, blank)
        base = free.label_base(train.embeddings, blank)
        best = model_accuracy(test.answers, test.gold).max()

        def top1(router: CascalRouter, test: ResponseMatrix = test) -> float:
            ranked = router.route(test.embeddings, top_k=1).ranked
            return float(ensemble_correct(ranked, test.answers, test.gold).mean())

        free_top1 = top1(free)
        for draw in range(3):
            y = random_labels(train, 50, draw)
            labelled = top1(free.with_labels(y, base))
            if spec == "all":
                assert free_top1 < best - 0.15
                assert labelled >= best - 0.02
            else:
                assert abs(labelled - free_top1) <= 0.003


# ---------------------------------------------------------------------- diagnostics
def weak_crowd_world(seed: int = 5):
    """:func:`lone_strong_world` without trap, but the six crowd models right only 35 % of the
    time: the plurality is weakly supported on most questions."""
    X, responses = lone_strong_world(trap=0.0)
    rng = np.random.default_rng(seed)
    answers, gold = responses.answers.copy(), responses.gold
    for m in range(1, len(MODELS)):
        right = rng.random(gold.size) < 0.35
        answers[:, m] = np.where(right, gold, (gold + rng.integers(1, N_OPTIONS, size=gold.size)) % N_OPTIONS)
    return X, replace(responses, answers=answers)


def test_diagnostics_warn_when_the_plurality_is_weakly_supported():
    X, responses = weak_crowd_world()
    router = CascalRouter(random_state=0).fit(X, responses)
    diag = router.diagnostics_
    assert not diag.trustworthy and diag.trust < 0.5
    assert diag.recommended_labels == 50 and "label 50 questions" in diag.message
    assert any("no answer has a majority" in reason for reason in diag.reasons)
    from cascal.pipeline.train import describe

    assert "warning: consensus trust" in describe(router)
    # and a few labels then find the strong model the weak crowd hides
    y = random_labels(responses, 20, seed=0)
    calibrated = router.with_labels(y, router.label_base(X, responses))
    assert calibrated.model_names_[int(np.argmax(calibrated.global_scores_))] == "strong"


def test_fit_diagnostics_are_the_diagnostic_of_the_fitted_consensus():
    """``fit`` takes the diagnostic beside the niche search: it must still be the one of the fitted
    global scores and consensus (a wrong argument would change the favourite or the trust)."""
    from cascal.kernels import consensus_scores
    from cascal.router.diagnostics import diagnose

    for X, responses in (weak_crowd_world(), lone_strong_world(trap=0.0)):
        router = CascalRouter(random_state=0).fit(X, responses)
        consensus = consensus_scores(responses.answers, responses.n_options, responses.logprobs)
        want = diagnose(responses, consensus.plurality, consensus.agreement, router.tables_.global_scores)
        assert router.diagnostics_ == want
        assert router.diagnostics_.favourite == router.model_names_[int(np.argmax(router.tables_.global_scores))]


def test_diagnostics_stay_quiet_on_a_reliable_consensus():
    X, responses = lone_strong_world(trap=0.0)
    router = CascalRouter(random_state=0).fit(X, responses)
    assert router.diagnostics_.trustworthy and router.diagnostics_.recommended_labels == 0
    from cascal.pipeline.train import describe

    assert "warning" not in describe(router)
