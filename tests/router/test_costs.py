"""Cost-aware routing: prices, per-niche expected cost tables, cost_weight, cost_weight_for and the
router file (docs/algorithm.md#cost-aware-routing)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.data import ResponseMatrix
from cascal.errors import ConfigError, InvalidParameterError
from cascal.router import CascalRouter
from cascal.router.costs import Prices, input_tokens, load_prices, question_costs

N_OPTIONS = 4
MODELS = ["strong", "cheap", "f1", "f2"]
#: USD per million tokens (input, output)
PRICES = {"strong": (10.0, 30.0), "cheap": (0.1, 0.2), "f1": (1.0, 1.0), "f2": (1.0, 1.0)}


def make_world(seed: int = 0, per_niche: int = 60):
    """Two subjects x two niches in 12-d. ``strong`` is always right; ``cheap`` is right on niche 0
    of each subject only; followers are right 60% of the time. ``strong`` writes 1000 completion
    tokens on niche 0 questions and 100 on niche 1; everyone else 50."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(12, 4)))[0].T
    rows, subjects, niche = [], [], []
    for s in range(2):
        for k in range(2):
            rows.append(centres[2 * s + k] + 0.08 * rng.normal(size=(per_niche, 12)))
            subjects += [f"s{s}"] * per_niche
            niche += [k] * per_niche
    X = np.vstack(rows)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    niche = np.asarray(niche)
    n = len(X)
    gold = rng.integers(0, N_OPTIONS, n)
    wrong = (gold[:, None] + rng.integers(1, N_OPTIONS, (n, len(MODELS)))) % N_OPTIONS
    answers = np.empty((n, len(MODELS)), dtype=np.int64)
    answers[:, 0] = gold
    answers[:, 1] = np.where(niche == 0, gold, wrong[:, 1])
    for m in (2, 3):
        answers[:, m] = np.where(rng.random(n) < 0.6, gold, wrong[:, m])
    tokens = np.full((n, len(MODELS)), 50.0, dtype=np.float32)
    tokens[:, 0] = np.where(niche == 0, 1000.0, 100.0)
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(n, N_OPTIONS),
        subjects=np.asarray(subjects),
        model_names=MODELS,
        gold=gold,
        cost=tokens,
        questions=["q" * 40] * n,
        options=[["o" * 10] * N_OPTIONS] * n,
    )
    return X, responses, niche, centres


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def priced(world):
    X, responses, _, _ = world
    return CascalRouter(random_state=0).fit(X, responses, prices=Prices(PRICES, chars_per_token=4.0))


def queries(centres, per=20, seed=3):
    rng = np.random.default_rng(seed)
    Q = np.repeat(centres, per, axis=0) + 0.08 * rng.normal(size=(len(centres) * per, centres.shape[1]))
    return Q, np.tile(np.repeat([0, 1], per), 2)


def test_question_costs_from_tokens_and_prices(world):
    _, responses, niche, _ = world
    prices = Prices(PRICES, chars_per_token=4.0, prompt_overhead_tokens=100)
    # prompt = 100 + (40 + 4 * 10) / 4 = 120 tokens
    np.testing.assert_allclose(input_tokens(responses, prices), 120.0)
    costs = question_costs(responses, prices)
    # strong on a niche-0 question: (120 * 10 + 1000 * 30) / 1e6 USD per query, x 1000 queries
    np.testing.assert_allclose(costs[niche == 0, 0], 31.2)
    np.testing.assert_allclose(costs[niche == 1, 0], (120 * 10 + 100 * 30) / 1000)
    np.testing.assert_allclose(costs[:, 1], (120 * 0.1 + 50 * 0.2) / 1000)


def test_niche_costs_follow_the_tokens_each_niche_used(priced, world):
    _, responses, _, centres = world
    cc, gc = priced.centroid_costs_, priced.global_costs_
    assert cc.shape == (len(priced.centroids_), 4) and gc.shape == (4,)
    # niches near centres 0 and 2 are niche-0 (expensive for strong), near 1 and 3 niche-1 (cheap)
    near = np.argmax(priced.centroids_ @ centres.T, axis=1) % 2
    expensive, cheap = cc[near == 0, 0], cc[near == 1, 0]
    niche0, niche1 = (120 * 0 + 10 * 10 + 1000 * 30) / 1000, (10 * 10 + 100 * 30) / 1000
    assert (expensive > gc[0]).all() and (expensive <= niche0).all() and expensive.min() > 0.8 * niche0
    assert (cheap < gc[0]).all() and (cheap >= niche1).all()
    # models whose tokens do not vary by niche cost the same everywhere
    np.testing.assert_allclose(cc[:, 1], gc[1], rtol=1e-12)


def test_cost_weight_zero_is_bit_identical_to_routing_without_prices(world, priced):
    X, responses, _, centres = world
    plain = CascalRouter(random_state=0).fit(X, responses)
    Q, _ = queries(centres)
    a, b = plain.route(Q, top_k=3), priced.route(Q, top_k=3)
    np.testing.assert_array_equal(a.ranked, b.ranked)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.expected_cost is None and b.expected_cost is not None
    c = priced.route(Q, top_k=3, cost_weight=0.0)
    np.testing.assert_array_equal(c.scores, a.scores)


def test_cost_weight_trades_skill_for_cost(priced, world):
    _, _, _, centres = world
    Q, niche = queries(centres)
    skill = priced.route(Q, top_k=1)
    assert (skill.ranked[:, 0] == 0).all()  # strong is always right
    costly = priced.route(Q, top_k=1, cost_weight=0.001)
    # on niche 0 cheap is as right as strong (same consensus score) at a thousandth of the cost,
    # so any weight moves it there; on niche 1 cheap is wrong and strong's score lead (~0.02 over
    # the followers) outweighs 0.001 x its ~5 USD niche cost
    assert (costly.ranked[niche == 0, 0] == 1).mean() > 0.9
    assert (costly.ranked[niche == 1, 0] == 0).mean() > 0.9
    assert costly.expected_cost.mean() < 0.3 * skill.expected_cost.mean()
    # the weight is also a constructor parameter
    priced_default = priced.set_params(cost_weight=0.001)
    try:
        np.testing.assert_array_equal(priced_default.route(Q, top_k=1).ranked, costly.ranked)
    finally:
        priced.set_params(cost_weight=0.0)
    # expected_cost of top_k > 1 is the sum over the routed models
    details = priced.route_details(Q, top_k=2)
    three = priced.route(Q, top_k=2)
    np.testing.assert_allclose(
        three.expected_cost, np.take_along_axis(details.expected_cost, details.ranked, axis=1).sum(axis=1)
    )


def test_cost_weight_needs_prices_and_a_finite_value(world, priced):
    X, responses, _, centres = world
    plain = CascalRouter(random_state=0).fit(X, responses)
    with pytest.raises(InvalidParameterError, match="cost_weight.*prices"):
        plain.route(centres, cost_weight=0.5)
    for bad in (-1.0, float("nan"), float("inf"), "x", True):
        with pytest.raises(InvalidParameterError, match="cost_weight"):
            priced.route(centres, cost_weight=bad)
    with pytest.raises(InvalidParameterError, match="cost_weight"):
        CascalRouter(cost_weight=-0.1).fit(X, responses)
    with pytest.raises(InvalidParameterError, match="cost_weight.*prices"):
        CascalRouter(cost_weight=0.1).fit(X, responses)


def test_cost_weight_for_meets_the_budget(priced, world):
    _, _, _, centres = world
    Q, _ = queries(centres, seed=11)
    top = priced.route(Q, top_k=1).expected_cost.mean()
    assert priced.cost_weight_for(top * 2, Q, top_k=1) == 0.0
    for share in (0.5, 0.2):
        budget = share * top
        w = priced.cost_weight_for(budget, Q, top_k=1)
        cost = priced.route(Q, top_k=1, cost_weight=w).expected_cost.mean()
        assert w > 0 and cost <= budget
        # the smallest such weight: a little less overshoots
        assert priced.route(Q, top_k=1, cost_weight=w * 0.98).expected_cost.mean() > budget * 0.9
    cheapest = priced.route_details(Q, top_k=1).expected_cost.min(axis=1).mean()
    with pytest.raises(InvalidParameterError, match="budget.*cheapest"):
        priced.cost_weight_for(cheapest * 0.5, Q, top_k=1)
    for bad in (float("nan"), float("inf"), -1.0, "10"):
        with pytest.raises(InvalidParameterError, match="budget"):
            priced.cost_weight_for(bad, Q)


def test_unpriced_models_cost_nothing_and_are_named(world):
    X, responses, _, _ = world
    with pytest.warns(UserWarning, match=r"no price for model\(s\) \['f1', 'f2'\]"):
        router = CascalRouter(random_state=0).fit(X, responses, prices={"strong": (10, 30), "cheap": (0.1, 0.2)})
    np.testing.assert_array_equal(router.global_costs_[2:], 0.0)
    # a mapping of names that prefix the columns (name + "_suffix") prices them too
    prices = Prices({"str": (1, 1)})
    assert prices.for_pool(["str_5shots", "strong"], warn=False)[0].tolist() == [1.0, 0.0]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", None])
def test_prices_are_validated(bad):
    with pytest.raises(InvalidParameterError, match="strong"):
        Prices({"strong": (bad, 1.0)})
    with pytest.raises(InvalidParameterError, match="chars_per_token"):
        Prices({}, chars_per_token=0)


def test_router_file_keeps_the_cost_tables(priced, world, tmp_path):
    _, _, _, centres = world
    Q, _ = queries(centres)
    path = tmp_path / "router.cascal"
    priced.save(path)
    back = CascalRouter.load(path)
    np.testing.assert_array_equal(back.centroid_costs_, priced.centroid_costs_)
    np.testing.assert_array_equal(back.global_costs_, priced.global_costs_)
    for w in (0.0, 0.1):
        a, b = priced.route(Q, cost_weight=w), back.route(Q, cost_weight=w)
        np.testing.assert_array_equal(a.ranked, b.ranked)
        np.testing.assert_array_equal(a.expected_cost, b.expected_cost)


def test_load_prices_file(tmp_path):
    good = tmp_path / "prices.yaml"
    good.write_text(
        "chars_per_token: 3.5\nprompt_overhead_tokens: 1200\nmodels:\n"
        "  a: {price_input_per_mtok: 1.5, price_output_per_mtok: 2, source: https://example.invalid, date: 2026-01-01}\n"
    )
    prices = load_prices(good)
    assert prices.per_model == {"a": (1.5, 2.0)} and prices.chars_per_token == 3.5
    assert prices.prompt_overhead_tokens == 1200
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  a: {price_input_per_mtok: -1, price_output_per_mtok: 2}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*price_input_per_mtok"):
        load_prices(bad)
    with pytest.raises(ConfigError, match="no such prices file"):
        load_prices(tmp_path / "missing.yaml")


def test_pool_yaml_prices_are_validated():
    from cascal.llm.config import parse_pool

    entry = {"name": "m", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    pool = parse_pool({"models": [{**entry, "price_input_per_mtok": 2.5, "price_output_per_mtok": 10}]})
    assert pool.prices() == {"m": (2.5, 10.0)}
    assert parse_pool({"models": [entry]}).prices() == {}
    for bad in (-1, float("nan"), float("inf"), "cheap"):
        with pytest.raises(ConfigError, match="price_output_per_mtok"):
            parse_pool({"models": [{**entry, "price_output_per_mtok": bad}]})


def test_no_token_counts_prices_the_prompt_only(world):
    X, responses, _, _ = world
    no_tokens = ResponseMatrix(
        answers=responses.answers,
        n_options=responses.n_options,
        subjects=responses.subjects,
        model_names=responses.model_names,
        gold=responses.gold,
        questions=responses.questions,
        options=responses.options,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        router = CascalRouter(random_state=0).fit(X, no_tokens, prices=PRICES)
    assert any("prompt tokens only" in str(w.message) for w in caught)
    np.testing.assert_allclose(router.global_costs_, [20 * 10 / 1000, 20 * 0.1 / 1000, 0.02, 0.02])


@settings(max_examples=40, deadline=None)
@given(a=st.floats(0, 100), b=st.floats(0, 100), weight=st.sampled_from([0.0, 0.003, 0.1]), seed=st.integers(0, 3))
def test_expected_cost_is_linear_in_the_cost_tables(priced, a, b, weight, seed):
    """The kernel mixes costs linearly with the routing weights: tables a*T1 + b*T2 give a*E1 + b*E2
    (and the ranking depends on the scores only)."""
    from dataclasses import replace

    from cascal.kernels import route_batch

    rng = np.random.default_rng(seed)
    base = priced.cost_weighted_tables(weight)
    shape = base.centroid_scores.shape
    t1, g1 = rng.random(shape), rng.random(shape[1])
    t2, g2 = rng.random(shape), rng.random(shape[1])
    Q = rng.normal(size=(50, base.dim))
    params = priced.route_params(top_k=2)

    def run(t, g):
        return route_batch(Q, replace(base, centroid_costs=t, global_costs=g), params)

    r1, r2, mix = run(t1, g1), run(t2, g2), run(a * t1 + b * t2, a * g1 + b * g2)
    np.testing.assert_allclose(mix.expected_cost, a * r1.expected_cost + b * r2.expected_cost, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(mix.ranked, r1.ranked)
