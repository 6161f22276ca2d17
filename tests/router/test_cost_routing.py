"""Cost-aware routing and the router file, pinned on hand-worked values: the budget search
(:mod:`cascal.router.budget`, ``cost_weight_for``), the cost-weighted tables and their cache, the
cost tables of a fit with prices, and the loaded router (docs/algorithm.md#cost-aware-routing,
docs/router-file.md).

Most tests use "flat" tables: every niche and the global table give the same scores ``s`` and
costs ``c``. Routing then mixes identical rows, so the ranking is the order of ``s - w * c`` for
any query, and each model's expected cost is ``c`` (times weights that sum to one); the weight at
which routing switches between two models is ``(s_a - s_b) / (c_a - c_b)``, worked out by hand.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
import zipfile

import numpy as np
import pytest
from test_costs import MODELS, PRICES, make_world

from cascal.data import ResponseMatrix
from cascal.errors import InvalidParameterError, RouterFileError
from cascal.router import CascalRouter, budget
from cascal.router.costs import Prices
from cascal.router.persistence import MANIFEST

N_QUERIES = 20


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def priced(world):
    X, responses, _, _ = world
    return CascalRouter(random_state=0, embedding_model="toy-12d").fit(
        X, responses, prices=Prices(PRICES, chars_per_token=4.0)
    )


@pytest.fixture(scope="module")
def queries():
    return np.random.default_rng(7).normal(size=(N_QUERIES, 12))


def flat(router, scores, costs, **params):
    """``router`` rebuilt with every niche and the global table scoring ``scores`` and costing
    ``costs`` (``params`` replace constructor parameters)."""
    record = router.to_record()
    tables = record.tables
    n = len(tables.centroids)
    scores, costs = np.asarray(scores, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    tables = dataclasses.replace(
        tables,
        centroid_scores=np.tile(scores, (n, 1)),
        global_scores=scores,
        centroid_costs=np.tile(costs, (n, 1)),
        global_costs=costs,
    )
    return CascalRouter.from_record(dataclasses.replace(record, tables=tables, params={**record.params, **params}))


def mean_cost(router, Q, weight, top_k=1):
    return float(router.route(Q, top_k=top_k, cost_weight=weight).expected_cost.mean())


# ----------------------------------------------------------------------------- cost_weight_for
@pytest.mark.parametrize("switch", [0.5, 1.1, 5.5, 300.0])
def test_cost_weight_for_finds_the_weight_where_routing_turns_cheap(priced, queries, switch):
    """Model 0 (score 1, cost 1/switch) against the free model 1 (score 0): routing moves to the
    free model at ``w = switch``, so the smallest weight meeting a budget of 0 is ``switch``, wherever
    it lies relative to the x4 steps of the upper end (1, 4, 16, ...)."""
    router = flat(priced, [1.0, 0.0, -10.0, -10.0], [1.0 / switch, 0.0, 100.0, 100.0])
    w = router.cost_weight_for(0.0, queries, top_k=1)  # 0 is a valid budget
    assert isinstance(w, float)
    assert w == pytest.approx(switch, rel=1e-9, abs=0)
    assert mean_cost(router, queries, w) == 0.0
    assert mean_cost(router, queries, w * (1 - 1e-7)) > 0.0


def test_cost_weight_for_takes_sixty_halvings_from_zero_to_one(priced, queries):
    """A switch below 1 is bisected on [0, 1]: 60 halvings give the smallest multiple of 2^-60 at
    which routing is cheap. The switch lies a quarter step above 2^40 steps, so the answer is 2^40 + 1
    steps (with one halving more it would be 2^40 + 1/2 steps)."""
    step = 2.0**-60
    switch = (2.0**40 + 0.25) * step
    router = flat(priced, [1.0, 0.0, -10.0, -10.0], [1.0 / switch, 0.0, 100.0, 100.0])
    assert router.cost_weight_for(0.0, queries, top_k=1) == (2.0**40 + 1) * step


def test_cost_weight_for_is_zero_when_skill_routing_fits(priced, queries):
    router = flat(priced, [1.0, 0.0, -10.0, -10.0], [2.0, 0.0, 100.0, 100.0])
    skill_only = mean_cost(router, queries, 0.0)
    assert skill_only > 0
    # a budget equal to what skill-only routing costs already fits it
    assert router.cost_weight_for(skill_only, queries, top_k=1) == 0.0
    assert router.cost_weight_for(skill_only * 2, queries, top_k=1) == 0.0
    # "skill alone" means weight 0, not the router's own cost_weight parameter
    weighted = flat(priced, [1.0, 0.0, -10.0, -10.0], [2.0, 0.0, 100.0, 100.0], cost_weight=1.0)
    assert mean_cost(weighted, queries, None) == 0.0
    assert weighted.cost_weight_for(0.0, queries, top_k=1) == pytest.approx(0.5, rel=1e-9, abs=0)


@pytest.mark.parametrize(
    "top_k, budget, cheapest",
    [
        # the cheapest model alone; weights up to 4^20 never make routing reach it
        (1, 0.5e-13, 1e-13),
        (2, 3e-13, 1e-13 + 3e-13),
        # default: the top_k parameter (3)
        (None, 8e-13, 1e-13 + 3e-13 + 5e-13),
    ],
)
def test_budget_below_the_cheapest_routing_names_that_cost(priced, queries, top_k, budget, cheapest):
    """Costs so small that even a weight of 4^20 leaves the ranking by skill: the message gives
    the sum of the ``top_k`` smallest expected costs per query (the cheapest any weight reaches)."""
    router = flat(priced, [1.0, 0.0, -1.0, -2.0], [3e-13, 1e-13, 5e-13, 7e-13])
    assert router.top_k == 3
    with pytest.raises(InvalidParameterError) as info:
        router.cost_weight_for(budget, queries, top_k=top_k)
    match = re.fullmatch(
        r"budget: (\S+) USD per 1,000 queries is below the cheapest routing reachable "
        rf"\((\S+) on these {N_QUERIES} queries\)",
        str(info.value),
    )
    assert match, str(info.value)
    assert float(match.group(1)) == pytest.approx(budget, rel=1e-5, abs=0)
    assert float(match.group(2)) == pytest.approx(cheapest, rel=1e-5, abs=0)


def test_cost_weight_for_needs_a_router_with_costs(world, queries):
    X, responses, _, _ = world
    plain = CascalRouter(random_state=0).fit(X, responses)
    with pytest.raises(
        InvalidParameterError, match=r"^budget: the router has no expected costs; fit it with prices=\.\.\.$"
    ):
        plain.cost_weight_for(1.0, queries)


# ----------------------------------------------------------------------------- fit with prices
def test_a_model_without_token_counts_costs_its_mean_prompt(world):
    """docs/algorithm.md#prices-and-tokens: a model without any known completion tokens costs its
    mean prompt, in every niche and globally."""
    X, responses, _, _ = world
    n = responses.n_questions
    lengths = 20 + (np.arange(n) % 7) * 13  # question characters; options add 4 x 10
    cost = np.array(responses.cost, dtype=np.float64)
    cost[:, 2] = np.nan  # f1: no completion tokens known
    varied = ResponseMatrix(
        answers=responses.answers,
        n_options=responses.n_options,
        subjects=responses.subjects,
        model_names=responses.model_names,
        gold=responses.gold,
        cost=cost,
        questions=["q" * int(k) for k in lengths],
        options=responses.options,
    )
    prices = Prices({**PRICES, "f1": (2.5, 7.0)}, chars_per_token=4.0, prompt_overhead_tokens=30)
    router = CascalRouter(random_state=0).fit(X, varied, prices=prices)
    prompt_tokens = 30 + (lengths + 40) / 4.0
    # USD per 1,000 queries: 1000 * tokens * price / 1e6
    expected = prompt_tokens.mean() * 2.5 / 1000.0
    assert router.global_costs_[2] == pytest.approx(expected, rel=1e-12, abs=0)
    np.testing.assert_allclose(router.centroid_costs_[:, 2], expected, rtol=1e-12)


def test_unpriced_models_are_warned_about_once(world):
    X, responses, _, _ = world
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CascalRouter(random_state=0).fit(X, responses, prices={"strong": (10, 30), "cheap": (0.1, 0.2)})
    unpriced = [str(w.message) for w in caught if "no price" in str(w.message)]
    assert len(unpriced) == 1 and "['f1', 'f2']" in unpriced[0]


# ----------------------------------------------------------------------------- cost_weighted_tables
def test_cost_weighted_tables_subtract_weight_times_cost(priced):
    base = priced.tables_
    assert priced.cost_weighted_tables(0.0) is base
    assert priced.cost_weighted_tables() is base  # the parameter, 0 by default
    w = 0.25
    tables = priced.cost_weighted_tables(w)
    for i in range(base.centroid_scores.shape[0]):
        for m in range(len(MODELS)):
            assert tables.centroid_scores[i, m] == base.centroid_scores[i, m] - w * base.centroid_costs[i, m]
    for m in range(len(MODELS)):
        assert tables.global_scores[m] == base.global_scores[m] - w * base.global_costs[m]
    for field in ("subject_reps", "centroids", "centroid_subject", "centroid_sizes", "centroid_costs", "global_costs"):
        np.testing.assert_array_equal(getattr(tables, field), getattr(base, field), err_msg=field)
    # an integer weight is the same weight
    np.testing.assert_array_equal(
        priced.cost_weighted_tables(2).global_scores, base.global_scores - 2.0 * base.global_costs
    )


def test_cost_weighted_tables_are_built_once_per_weight_and_tables(priced):
    router = CascalRouter.from_record(priced.to_record())
    first = router.cost_weighted_tables(0.5)
    assert router.cost_weighted_tables(0.5) is first
    other = router.cost_weighted_tables(0.125)
    assert other is not first and router.cost_weighted_tables(0.125) is other
    # new tables (e.g. after a refit): weighted from the new costs, never the cached ones
    base = router.tables_
    router.tables_ = dataclasses.replace(
        base, centroid_costs=2 * base.centroid_costs, global_costs=2 * base.global_costs
    )
    again = router.cost_weighted_tables(0.125)
    np.testing.assert_array_equal(again.global_scores, base.global_scores - 0.25 * base.global_costs)
    np.testing.assert_array_equal(again.centroid_scores, base.centroid_scores - 0.25 * base.centroid_costs)


def test_cost_weight_errors_name_the_argument_and_the_remedy(world, priced):
    X, responses, _, _ = world
    plain = CascalRouter(random_state=0).fit(X, responses)
    with pytest.raises(
        InvalidParameterError,
        match=r"^cost_weight: 0\.5 needs expected costs; fit the router with prices "
        r"\(CascalRouter\.fit\(\.\.\., prices=\.\.\.\) or `cascal train --prices FILE`\)$",
    ):
        plain.cost_weighted_tables(0.5)
    for bad in (-1.0, -1e-300, float("nan"), float("inf"), "0.5", True):
        with pytest.raises(
            InvalidParameterError, match=rf"^cost_weight: must be a finite number >= 0, got {re.escape(repr(bad))}$"
        ):
            priced.cost_weighted_tables(bad)
    assert priced.cost_weighted_tables(np.float64(0.0)) is priced.tables_


# ----------------------------------------------------------------------------- router file
def test_loaded_router_keeps_embedding_model_and_niche_subjects(priced, tmp_path):
    path = tmp_path / "priced.cascal"
    priced.save(path)
    for back in (CascalRouter.load(path), CascalRouter.from_record(priced.to_record())):
        assert back.embedding_model_ == "toy-12d"
        assert sorted(back.niches_) == sorted(priced.niches_)
        for subject, niches in back.niches_.items():
            assert niches and all(n.subject == subject for n in niches)
            assert [n.subject for n in niches] == [n.subject for n in priced.niches_[subject]]


def test_load_names_the_file_before_a_refused_parameter(priced, tmp_path):
    """docs/router-file.md#loading: the message starts with the file's path."""
    path = tmp_path / "priced.cascal"
    priced.save(path)
    bad = tmp_path / "bad-tau.cascal"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == MANIFEST:
                manifest = json.loads(data)
                manifest["params"]["tau"] = -1.0
                data = json.dumps(manifest).encode()
            zout.writestr(info.filename, data)
    with pytest.raises(RouterFileError, match=rf"^{re.escape(str(bad))}: invalid saved parameter: tau") as info:
        CascalRouter.load(bad)
    assert not isinstance(info.value, InvalidParameterError)


def test_route_names_the_pool_and_sums_the_routed_costs(priced, queries):
    """Routing.expected_cost: per query, the sum of the expected costs of the top_k routed models."""
    routing = priced.route(queries, top_k=2, cost_weight=0.01)
    assert routing.model_names == MODELS
    details = priced.route_details(queries, top_k=2, cost_weight=0.01)
    for q in range(N_QUERIES):
        a, b = details.ranked[q]
        assert routing.expected_cost[q] == details.expected_cost[q, a] + details.expected_cost[q, b]


def test_fit_with_a_cost_weight_needs_prices(world):
    X, responses, _, _ = world
    with pytest.raises(
        InvalidParameterError, match=r"^cost_weight: 0\.1 needs expected costs; give fit\(\.\.\., prices=\.\.\.\)$"
    ):
        CascalRouter(cost_weight=0.1).fit(X, responses)
    # with prices the weight is the router's default
    router = CascalRouter(random_state=0, cost_weight=0.001).fit(X, responses, prices=PRICES)
    assert router.cost_weighted_tables() is router.cost_weighted_tables(0.001)
    assert router.cost_weighted_tables() is not router.tables_


# ----------------------------------------------------------------------------- the budget steps
def test_smallest_weight_within_brackets_then_halves():
    """A mean cost that steps down at weight 5.3: the bracket grows 1, 4, 16, then halvings of
    (4, 16] close in on the first weight that meets the budget, from above."""
    calls = []

    def mean_cost(weight: float) -> float:
        calls.append(weight)
        return 1.0 if weight >= 5.3 else 3.0

    got = budget.smallest_weight_within(2.0, mean_cost, lambda: pytest.fail("not needed"), 10)
    assert calls[:4] == [0.0, 1.0, 4.0, 16.0]
    # halving stops at adjacent floats: the end kept is the smallest float that meets the budget
    assert got == 5.3 and np.nextafter(got, 0.0) < 5.3
    assert 4 + 50 < len(calls) <= 4 + budget.BISECTIONS
    # skill routing already within the budget: 0, after one call
    assert budget.smallest_weight_within(3.0, mean_cost, lambda: pytest.fail("not needed"), 10) == 0.0
    # met at weight 1: the bracket is (0, 1]
    assert 0.0 < budget.smallest_weight_within(2.0, lambda w: 1.0 if w >= 0.25 else 3.0, lambda: 0.0, 1) < 0.26


def test_smallest_weight_within_names_the_cheapest_reachable_cost():
    with pytest.raises(InvalidParameterError, match=r"^budget: 0\.5 USD .* reachable \(0\.75 on these 7 queries\)$"):
        budget.smallest_weight_within(0.5, lambda w: 1.0, lambda: 0.75, 7)
    # the mean cost at the largest weight counts when it is lower than the bound
    with pytest.raises(InvalidParameterError, match=r"\(0\.6 on these 7 queries\)$"):
        budget.smallest_weight_within(0.5, lambda w: 0.6 if w > 1e12 else 1.0, lambda: 0.75, 7)


def test_cheapest_mean_cost_sums_each_querys_smallest_costs():
    cost = np.array([[3.0, 1.0, 2.0], [0.5, 4.0, 0.25]])
    assert budget.cheapest_mean_cost(cost, 1) == pytest.approx((1.0 + 0.25) / 2)
    assert budget.cheapest_mean_cost(cost, 2) == pytest.approx((3.0 + 0.75) / 2)


def test_weighted_tables_reuse_only_the_same_weight_and_base(priced):
    base = priced.tables_
    first = budget.weighted_tables(base, 0.5)
    assert isinstance(first, budget.WeightedTables) and first.base is base and first.weight == 0.5
    np.testing.assert_array_equal(first.tables.global_scores, base.global_scores - 0.5 * base.global_costs)
    assert budget.weighted_tables(base, 0.5, first) is first
    assert budget.weighted_tables(base, 0.25, first) is not first
    copy = dataclasses.replace(base)
    assert budget.weighted_tables(copy, 0.5, first).base is copy
    with pytest.raises(InvalidParameterError, match="^cost_weight: 0.5 needs expected costs"):
        budget.weighted_tables(dataclasses.replace(base, centroid_costs=None, global_costs=None), 0.5)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True, None])
def test_budget_and_cost_weight_checks_name_their_argument(bad):
    with pytest.raises(InvalidParameterError, match=r"^budget: must be a finite number >= 0"):
        budget.check_budget(bad)
    with pytest.raises(InvalidParameterError, match=r"^cost_weight: must be a finite number >= 0"):
        budget.check_cost_weight(bad)
    assert budget.check_budget(np.int64(3)) == 3.0 and type(budget.check_budget(2)) is float
