"""Cost-aware CASCAL on the real MMLU-Pro answers (pool large, seed 0, examples/prices.yaml); skipped
without $CASCAL_DATA. The 5-seed numbers are in docs/algorithm.md#cost-aware-routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascal.evaluation.cost_curve import cost_data, evaluate_cost_seed
from cascal.evaluation.protocol import resolve_pool
from cascal.io import load_dataset, load_model_table
from cascal.router.costs import load_prices

PRICES = Path(__file__).resolve().parents[2] / "examples" / "prices.yaml"


@pytest.fixture(scope="module")
def run(data_dir):
    prices = load_prices(PRICES)
    dataset = load_dataset(data_dir, out_of_range="unparsable")
    with_tokens, note = cost_data(dataset, Path(data_dir), prices)
    assert with_tokens is not None and "response_chars.csv" in note
    return dataset, with_tokens, evaluate_cost_seed(with_tokens, resolve_pool("large", dataset.model_names), prices, 0)


def test_every_model_has_a_price_and_chars_become_tokens(run, data_dir):
    dataset, with_tokens, _ = run
    prices = load_prices(PRICES)
    assert [m for m in dataset.model_names if prices.price_of(m) is None] == []
    chars = load_model_table(data_dir, dataset)
    np.testing.assert_allclose(with_tokens.cost, chars / 4.0, rtol=1e-6)
    # empty cells (model not run on the question) stay unknown
    assert np.isnan(chars).sum() > 0 and (np.isnan(chars) == np.isnan(with_tokens.cost)).all()


def test_acceptance_on_seed_0(run):
    _, _, result = run
    best = result["models"][result["best_model"]]["accuracy"]
    at_10 = next(b for b in result["budgets"] if b["fraction"] == 0.10)
    # at <= 10 % of the most accurate model's cost, >= 90 % of its accuracy
    assert at_10["accuracy"] >= 0.9 * best
    assert at_10["expected_cost"] <= at_10["budget"]
    assert abs(at_10["true_cost"] / at_10["budget"] - 1) < 0.05
    assert result["monotone_expected_cost"]
    # weight 0 is skill-only routing: it costs more than any budget row
    assert result["curve"][0]["true_cost"] > at_10["true_cost"]
