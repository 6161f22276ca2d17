"""Label-budget curves (``cascal evaluate --labels``) and the ``lone-strong`` pool preset, on
synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cascal.cli import main
from cascal.data import ResponseMatrix
from cascal.errors import InvalidParameterError, ProtocolError
from cascal.evaluation.label_budget import draw_labels, run_label_budget
from cascal.evaluation.protocol import LONE_STRONG_CROWD, expand_pools, lone_strong_pools, make_split


def ranked_dataset(n_models: int = 24, n: int = 300, seed: int = 0) -> ResponseMatrix:
    """``n_models`` models, model ``j`` right with probability ``0.3 + 0.6 * j / (n_models - 1)``
    (so the strongest is the last column), three subjects in three embedding directions."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(["a", "b", "c"], n // 3)
    emb = np.eye(8)[np.repeat([0, 1, 2], n // 3)] + 0.3 * rng.normal(size=(n, 8))
    gold = rng.integers(0, 4, size=n)
    skill = 0.3 + 0.6 * np.arange(n_models) / (n_models - 1)
    right = rng.random((n, n_models)) < skill
    answers = np.where(right, gold[:, None], (gold[:, None] + rng.integers(1, 4, size=(n, n_models))) % 4)
    return ResponseMatrix(
        answers=answers,
        n_options=np.full(n, 4),
        subjects=subjects,
        model_names=[f"m{j:02d}" for j in range(n_models)],
        gold=gold,
        embeddings=emb.astype(np.float32),
    )


def test_lone_strong_pools_pair_each_strong_model_with_weak_crowds():
    data = ranked_dataset()
    pools = lone_strong_pools(data)
    assert len(pools) == 24 and len({name for name, _ in pools}) == 24
    accuracy = (data.answers == data.gold[:, None]).mean(axis=0)
    order = np.argsort(-accuracy, kind="stable")
    strong = [data.model_names[i] for i in order[:4]]
    weak = {data.model_names[i] for i in order[-20:]}
    for i, (name, columns) in enumerate(pools):
        assert name == f"lone-strong/{strong[i // 6]}/{i % 6}"
        assert columns[0] == strong[i // 6]
        crowd = columns[1:]
        assert len(crowd) == LONE_STRONG_CROWD == len(set(crowd)) and set(crowd) <= weak - {columns[0]}
    # six different crowds per strong model, and the same ones every time
    assert len({tuple(c[1:]) for _, c in pools[:6]}) == 6
    assert pools == lone_strong_pools(data)
    assert [n for n, _ in expand_pools(["m00,m01", "lone-strong"], data)][:2] == ["m00,m01", pools[0][0]]


def test_lone_strong_needs_enough_models_and_gold():
    with pytest.raises(ProtocolError, match="needs at least 20 models"):
        lone_strong_pools(ranked_dataset(n_models=10))
    data = ranked_dataset()
    data.gold[3] = -1
    with pytest.raises(ProtocolError, match="no gold"):
        lone_strong_pools(data)


def test_labels_are_drawn_from_the_training_split_only():
    data = ranked_dataset()
    split = make_split(data, data.model_names[:3], 0)
    y = draw_labels(split.train, 25, np.random.default_rng(1))
    assert y.shape == (split.train.n_questions,) and (y >= 0).sum() == 25
    assert np.array_equal(y[y >= 0], split.train.gold[y >= 0])


def test_label_budget_curves(tmp_path):
    data = ranked_dataset()
    columns = [data.model_names[j] for j in (0, 4, 8, 12, 16, 23)]  # accuracies 0.3 .. 0.72, then 0.9
    pool = ",".join(columns)
    results = run_label_budget(
        data,
        pools=[pool],
        budgets=[0, 10, 40],
        strategies=["random", "active"],
        seeds=2,
        draws=2,
        out_dir=tmp_path,
        progress=False,
    )
    runs = results["pools"][pool]["runs"]
    # budget 0: label-free CASCAL only; random: 2 draws x 4 routers; active: 1 draw x 4 routers
    per_seed = [r for r in runs if r["seed"] == 0]
    assert sum(r["n_labels"] == 0 for r in per_seed) == 2
    assert sum(r["strategy"] == "random" and r["n_labels"] == 10 for r in per_seed) == 8
    assert sum(r["strategy"] == "active" and r["n_labels"] == 40 for r in per_seed) == 4
    # the label-free curve repeats the budget-0 fit at every budget; CASCAL + labels names its choice
    free = next(r for r in per_seed if r["n_labels"] == 0)
    assert all(r["top1"] == free["top1"] for r in per_seed if r["router"] == "label-free")
    assert {r["choice"] for r in per_seed if r["router"] == "cascal+labels" and r["n_labels"] > 0} <= {
        "label-free",
        "calibrated",
        "best-on-labels",
        "subject-best",
    }
    # best single on 40 labels picks the strongest model, whose test accuracy is its top-1
    split = make_split(data, columns, 0)
    strongest = (split.test.answers[:, -1] == split.test.gold).mean()
    best = [r for r in per_seed if r["router"] == "best-single-labels" and r["n_labels"] == 40]
    assert all(r["top1"] == pytest.approx(strongest) for r in best)
    # regret is against the best single model on the test gold
    assert all(r["regret1"] == pytest.approx(strongest - r["top1"]) for r in per_seed)
    summary = results["pools"][pool]["summary"]
    row = next(r for r in summary if r["strategy"] == "random" and r["n_labels"] == 10 and r["router"] == "knn-labels")
    values = [
        r["top1"] for r in runs if r["strategy"] == "random" and r["n_labels"] == 10 and r["router"] == "knn-labels"
    ]
    assert row["n_runs"] == 4 and row["top1"]["mean"] == pytest.approx(np.mean(values))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["labels"] == [0, 10, 40]
    report = (tmp_path / "report.md").read_text()
    assert "| random | 10 | knn-labels |" in report
    # the goal's column: CASCAL + labels minus the better of label-free and best on labels
    mean = {
        name: 100
        * np.mean(
            [r["top1"] for r in runs if r["strategy"] == "active" and r["n_labels"] == 40 and r["router"] == name]
        )
        for name in ("cascal+labels", "label-free", "best-single-labels")
    }
    gap = mean["cascal+labels"] - max(mean["label-free"], mean["best-single-labels"])
    assert f"| active | 40 | {mean['cascal+labels']:.1f} | {mean['label-free']:.1f} | " in report
    assert f"| {gap:+.1f} |" in report
    assert (tmp_path / "label_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_budget_argument_errors():
    data = ranked_dataset()
    with pytest.raises(InvalidParameterError, match="label_strategy"):
        run_label_budget(data, pools=["m00,m01"], strategies=["clever"], progress=False)
    with pytest.raises(InvalidParameterError, match="labels: budgets"):
        run_label_budget(data, pools=["m00,m01"], budgets=[-5], progress=False)


def test_cli_refuses_non_integer_budgets(capsys, tmp_path):
    code = main(["evaluate", "--data", str(tmp_path), "--labels", "10,many"])
    assert code == 2
    assert "--labels: expected comma-separated integers" in capsys.readouterr().err
