"""`cascal train --prices` / `cascal route --cost-weight`: a router trained with prices prints each
model's expected cost and the routed choice's, and the cost weight moves the ranking toward cheap models."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from simulated_data import simulated_responses

from cascal.cli import main
from cascal.io import save_dataset
from cascal.pipeline.embed import embed_dataset
from cascal.router import CascalRouter
from cascal.simulate import SimWorld

ROW = re.compile(r"^([* ])\s+(\d+)\. (\S+)\s+([0-9.]+)  \$([0-9.]+) per 1k queries$", flags=re.M)


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    root = tmp_path_factory.mktemp("cost_cli")
    world = SimWorld(seed=11)
    data = simulated_responses(world, 2, 80)
    # completion tokens: the first model writes 10x longer answers than the others
    tokens = np.full(data.answers.shape, 100.0, dtype=np.float32)
    tokens[:, 0] = 1000.0
    save_dataset(dataclasses.replace(data, cost=tokens), root / "data")
    embed_dataset(root / "data", "hashing-256")
    prices = root / "prices.yaml"
    lines = ["chars_per_token: 4", "prompt_overhead_tokens: 0", "models:"]
    lines += [f"  {m}: {{price_input_per_mtok: 1.0, price_output_per_mtok: 2.0}}" for m in world.model_names]
    prices.write_text("\n".join(lines) + "\n")
    router_file = root / "router.cascal"
    assert main(["train", str(root / "data"), "--out", str(router_file), "--prices", str(prices)]) == 0
    return world, data, router_file


def test_train_summary_states_expected_costs(tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("cost_cli_summary")
    world = SimWorld(seed=11)
    data = simulated_responses(world, 2, 40)
    tokens = np.full(data.answers.shape, 100.0, dtype=np.float32)
    save_dataset(dataclasses.replace(data, cost=tokens), root / "data")
    embed_dataset(root / "data", "hashing-256")
    pool = root / "pool.yaml"
    # a pool.yaml with prices for the first model only: the others are priced 0 with a warning
    entries = [f"  - {{name: {m}, base_url: 'http://127.0.0.1:9/v1', model: {m}}}" for m in world.model_names]
    entries[0] = entries[0][:-1] + ", price_input_per_mtok: 0, price_output_per_mtok: 10}"
    pool.write_text("models:\n" + "\n".join(entries) + "\n")
    capsys.readouterr()
    out_file = root / "r.cascal"
    assert main(["train", str(root / "data"), "--out", str(out_file), "--prices", str(pool), "--cost-weight", "2"]) == 0
    captured = capsys.readouterr()
    assert f"{world.model_names[0]}" in captured.out and "expected $1.0000 per 1,000 queries" in captured.out
    assert "no price for model(s)" in captured.err and world.model_names[1] in captured.err
    assert CascalRouter.load(out_file).cost_weight == 2.0


def test_route_prints_expected_costs(priced, capsys):
    world, data, router_file = priced
    router = CascalRouter.load(router_file)
    assert router.global_costs_ is not None
    # per 1,000 queries: (prompt chars / 4 * 1 + tokens * 2) / 1000
    assert router.global_costs_[0] > 5 * router.global_costs_[1:].max()
    capsys.readouterr()
    assert main(["route", str(router_file), data.questions[0], "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    rows = ROW.findall(out)
    assert sorted(r[2] for r in rows) == sorted(world.model_names)
    top = sum(float(r[4]) for r in rows[:2])
    total = float(re.search(r"expected cost of the top 2: \$([0-9.]+) per 1,000 queries", out).group(1))
    assert total == pytest.approx(top, abs=2e-4)


def test_route_cost_weight_demotes_the_expensive_model(priced, capsys):
    world, data, router_file = priced
    expensive = world.model_names[0]
    ranks = {}
    for weight in ("0", "100"):
        capsys.readouterr()
        assert main(["route", str(router_file), data.questions[1], "--cost-weight", weight]) == 0
        rows = ROW.findall(capsys.readouterr().out)
        ranks[weight] = [r[2] for r in rows].index(expensive)
    assert ranks["100"] == world.n_models - 1 and ranks["100"] > ranks["0"]
    assert main(["route", str(router_file), data.questions[1], "--cost-weight", "-1"]) == 2
    assert "cost_weight" in capsys.readouterr().err
