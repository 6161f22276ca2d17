"""``cascal evaluate`` end to end on the real MMLU-Pro answers, one seed (docs/algorithm.md#evaluation-protocol).

One run of the harness (pools large and small, keys real and weak, seed 0) feeds every test here.
The bounds are the data facts and acceptance targets of the evaluation task, taken from the
recorded 5-seed run (docs/algorithm.md#evaluation-protocol) and widened by about a point because a
single seed varies that much; they still fail a broken split, key, vote or router.
"""

from __future__ import annotations

import json

import pytest

from cascal.evaluation import run_evaluation
from cascal.evaluation.results import NO_KEY

pytestmark = pytest.mark.slow

ROUTERS = [
    "random",
    "best-consensus",
    "smoothie-train",
    "cascal",
    "knn",
    "cluster-rank",
    "cascal-gt",
    "best-single-gold",
    "oracle",
]
QUERY_ANSWER_BASELINES = ["knn", "cluster-rank", "cascal-gt"]
QUERY_ANSWER = QUERY_ANSWER_BASELINES + ["best-single-gold"]  # + the reference that trusts the key


@pytest.fixture(scope="module")
def evaluation(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate_real")
    results = run_evaluation(
        data_dir, pools=["large", "small"], keys=["real", "weak"], seeds=1, routers=ROUTERS, out_dir=out, progress=False
    )
    return results, out


def score(results, pool, router, key, metric="top1"):
    row = next(r for r in results["pools"][pool]["summary"] if r["router"] == router and r["key"] == key)
    return row[metric]["mean"]


def test_data_facts(evaluation):
    results, _ = evaluation
    large = results["pools"]["large"]
    assert 0.870 <= large["oracle"]["mean"] <= 0.890
    assert 0.705 <= score(results, "large", "best-single-gold", "real") <= 0.730
    assert 0.735 <= score(results, "large", "best-single-gold", "real", "top3") <= 0.755
    # the weak generator (Mistral-7B-Instruct-v0.2, ~29 % accurate, random key where it gave none)
    assert 0.25 <= large["key_accuracy"]["weak"]["mean"] <= 0.35
    assert large["key_accuracy"]["real"]["mean"] == 1.0
    # letters beyond their question's options are counted, not hidden (34 for gemini-1.5-flash,
    # counted independently from predictions.csv and questions.jsonl)
    assert results["out_of_range_answers"]["gemini-1.5-flash-002_5shots"] == 34


def test_baselines_behave_on_pool_large(evaluation):
    results, _ = evaluation
    random_top1 = score(results, "large", "random", NO_KEY)
    for router in ("best-consensus", "smoothie-train"):
        assert score(results, "large", router, NO_KEY) >= random_top1 + 0.05, router
    for router in QUERY_ANSWER:
        real, weak = score(results, "large", router, "real"), score(results, "large", router, "weak")
        assert real >= random_top1 + 0.08, router
        assert weak <= real - 0.04, router  # a weak generator's key misleads them
    assert 0.70 <= score(results, "large", "knn", "real") <= 0.74
    gold_tau = next(
        r for r in results["pools"]["large"]["summary"] if r["router"] == "best-single-gold" and r["key"] == "real"
    )["kendall_tau"]
    assert gold_tau["mean"] >= 0.7


def test_pool_small(evaluation):
    # six models within 12 points of each other: little to gain from routing, much less to lose
    results, _ = evaluation
    assert 0.74 <= results["pools"]["small"]["oracle"]["mean"] <= 0.77
    random_top3 = score(results, "small", "random", NO_KEY, "top3")
    for row in results["pools"]["small"]["summary"]:
        if row["router"] != "random":
            assert row["top3"]["mean"] >= random_top3, (row["router"], row["key"])


def test_outputs_written(evaluation):
    results, out = evaluation
    saved = json.loads((out / "results.json").read_text())
    assert saved["data_path"] and saved["cascal_version"] == results["cascal_version"]
    assert set(saved["pools"]) == {"large", "small"}
    for pool in ("large", "small"):
        for name in ("accuracy", "niche_map", "niche_dendrogram"):
            assert (out / f"{pool}_{name}.png").stat().st_size > 10_000
    assert "## Pool `small`" in (out / "report.md").read_text()


def test_cascal_targets(evaluation):
    results, _ = evaluation
    # pool large: top-3 >= 73.0 and top-1 >= 70.5 over 5 seeds; pool small: top-3 >= 47.5
    # the routing constants CASCAL calibrated are on record (MiniLM on MMLU-Pro: T ~0.05, ~0.85)
    run = next(r for r in results["pools"]["large"]["runs"] if r["router"] == "cascal")
    assert 0.02 < run["fitted_constants"]["subject_temp"] < 0.1
    assert 0.7 < run["fitted_constants"]["fallback_distance"] < 1.0
    assert score(results, "large", "cascal", NO_KEY, "top3") >= 0.73
    assert score(results, "large", "cascal", NO_KEY, "top1") >= 0.71
    assert score(results, "small", "cascal", NO_KEY, "top3") >= 0.475
    # with the weak generator's key CASCAL (which never reads a key) beats every query-answer router.
    # The task's target is +8 (top-3) / +12 (top-1) points; the recorded run falls short of it on
    # top-3 (docs/algorithm.md), so these margins sit below that run and guard against regressions
    # rather than certifying the top-3 target.
    for router in QUERY_ANSWER_BASELINES:
        assert (
            score(results, "large", "cascal", NO_KEY, "top3") >= score(results, "large", router, "weak", "top3") + 0.05
        )
        assert (
            score(results, "large", "cascal", NO_KEY, "top1") >= score(results, "large", router, "weak", "top1") + 0.10
        )
