"""Per-request cost weights through the real gateway and the real openai client: the body field
``cascal_cost_weight`` or header ``x-cascal-cost-weight`` re-ranks with the router's expected costs,
``x-cascal-expected-cost`` reports the routed choice's cost, bad values are a 400 naming them."""

from __future__ import annotations

import dataclasses
import json

import httpx
import numpy as np
import openai
import pytest
from conftest import N_SUBJECTS, PER_SUBJECT, pool_file
from simulated_data import simulated_responses

from cascal.embedding import load_embedder
from cascal.pipeline.answer import build_messages
from cascal.router import CascalRouter


@pytest.fixture(scope="module")
def priced_router_file(world, tmp_path_factory):
    """CASCAL fitted with prices; the first pool model writes 20x longer answers than the rest."""
    data = simulated_responses(world, N_SUBJECTS, PER_SUBJECT)
    tokens = np.full(data.answers.shape, 50.0, dtype=np.float32)
    tokens[:, 0] = 1000.0
    data = dataclasses.replace(data, cost=tokens)
    X = np.asarray(load_embedder("hashing-256").encode(list(data.questions)), dtype=np.float32)
    prices = {m: (1.0, 4.0) for m in world.model_names}
    router = CascalRouter(embedding_model="hashing-256", random_state=0).fit(X, data, prices=prices)
    path = tmp_path_factory.mktemp("priced") / "router.cascal"
    router.save(path)
    return path


@pytest.fixture
def sim_pool(world, simulator, tmp_path):
    return pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])


def in_process(router_file, text: str, weight=None):
    router = CascalRouter.load(router_file)
    x = load_embedder(router.embedding_model).encode([text])
    details = router.route_details(x, top_k=len(router.model_names_), cost_weight=weight)
    order = details.ranked[0]
    return [router.model_names_[j] for j in order], details.expected_cost[0, order]


def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="EMPTY", max_retries=0, timeout=20)


def test_expected_cost_header_and_per_request_weight(start_gateway, sim_pool, questions, priced_router_file, world):
    gw = start_gateway(sim_pool, router=priced_router_file)
    c = client(gw)
    expensive = world.model_names[0]
    for q in questions[:6]:
        messages = build_messages(q.question, q.options)
        text = messages[-1]["content"]
        raw = c.chat.completions.with_raw_response.create(model="cascal", messages=messages)
        ranking, costs = in_process(priced_router_file, text)
        assert json.loads(raw.headers["x-cascal-route"]) == ranking[:3]
        assert float(raw.headers["x-cascal-expected-cost"]) == pytest.approx(costs[0], rel=1e-5)
        assert "x-cascal-cost-weight" not in raw.headers
        # a heavy weight in the body: the expensive model drops to last, the cost to the cheap model's
        heavy = c.chat.completions.with_raw_response.create(
            model="cascal", messages=messages, extra_body={"cascal_cost_weight": 1000}
        )
        ranking_w, costs_w = in_process(priced_router_file, text, 1000.0)
        route = json.loads(heavy.headers["x-cascal-route"])
        assert route == ranking_w[:3] and expensive not in route
        assert heavy.parse().model == ranking_w[0]  # answered (the field was not forwarded upstream)
        assert float(heavy.headers["x-cascal-expected-cost"]) == pytest.approx(costs_w[0], rel=1e-5)
        assert heavy.headers["x-cascal-cost-weight"] == "1000"
        # the same through the header
        by_header = c.chat.completions.with_raw_response.create(
            model="cascal", messages=messages, extra_headers={"x-cascal-cost-weight": "1000"}
        )
        assert json.loads(by_header.headers["x-cascal-route"]) == route
    # a vote reports the K voters' summed cost
    q = questions[0]
    messages = build_messages(q.question, q.options)
    voted = c.chat.completions.with_raw_response.create(model="cascal-vote-3", messages=messages)
    _, costs = in_process(priced_router_file, messages[-1]["content"])
    assert float(voted.headers["x-cascal-expected-cost"]) == pytest.approx(costs[:3].sum(), rel=1e-5)


def test_route_endpoint_reports_costs(start_gateway, sim_pool, questions, priced_router_file):
    gw = start_gateway(sim_pool, router=priced_router_file)
    text = questions[2].question
    reply = httpx.post(f"{gw.base_url}/route", json={"input": text, "cascal_cost_weight": 0.5}, timeout=20)
    assert reply.status_code == 200
    body = reply.json()
    ranking, costs = in_process(priced_router_file, text, 0.5)
    assert body["models"] == ranking and body["cost_weight"] == 0.5
    assert body["expected_cost"] == pytest.approx(costs[0], rel=1e-9)
    assert [r["expected_cost"] for r in body["ranking"]] == pytest.approx(list(costs), rel=1e-9)


@pytest.mark.parametrize(
    "field, header, name",
    [
        (-1, None, "cascal_cost_weight"),
        ("cheap", None, "cascal_cost_weight"),
        (True, None, "cascal_cost_weight"),
        (None, "nan", "x-cascal-cost-weight"),
        (None, "inf", "x-cascal-cost-weight"),
        (None, "lots", "x-cascal-cost-weight"),
    ],
)
def test_bad_cost_weights_are_refused(start_gateway, sim_pool, questions, priced_router_file, field, header, name):
    gw = start_gateway(sim_pool, router=priced_router_file)
    messages = build_messages(questions[0].question, questions[0].options)
    with pytest.raises(openai.BadRequestError) as info:
        client(gw).chat.completions.create(
            model="cascal",
            messages=messages,
            extra_body=None if field is None else {"cascal_cost_weight": field},
            extra_headers=None if header is None else {"x-cascal-cost-weight": header},
        )
    assert info.value.status_code == 400 and name in info.value.message
    assert info.value.body["param"] == name


def test_cost_weight_needs_a_priced_router(start_gateway, sim_pool, questions):
    gw = start_gateway(sim_pool)  # the session router has no prices
    messages = build_messages(questions[0].question, questions[0].options)
    with pytest.raises(openai.BadRequestError, match="cascal_cost_weight.*no expected costs"):
        client(gw).chat.completions.create(model="cascal", messages=messages, extra_body={"cascal_cost_weight": 1})
    plain = client(gw).chat.completions.with_raw_response.create(
        model="cascal", messages=messages, extra_body={"cascal_cost_weight": 0}
    )
    assert "x-cascal-expected-cost" not in plain.headers
