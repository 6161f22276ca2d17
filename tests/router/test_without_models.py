"""CascalRouter.without_models: a fitted router that never routes to some models, without refitting.

What must hold exactly: the dropped models are never ranked; every niche's sharpened distribution
over the kept models is the original one restricted and renormalised (so a query routed through a
single niche, or through the global fallback alone, ranks the kept models in their original order);
expected costs, a linear mix with score-independent weights, are the original columns. A query that
mixes several niches renormalises each niche separately, so its ranking may differ: not asserted.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
from synthetic_router import fit_synthetic_router, synthetic_queries
from test_router import make_world

from cascal.cli import main
from cascal.errors import CascalError, InvalidParameterError, UnknownModelError
from cascal.router import CascalRouter

DROP = ["model-1", "model-3"]


@pytest.fixture(scope="module")
def fitted():
    return fit_synthetic_router(n=1200, n_models=5, priced=True)


@pytest.fixture(scope="module")
def queries(fitted):
    return synthetic_queries(fitted[1], 400, seed=7)


def kept_columns(router, names=DROP):
    return [i for i, n in enumerate(router.model_names_) if n not in names]


def sharpened(scores, temp):
    z = np.where(np.isnan(scores), -np.inf, scores / temp)
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_dropped_models_are_never_routed_to(fitted, queries):
    router, _ = fitted
    smaller = router.without_models(DROP)
    assert smaller.model_names_ == ["model-0", "model-2", "model-4"]
    routing = smaller.route(queries, top_k=3)
    assert routing.ranked.shape == (len(queries), 3)
    assert set(np.unique(routing.ranked)) <= {0, 1, 2}
    assert routing.scores.shape == (len(queries), 3)
    np.testing.assert_allclose(routing.scores.sum(axis=1), 1.0)
    assert not {smaller.model_names_[i] for i in routing.ranked.ravel()} & set(DROP)


def test_tables_lose_exactly_the_dropped_columns(fitted):
    router, _ = fitted
    smaller = router.without_models(DROP)
    keep = kept_columns(router)
    t, s = router.tables_, smaller.tables_
    np.testing.assert_array_equal(s.centroid_scores, t.centroid_scores[:, keep])
    np.testing.assert_array_equal(s.global_scores, t.global_scores[keep])
    np.testing.assert_array_equal(s.centroid_costs, t.centroid_costs[:, keep])
    np.testing.assert_array_equal(s.global_costs, t.global_costs[keep])
    np.testing.assert_array_equal(smaller.stats_.mu, router.stats_.mu[keep])
    np.testing.assert_array_equal(smaller.stats_.sigma, router.stats_.sigma[keep])
    # the niches, centroids, subjects and constants are the fitted ones
    for field in ("subject_reps", "centroids", "centroid_subject", "centroid_sizes"):
        np.testing.assert_array_equal(getattr(s, field), getattr(t, field))
    assert smaller.fitted_constants() == router.fitted_constants()
    assert smaller.subject_names_ == router.subject_names_
    for subject, niches in smaller.niches_.items():
        for new, old in zip(niches, router.niches_[subject]):
            np.testing.assert_array_equal(new.scores, np.asarray(old.scores)[keep])
            assert new.size == old.size
    # the original is untouched
    assert len(router.model_names_) == 5 and router.tables_.centroid_scores.shape[1] == 5


def test_each_niche_keeps_the_relative_order_of_the_kept_models(fitted):
    """softmax restricted to a subset and renormalised is the softmax of the subset's scores."""
    router, _ = fitted
    smaller = router.without_models(DROP)
    keep = kept_columns(router)
    T = router.score_temp
    full = sharpened(router.centroid_scores_, T)[:, keep]
    np.testing.assert_allclose(sharpened(smaller.centroid_scores_, T), full / full.sum(axis=1, keepdims=True))
    for old, new in zip(router.centroid_scores_, smaller.centroid_scores_):
        assert list(np.argsort(-new, kind="stable")) == list(np.argsort(-old[keep], kind="stable"))


def one_niche(router):
    """A copy routing every query through its single nearest niche, with no fallback blend."""
    r = copy.copy(router)
    r.k_nearest, r.subject_temp_, r.fallback_distance_ = 1, 0.0, 2.0
    return r


def test_a_query_through_one_niche_ranks_the_kept_models_as_before(fitted, queries):
    router, _ = fitted
    smaller = one_niche(router.without_models(DROP))
    full = one_niche(router)
    keep = kept_columns(router)
    before = full.route_details(queries, top_k=5).probs[:, keep]
    after = smaller.route_details(queries, top_k=3)
    np.testing.assert_allclose(after.probs, before / before.sum(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)
    expected_order = np.argsort(-before, axis=1, kind="stable")
    np.testing.assert_array_equal(after.ranked, expected_order)


def test_the_global_fallback_ranks_the_kept_models_as_before(fitted, queries):
    router, _ = fitted
    keep = kept_columns(router)
    far = []
    for r in (router, router.without_models(DROP)):
        r = copy.copy(r)
        r.fallback_distance_, r.fallback_width = 0.0, 1e-9  # every query falls back to the global ranking
        far.append(r.route_details(queries).probs)
    before = far[0][:, keep]
    np.testing.assert_allclose(far[1], before / before.sum(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)


def test_expected_costs_are_the_kept_columns(fitted, queries):
    router, _ = fitted
    keep = kept_columns(router)
    before = router.route_details(queries).expected_cost
    after = router.without_models(DROP).route_details(queries).expected_cost
    np.testing.assert_allclose(after, before[:, keep], rtol=1e-12)


def test_cost_weighted_routing_uses_the_smaller_tables(fitted, queries):
    router, _ = fitted
    router.route(queries, cost_weight=0.01)  # builds the full router's weighted-tables cache
    smaller = router.without_models(DROP)
    routing = smaller.route(queries, top_k=2, cost_weight=0.01)
    assert routing.scores.shape[1] == 3 and routing.ranked.max() <= 2


def test_refusals_name_the_problem(fitted):
    router, _ = fitted
    with pytest.raises(UnknownModelError, match=r"\['gpt-9'\] not in the router's pool \['model-0'"):
        router.without_models(["model-0", "gpt-9"])
    with pytest.raises(InvalidParameterError, match=r"would leave no model to route to"):
        router.without_models([f"model-{j}" for j in range(5)])
    with pytest.raises(InvalidParameterError, match=r"the string 'model-0'"):
        router.without_models("model-0")
    with pytest.raises(CascalError):
        CascalRouter().without_models(["model-0"])  # not fitted


def test_dropping_nothing_or_duplicates(fitted, queries):
    router, _ = fitted
    same = router.without_models([])
    np.testing.assert_array_equal(same.route(queries).ranked, router.route(queries).ranked)
    twice = router.without_models(["model-1", "model-1"])
    assert twice.model_names_ == ["model-0", "model-2", "model-3", "model-4"]


def test_without_models_takes_milliseconds(fitted):
    router, _ = fitted
    start = time.perf_counter()
    router.without_models(DROP)
    assert time.perf_counter() - start < 0.5  # a table slice; typically well under 10 ms


def test_saved_and_loaded_like_any_router(fitted, queries, tmp_path):
    router, _ = fitted
    smaller = router.without_models(DROP)
    smaller.save(tmp_path / "smaller.cascal")
    loaded = CascalRouter.load(tmp_path / "smaller.cascal")
    assert loaded.model_names_ == smaller.model_names_
    a, b = smaller.route_details(queries), loaded.route_details(queries)
    np.testing.assert_array_equal(a.ranked, b.ranked)
    np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=0)
    np.testing.assert_allclose(a.expected_cost, b.expected_cost, rtol=0, atol=0)
    # a loaded router can be dropped from again
    assert loaded.without_models(["model-0"]).model_names_ == ["model-2", "model-4"]


def test_a_label_calibrated_router_drops_its_label_columns_too():
    X, responses, _, _ = make_world(seed=3, noise=0.2)
    labels = np.where(np.arange(responses.n_questions) % 5 == 0, responses.gold, -1).astype(np.int64)
    router = CascalRouter(random_state=0).fit(X, responses, labels)
    drop = [responses.model_names[0]]
    smaller = router.without_models(drop)
    keep = kept_columns(router, drop)
    fit, new = router.label_fit_, smaller.label_fit_
    np.testing.assert_array_equal(new.spread, fit.spread[keep])
    np.testing.assert_array_equal(new.accuracy, fit.accuracy[:, keep])
    np.testing.assert_array_equal(new.prior.follows, fit.prior.follows[keep])
    np.testing.assert_array_equal(new.centroid_scores, fit.centroid_scores[:, keep])
    # routing keeps the tables the labels chose (docs/algorithm.md#labels, step 7), sliced
    np.testing.assert_array_equal(smaller.centroid_scores_, router.centroid_scores_[:, keep])
    assert drop[0] not in smaller.model_names_


def test_cli_drop_writes_a_router_without_the_models(fitted, queries, tmp_path, capsys):
    router, _ = fitted
    router.save(tmp_path / "full.cascal")
    out = tmp_path / "smaller.cascal"
    status = main(
        ["drop", str(tmp_path / "full.cascal"), "--model", "model-1", "--model", "model-3", "--out", str(out)]
    )
    assert status == 0
    stdout = capsys.readouterr().out
    assert "dropped model-1, model-3 in" in stdout and "(no refit)" in stdout
    assert "routes to 3 models: model-0, model-2, model-4" in stdout
    loaded = CascalRouter.load(out)
    expected = router.without_models(DROP).route_details(queries)
    np.testing.assert_array_equal(loaded.route_details(queries).ranked, expected.ranked)


def test_cli_drop_errors_name_the_problem(fitted, tmp_path, capsys):
    router, _ = fitted
    path = tmp_path / "full.cascal"
    router.save(path)
    assert main(["drop", str(path), "--model", "gpt-9", "--out", str(tmp_path / "x.cascal")]) == 2
    assert "['gpt-9'] not in the router's pool" in capsys.readouterr().err
    assert not (tmp_path / "x.cascal").exists()
    assert main(["drop", str(path), "--model", "model-0", "--out", str(path)]) == 2
    assert "is the input router" in capsys.readouterr().err
    assert main(["drop", str(tmp_path / "missing.cascal"), "--model", "model-0", "--out", str(tmp_path / "y")]) == 2
    assert "missing.cascal" in capsys.readouterr().err
