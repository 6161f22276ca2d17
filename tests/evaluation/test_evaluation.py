"""Evaluation harness: metrics on hand-made cases, protocol (pools, splits, simulated keys), the
harness on a small synthetic dataset, the report/plots, and CLI argument errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.cli import main
from cascal.data import NO_ANSWER, NOT_ASKED, ResponseMatrix
from cascal.evaluation import ProtocolError, run_evaluation
from cascal.evaluation.harness import summarize_runs
from cascal.evaluation.metrics import (
    accuracy,
    ensemble_accuracy,
    ensemble_correct,
    kendall_tau,
    mean_std,
    model_accuracy,
    oracle_accuracy,
    per_category_accuracy,
)
from cascal.evaluation.protocol import (
    KeySource,
    make_split,
    resolve_keys,
    resolve_model,
    resolve_pool,
    simulated_key,
    stratified_split,
)
from cascal.evaluation.results import NO_KEY, to_jsonable

COLUMNS = [
    "gpt-4o-2024-05-13_5shots",
    "Yi-34B_5shots",
    "Yi-34B-Chat_5shots",
    "Mistral-7B-Instruct-v0.2_5shots",
    "llama_CoT_study",
]


# ---------------------------------------------------------------------------- metrics
def test_accuracy_and_per_category_by_hand():
    answers = np.array([0, 1, 2, 3, 0])
    gold = np.array([0, 1, 0, 3, 1])
    assert accuracy(answers, gold) == pytest.approx(3 / 5)
    per_cat = per_category_accuracy(answers == gold, np.array(["x", "x", "y", "y", "y"]))
    assert per_cat == {"x": 1.0, "y": pytest.approx(1 / 3)}


def test_accuracy_refuses_unknown_gold_and_empty_input():
    with pytest.raises(ValueError, match="gold: 1 question"):
        accuracy(np.array([0, 1]), np.array([0, -1]))
    with pytest.raises(ValueError, match="zero questions"):
        accuracy(np.array([], dtype=int), np.array([], dtype=int))


def test_model_accuracy_leaves_out_not_asked_and_counts_unparsable_wrong():
    answers = np.array([[0, NOT_ASKED, NO_ANSWER], [1, 1, 1], [2, 0, NOT_ASKED]])
    gold = np.array([0, 1, 1])
    # model 0: right, right, wrong -> 2/3; model 1: (not asked), right, wrong -> 1/2; model 2: wrong, right -> 1/2
    np.testing.assert_allclose(model_accuracy(answers, gold), [2 / 3, 1 / 2, 1 / 2])


def test_ensemble_and_oracle_accuracy_by_hand():
    answers = np.array(
        [
            [0, 1, 1],  # models 1 and 2 agree on B
            [2, 0, 1],  # all different: the first choice wins (or the most confident)
            [NO_ANSWER, 3, 3],
            [1, 1, 2],
        ]
    )
    gold = np.array([1, 0, 3, 0])
    ranked = np.array([[0, 1, 2]] * 4)
    # top-1 is the first choice's own answer: A, C, (none), B
    np.testing.assert_array_equal(ensemble_correct(ranked[:, :1], answers, gold), [False, False, False, False])
    # top-3 vote: B, C (ranking order breaks the three-way tie), D, B
    np.testing.assert_array_equal(ensemble_correct(ranked, answers, gold), [True, False, True, False])
    confidence = np.array([[0, 0, 0], [0, 5, 1], [0, 0, 0], [0, 0, 0]], dtype=float)
    assert ensemble_accuracy(ranked, answers, gold, confidence) == pytest.approx(3 / 4)  # model 1 wins the tie
    assert ensemble_accuracy(np.array([[1], [1], [1], [1]]), answers, gold) == pytest.approx(3 / 4)  # model 1 alone
    # the oracle: some model is right on questions 0, 1 and 2, none on 3
    assert oracle_accuracy(answers, gold) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="gold: 1 question"):
        oracle_accuracy(answers, np.array([1, 0, -1, 0]))
    with pytest.raises(ValueError, match="gold: 1 question"):
        ensemble_accuracy(ranked, answers, np.array([1, 0, -1, 0]))


def test_kendall_tau_by_hand():
    # pairs (0,1) concordant, (0,2) concordant, (1,2) discordant -> (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [10, 30, 20]) == pytest.approx(1 / 3)
    assert kendall_tau([3, 2, 1], [0.1, 0.2, 0.3]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))  # a constant ranking says nothing
    with pytest.raises(ValueError, match="at least 2 models"):
        kendall_tau([1], [1])


def test_mean_std_by_hand():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([1.0, math.nan, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert all(math.isnan(v) for v in mean_std([math.nan]))


# ---------------------------------------------------------------------------- protocol
def test_resolve_model_handles_suffixes():
    assert resolve_model("gpt-4o-2024-05-13", COLUMNS) == "gpt-4o-2024-05-13_5shots"
    assert resolve_model("gpt-4o-2024-05-13_5shots", COLUMNS) == "gpt-4o-2024-05-13_5shots"
    assert resolve_model("Yi-34B", COLUMNS) == "Yi-34B_5shots"  # "Yi-34B-Chat_5shots" is another model
    assert resolve_model("llama", COLUMNS) == "llama_CoT_study"
    with pytest.raises(ProtocolError, match="unknown model 'gpt-5'; available models: gpt-4o-2024-05-13_5shots"):
        resolve_model("gpt-5", COLUMNS)
    with pytest.raises(ProtocolError, match="ambiguous"):
        resolve_model("m", ["m_a", "m_b"])


def test_resolve_pool_presets_and_lists():
    assert resolve_pool("all", COLUMNS) == COLUMNS
    assert resolve_pool("gpt-4o-2024-05-13, Yi-34B", COLUMNS) == ["gpt-4o-2024-05-13_5shots", "Yi-34B_5shots"]
    with pytest.raises(ProtocolError, match="unknown model 'gemini-1.5-pro-002'"):
        resolve_pool("large", COLUMNS)
    with pytest.raises(ProtocolError, match="listed twice"):
        resolve_pool("Yi-34B,Yi-34B_5shots", COLUMNS)
    with pytest.raises(ProtocolError, match="at least 2 models"):
        resolve_pool("Yi-34B", COLUMNS)


def test_resolve_keys():
    pool = ["gpt-4o-2024-05-13_5shots", "Yi-34B_5shots"]
    columns = COLUMNS + ["gemini-3.1-pro_5shots", "Meta-Llama-3-70B_5shots"]
    keys = resolve_keys(["real", "weak"], ["llama"], columns, pool)
    assert keys == [
        KeySource("real"),
        KeySource("weak", "Mistral-7B-Instruct-v0.2_5shots"),
        KeySource("llama", "llama_CoT_study"),
    ]
    with pytest.raises(ProtocolError, match="member of the pool"):
        resolve_keys(["weak"], [], columns, pool + ["Mistral-7B-Instruct-v0.2_5shots"])
    with pytest.raises(ProtocolError, match="member of the pool"):
        resolve_keys([], ["Yi-34B"], columns, pool)
    with pytest.raises(ProtocolError, match="unknown key source 'great'"):
        resolve_keys(["great"], [], columns, pool)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sizes=st.lists(st.integers(5, 40), min_size=2, max_size=5))
def test_stratified_split_properties(seed, sizes):
    subjects = np.concatenate([np.full(n, f"s{i}") for i, n in enumerate(sizes)])
    np.random.default_rng(seed).shuffle(subjects)
    train, test = stratified_split(subjects, seed)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(subjects)))
    assert abs(len(train) - 0.6 * len(subjects)) <= 1
    for i, n in enumerate(sizes):  # every subject keeps its share (within rounding)
        assert abs((subjects[train] == f"s{i}").sum() - 0.6 * n) <= 1.5
    again = stratified_split(subjects, seed)
    assert np.array_equal(again[0], train)


def test_stratified_split_changes_with_the_seed():
    subjects = np.repeat(["a", "b"], 50)
    assert not np.array_equal(stratified_split(subjects, 0)[0], stratified_split(subjects, 1)[0])


def _responses(n: int, n_options: int = 4) -> ResponseMatrix:
    return ResponseMatrix(
        answers=np.zeros((n, 1), dtype=int),
        n_options=np.full(n, n_options),
        subjects=np.full(n, "s"),
        model_names=["x"],
    )


def test_simulated_key_fills_only_where_the_generator_did_not_answer():
    generator = np.array([0, 3, NO_ANSWER, 1, NOT_ASKED] * 40)
    train = _responses(len(generator))
    key = simulated_key(train, generator, seed=5)
    answered = generator >= 0
    np.testing.assert_array_equal(key[answered], generator[answered])
    filled = key[~answered]
    assert ((filled >= 0) & (filled < 4)).all()
    assert len(np.unique(filled)) == 4  # 80 draws over 4 options: a random fill, not a constant
    np.testing.assert_array_equal(simulated_key(train, generator, seed=5), key)
    assert not np.array_equal(simulated_key(train, generator, seed=6)[~answered], filled)
    assert key.dtype == np.int8


def test_simulated_key_respects_each_question_s_options():
    train = ResponseMatrix(
        answers=np.zeros((300, 1), dtype=int),
        n_options=np.tile([2, 10, 3], 100),
        subjects=np.full(300, "s"),
        model_names=["x"],
    )
    key = simulated_key(train, np.full(300, NO_ANSWER), seed=0)
    assert (key < train.n_options).all() and (key >= 0).all()
    with pytest.raises(ValueError, match="generator_answers: expected shape"):
        simulated_key(train, np.zeros(5), seed=0)


# ---------------------------------------------------------------------------- the harness
def synthetic_dataset(seed: int = 0, n: int = 240) -> ResponseMatrix:
    """Three subjects in three embedding directions; model 'ace' is right 90 % of the time, 'mid'
    70 %, 'low' 40 %, 'gen' (the generator, outside the pool) 60 %; unparsable cells sprinkled in."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(["alpha", "beta", "gamma"], n // 3)
    direction = np.eye(8)[np.repeat([0, 1, 2], n // 3)]
    emb = direction + 0.3 * rng.normal(size=(n, 8))
    gold = rng.integers(0, 5, size=n)
    skills = {"ace": 0.9, "mid": 0.7, "low": 0.4, "gen": 0.6}
    answers = np.empty((n, 4), dtype=int)
    for j, p in enumerate(skills.values()):
        right = rng.random(n) < p
        answers[:, j] = np.where(right, gold, (gold + rng.integers(1, 5, size=n)) % 5)
    answers[rng.random((n, 4)) < 0.05] = NO_ANSWER
    return ResponseMatrix(
        answers=answers,
        n_options=np.full(n, 5),
        subjects=subjects,
        model_names=list(skills),
        gold=gold,
        embeddings=emb.astype(np.float32),
    )


BASELINES = ["random", "best-consensus", "smoothie-train", "knn", "best-single-gold", "oracle"]


def test_harness_on_synthetic_data(tmp_path):
    data = synthetic_dataset()
    results = run_evaluation(
        data,
        pools=["ace,mid,low"],
        keys=["real"],
        generator_keys=["gen"],
        seeds=2,
        routers=BASELINES,
        out_dir=tmp_path,
        progress=False,
    )
    pool = results["pools"]["ace,mid,low"]
    assert pool["models"] == ["ace", "mid", "low"]
    runs = pool["runs"]
    # label-free routers once per seed, query-answer routers once per key and seed
    assert sorted((r["router"], r["key"]) for r in runs if r["seed"] == 0) == sorted(
        [
            ("random", NO_KEY),
            ("best-consensus", NO_KEY),
            ("smoothie-train", NO_KEY),
            ("knn", "real"),
            ("knn", "gen"),
            ("best-single-gold", "real"),
            ("best-single-gold", "gen"),
        ]
    )
    assert {r["seed"] for r in runs} == {0, 1}
    # the oracle: some pool model right on the test question, recomputed here by hand for seed 0
    _, test_rows = stratified_split(data.subjects, 0)
    pooled = data.answers[test_rows][:, :3]
    assert pool["oracle"]["per_seed"][0] == pytest.approx((pooled == data.gold[test_rows, None]).any(axis=1).mean())
    # best single by the real key sends everything to 'ace', so top-1 equals ace's test accuracy
    best = next(r for r in runs if r["router"] == "best-single-gold" and r["key"] == "real" and r["seed"] == 0)
    assert best["top1"] == pytest.approx((data.answers[test_rows, 0] == data.gold[test_rows]).mean())
    assert best["kendall_tau"] == pytest.approx(1.0)
    assert best["fitted_constants"] == {}  # a baseline calibrates nothing
    assert set(best["per_category"]["top1"]) == {"alpha", "beta", "gamma"}
    # the simulated key agrees with the gold about as often as 'gen' is right (0.6, some random fill)
    assert 0.45 < pool["key_accuracy"]["gen"]["mean"] < 0.75
    assert pool["key_accuracy"]["real"]["mean"] == 1.0
    # summaries are the mean of the per-seed numbers
    row = next(r for r in pool["summary"] if r["router"] == "knn" and r["key"] == "gen")
    per_seed = [r["top3"] for r in runs if r["router"] == "knn" and r["key"] == "gen"]
    assert row["top3"]["mean"] == pytest.approx(np.mean(per_seed))
    assert row["top3"]["std"] == pytest.approx(np.std(per_seed, ddof=1))

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pools"]["ace,mid,low"]["summary"][0]["router"] == "random"
    assert saved["config"]["seeds"] == [0, 1]
    report = (tmp_path / "report.md").read_text()
    assert "| knn | gen |" in report and "oracle" in report and "Kendall" in report
    for name in ("accuracy", "niche_map", "niche_dendrogram"):
        png = tmp_path / f"ace,mid,low_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_free_routers_are_not_given_the_key(monkeypatch):
    seen = []
    from cascal.baselines import BestSingleConsensus

    original = BestSingleConsensus.fit

    def spy(self, embeddings, responses):
        seen.append(responses.gold.copy())
        return original(self, embeddings, responses)

    monkeypatch.setattr(BestSingleConsensus, "fit", spy)
    run_evaluation(
        synthetic_dataset(), pools=["ace,mid,low"], keys=["real"], seeds=1, routers=["best-consensus"], progress=False
    )
    assert len(seen) == 1 and (seen[0] == -1).all()


def test_harness_is_deterministic():
    kwargs = dict(
        pools=["ace,mid,low"],
        keys=["real"],
        generator_keys=["gen"],
        seeds=1,
        routers=["random", "knn", "cluster-rank", "smoothie-train"],
        progress=False,
    )
    a = run_evaluation(synthetic_dataset(), **kwargs)["pools"]["ace,mid,low"]["summary"]
    b = run_evaluation(synthetic_dataset(), **kwargs)["pools"]["ace,mid,low"]["summary"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "fit_seconds"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)


def test_harness_argument_errors():
    data = synthetic_dataset()
    with pytest.raises(ValueError, match="seeds: must be a positive integer"):
        run_evaluation(data, pools=["ace,mid"], seeds=0)
    with pytest.raises(ValueError, match="routers: unknown router"):
        run_evaluation(data, pools=["ace,mid"], routers=["knn", "magic"])
    with pytest.raises(ProtocolError, match="member of the pool"):
        run_evaluation(data, pools=["ace,mid,gen"], keys=[], generator_keys=["gen"], routers=["knn"], progress=False)
    unlabelled = ResponseMatrix(
        answers=data.answers,
        n_options=data.n_options,
        subjects=data.subjects,
        model_names=data.model_names,
        embeddings=data.embeddings,
    )
    with pytest.raises(ProtocolError, match="no gold answer"):
        run_evaluation(unlabelled, pools=["ace,mid"], routers=["knn"])
    no_embeddings = ResponseMatrix(
        answers=data.answers,
        n_options=data.n_options,
        subjects=data.subjects,
        model_names=data.model_names,
        gold=data.gold,
    )
    with pytest.raises(ProtocolError, match="no embeddings"):
        run_evaluation(no_embeddings, pools=["ace,mid"], keys=["real"], routers=["knn"], progress=False)


def test_to_jsonable_turns_nan_into_null():
    assert to_jsonable({"a": np.float32(0.5), "b": [np.nan, np.int64(2)], "c": np.array([1.0, np.inf])}) == {
        "a": 0.5,
        "b": [None, 2],
        "c": [1.0, None],
    }


def test_summarize_runs_groups_by_router_and_key():
    def run(router, key, top1):
        return {
            "router": router,
            "key": key,
            "top1": top1,
            "top3": top1,
            "kendall_tau": 0.5,
            "fit_seconds": 0.1,
            "per_category": {"top1": {"x": top1}, "top3": {"x": top1}},
            "first_choice_share": {"x": [1.0, 0.0]},
        }

    rows = summarize_runs([run("a", "real", 0.5), run("a", "weak", 0.1), run("a", "real", 0.7)])
    assert [(r["router"], r["key"], r["n_seeds"]) for r in rows] == [("a", "real", 2), ("a", "weak", 1)]
    assert rows[0]["top1"]["mean"] == pytest.approx(0.6)
    assert rows[0]["per_category"]["top1"]["x"] == pytest.approx(0.6)


# ---------------------------------------------------------------------------- CLI
def test_cli_argument_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate"])  # --data is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--data", str(tmp_path), "--seeds", "0"])
    assert exc.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path), "--routers", "knn,nope"]) == 2
    assert "unknown router(s) ['nope']" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path / "missing"), "--seeds", "1"]) == 2
    assert "missing" in capsys.readouterr().err


def test_niche_dendrogram_from_router_centroids(tmp_path):
    from types import SimpleNamespace

    from cascal.evaluation.plots import plot_niche_dendrogram
    from cascal.evaluation.results import FittedExample

    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(7, 8))
    router = SimpleNamespace(  # the fitted attributes CASCAL exposes
        model_names_=["ace", "mid", "low"],
        subject_names_=["alpha", "beta"],
        centroids_=centroids / np.linalg.norm(centroids, axis=1, keepdims=True),
        centroid_subject_=np.array([0, 0, 1, 1, 1, 1, 1]),
        centroid_scores_=rng.random((7, 3)),
        centroid_sizes_=np.arange(7) + 10,
    )
    data = synthetic_dataset()
    split = make_split(data, ["ace", "mid", "low"], 0)
    path = plot_niche_dendrogram(FittedExample("p", "cascal", router, split), tmp_path / "d.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_general_plots_take_plain_rows_and_arrays(tmp_path):
    from cascal.evaluation.plots import plot_accuracy_bars, plot_who_wins

    rows = [
        {"router": r, "key": k, "top1": {"mean": 0.5 + 0.1 * i, "std": None}, "top3": {"mean": 0.7, "std": 0.05}}
        for i, (r, k) in enumerate([("a", "weak"), ("a", "strong"), ("b", "-")])
    ]
    labels = []
    path = plot_accuracy_bars(rows, "t", tmp_path / "bars.png", oracle=0.9, key_label=lambda k: labels.append(k) or k)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert set(labels) == {"weak", "strong", "-"}
    accuracy = np.array([[0.2, 0.9], [np.nan, 0.4]])
    assert plot_who_wins(["x", "y"], ["m1", "m2"], accuracy, "t", tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    share = np.array([[0.0, 1.0], [0.5, 0.5]])
    path = plot_who_wins(["x", "y"], ["m1", "m2"], accuracy, "t", tmp_path / "b.png", first_choice_share=share)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_cli_help_lists_every_router(capsys):
    from cascal.evaluation.routers import ORACLE, available_routers

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in [*available_routers(), ORACLE]:
        assert name in text
