"""`cascal evaluate --cost`: hull, APGR and the harness's cost section on synthetic data with known
costs; data without token counts still evaluates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_evaluation import synthetic_dataset

from cascal.evaluation import run_evaluation
from cascal.evaluation.cost_curve import apgr, frontier_accuracy, hull_accuracy, upper_hull
from cascal.evaluation.protocol import stratified_split
from cascal.router.costs import Prices


def test_upper_hull_by_hand():
    points = np.array([[1.0, 0.5], [2.0, 0.55], [3.0, 0.8], [4.0, 0.7], [10.0, 0.9], [0.5, 0.2]])
    hull = upper_hull(points)
    # (2, 0.55) lies under the chord from (1, 0.5) to (3, 0.8); (4, 0.7) is dominated
    np.testing.assert_array_equal(hull, [[0.5, 0.2], [1.0, 0.5], [3.0, 0.8], [10.0, 0.9]])
    assert hull_accuracy(hull, 2.0) == pytest.approx(0.65)
    assert np.isnan(hull_accuracy(hull, 0.1)) and hull_accuracy(hull, 20.0) == pytest.approx(0.9)


def test_apgr_by_hand():
    # reaching the best accuracy at half the best cost, nothing below: PGR is 0 on [0, 0.5) and 1 on [0.5, 1]
    costs, accs = np.array([5.0]), np.array([0.8])
    assert apgr(costs, accs, best_cost=10.0, acc_best=0.8, acc_cheap=0.4) == pytest.approx(0.5, abs=1e-3)
    # the best accuracy for free: 1; never better than the cheapest model: 0
    assert apgr(np.array([0.0]), accs, 10.0, 0.8, 0.4) == pytest.approx(1.0)
    assert apgr(np.array([0.0]), np.array([0.4]), 10.0, 0.8, 0.4) == pytest.approx(0.0)
    assert frontier_accuracy(np.array([1.0, 2.0]), np.array([0.3, 0.6]), 1.5, 0.0) == 0.3


def priced_dataset() -> tuple:
    """synthetic_dataset with completion tokens: 'ace' (right 90 %) writes 2,000 tokens a
    question, 'mid' (70 %) 200 and 'low' (40 %) 20; prices 1 USD/MTok in and out; no prompt."""
    data = synthetic_dataset()
    tokens = np.tile(np.array([2000.0, 200.0, 20.0, 100.0], dtype=np.float32), (data.n_questions, 1))
    return dataclasses.replace(data, cost=tokens), Prices({m: (1.0, 1.0) for m in data.model_names})


def test_harness_cost_section(tmp_path):
    data, prices = priced_dataset()
    results = run_evaluation(
        data,
        pools=["ace,mid,low"],
        keys=[],
        seeds=2,
        routers=["cascal"],
        out_dir=tmp_path,
        progress=False,
        cost=True,
        prices=prices,
    )
    cost = results["pools"]["ace,mid,low"]["cost"]
    run = cost["runs"][0]
    # true costs: tokens x 1 USD/MTok x 1000 queries
    assert run["models"]["ace"]["true_cost"] == pytest.approx(2.0)
    assert run["models"]["low"]["true_cost"] == pytest.approx(0.02)
    _, test_rows = stratified_split(data.subjects, 0)
    ace = (data.answers[test_rows, 0] == data.gold[test_rows]).mean()
    assert run["models"]["ace"]["accuracy"] == pytest.approx(ace)
    assert run["best_model"] == "ace" and run["cheapest_model"] == "low"
    # the sweep starts at skill-only routing and ends at the cheapest model
    curve = run["curve"]
    assert curve[0]["weight"] == 0 and curve[-1]["true_cost"] == pytest.approx(0.02, rel=1e-3)
    assert cost["monotone_expected_cost"]
    for point in curve:  # true costs are mixtures of 2.0, 0.2 and 0.02
        assert 0.02 - 1e-9 <= point["true_cost"] <= 2.0 + 1e-9
    # every budget row met its budget in expectation (cost_weight_for) on every seed
    for r in cost["runs"]:
        for b in r["budgets"]:
            assert b["expected_cost"] is None or b["expected_cost"] <= b["budget"] * (1 + 1e-9)
    assert 0.0 <= cost["apgr"]["mean"] <= 1.0
    text = (tmp_path / "cost.md").read_text()
    assert "APGR" in text and "| 10% |" in text
    assert (tmp_path / "cost_ace,mid,low.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_without_costs_still_evaluates(tmp_path, capsys):
    data = synthetic_dataset()
    results = run_evaluation(
        data, pools=["ace,mid,low"], keys=[], seeds=1, routers=["cascal"], out_dir=tmp_path, progress=False, cost=True
    )
    pool = results["pools"]["ace,mid,low"]
    assert pool["summary"][0]["router"] == "cascal"
    assert "no token counts" in pool["cost"]["skipped"]
    assert "cost curve skipped" in capsys.readouterr().err
    assert "cost curve skipped" in (tmp_path / "cost.md").read_text()


def test_response_chars_become_tokens_from_a_folder(tmp_path):
    """A folder without cost.csv but with response_chars.csv: the evaluation reads it (io.load_model_table)
    and divides by the prices' characters per token; a broken file names itself."""
    from cascal.errors import DataError
    from cascal.evaluation.cost_curve import cost_data
    from cascal.io import load_dataset, load_model_table, save_dataset

    data = synthetic_dataset(n=30)
    data = dataclasses.replace(
        data, questions=[f"question {i}" for i in range(30)], options=[["a", "b", "c", "d", "e"]] * 30
    )
    save_dataset(data, tmp_path)
    loaded = load_dataset(tmp_path, embeddings=None)
    ids = [str(q) for q in loaded.question_ids]
    rows = ["question_id," + ",".join(loaded.model_names)]
    rows += [f"{q}," + ",".join(str(40 * (j + 1)) if i % 7 else "" for j in range(4)) for i, q in enumerate(ids)]
    (tmp_path / "response_chars.csv").write_text("\n".join(rows) + "\n")
    chars = load_model_table(tmp_path, loaded)
    assert chars.shape == (30, 4) and np.isnan(chars[0]).all() and chars[1].tolist() == [40, 80, 120, 160]
    with_tokens, note = cost_data(loaded, tmp_path, Prices({}, chars_per_token=8.0))
    assert "response_chars.csv / 8" in note
    np.testing.assert_allclose(with_tokens.cost[1], [5, 10, 15, 20])
    (tmp_path / "response_chars.csv").write_text("question_id,ace\n")
    with pytest.raises(DataError, match="response_chars.csv"):
        load_model_table(tmp_path, loaded)
