"""`run_demo(quick=True)` end to end: the table's structure, the paper's effect, the report files."""

from __future__ import annotations

import json

import pytest

from cascal.cli import main
from cascal.demo.runner import DemoConfig

ROUTERS = {"CASCAL": "query-only", "kNN correctness": "query-answer", "best single (consensus)": "label-free"}


@pytest.fixture(scope="module")
def demo(quick_demo):
    """The session's quick demo (tests/conftest.py; the --serve test reuses its caches)."""
    return quick_demo


def score(result: dict, router: str, generator: str = "-", data: str = "raw") -> dict:
    data = "-" if generator == "-" else data
    rows = [s for s in result["scores"] if (s["router"], s["generator"], s["data"]) == (router, generator, data)]
    assert len(rows) == 1, (router, generator, data)
    return rows[0]


def test_table_has_every_router_generator_and_data_variant(demo):
    _, result = demo
    assert result["config"]["generators"] == ["weak", "strong"]
    assert len(result["scores"]) == 2 + 2 * 2 * len(ROUTERS)
    for generator in ("weak", "strong"):
        for data in ("raw", "filtered"):
            for router, kind in ROUTERS.items():
                row = score(result, router, generator, data)
                assert row["kind"] == kind
                assert 0.0 <= row["top1"] <= 1.0 and 0.0 <= row["top3"] <= 1.0
    for ref in ("best single (true answers)", "oracle (any model right)"):
        assert score(result, ref)["kind"] == "reference"
    table = result["table"]
    assert table.startswith("SIMULATED pool")
    for label in ["CASCAL", "kNN correctness", "oracle (any model right)", "weak top-1", "strong top-3"]:
        assert label in table


def test_cascal_holds_with_the_weak_generator_where_the_query_answer_router_falls(demo):
    _, result = demo
    cascal_weak = score(result, "CASCAL", "weak")
    knn_weak, knn_strong = score(result, "kNN correctness", "weak"), score(result, "kNN correctness", "strong")
    oracle = score(result, "oracle (any model right)")
    assert cascal_weak["top1"] > knn_weak["top1"]
    assert cascal_weak["top3"] > knn_weak["top3"]
    assert knn_weak["top1"] < knn_strong["top1"]  # the query-answer router falls with a weak key
    for generator in ("weak", "strong"):
        row = score(result, "CASCAL", generator)
        assert row["top1"] < oracle["top1"] and row["top3"] <= oracle["top3"]
        # routing beats sending everything to the best single model by consensus
        assert row["top3"] > score(result, "best single (consensus)", generator)["top3"]


def test_generators_are_calibrated_and_the_test_key_is_the_truth(demo):
    _, result = demo
    weak, strong = result["generation"]["weak"], result["generation"]["strong"]
    assert weak["key_accuracy"] < 0.6 < 0.8 < strong["key_accuracy"]
    assert strong["self_answer"] > weak["self_answer"]
    # filtering on self-answer keeps questions whose key is right more often
    assert weak["key_accuracy_after_filter"] > weak["key_accuracy"]
    assert 0 < weak["kept_by_filter"] < weak["questions"]
    assert result["test"]["key_matches_truth"] == 1.0
    assert result["test"]["questions"] == 2 * DemoConfig.for_mode(True).n_test


def test_report_files(demo):
    out, result = demo
    report = (out / "report.md").read_text()
    assert "SIMULATED" in report and "| CASCAL |" in report
    for png in ("accuracy.png", "niche_map.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report
    saved = json.loads((out / "results.json").read_text())
    assert saved["scores"] == result["scores"]
    for name in ("test", "train_weak", "train_strong", "train_weak_filtered"):
        assert (out / name / "questions.jsonl").exists() and (out / name / "predictions.csv").exists()
    assert (out / "router_weak_raw.cascal").exists()
    assert all(ex["routed_top3"] and ex["niche"] for ex in result["examples"])


def test_cli_rerun_reuses_the_caches_and_reproduces_the_numbers(demo, capsys):
    from cascal.llm.cache import ResponseCache

    out, result = demo

    def cached() -> tuple[int, int]:
        with ResponseCache(out / "answer_cache.sqlite") as a, ResponseCache(out / "generation_cache.sqlite") as g:
            return len(a), len(g)

    before = cached()
    assert before[0] > 0 and before[1] > 0
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert cached() == before  # every reply came from the caches: nothing new was asked
    printed = capsys.readouterr().out
    assert "SIMULATED pool" in printed and "report:" in printed
    again = json.loads((out / "results.json").read_text())
    assert again["scores"] == result["scores"]
    assert again["generation"] == result["generation"]


def test_bad_demo_arguments(tmp_path, capsys):
    with pytest.raises(ValueError, match="generators"):
        DemoConfig(generators=("huge",))
    with pytest.raises(ValueError, match="n_subjects"):
        DemoConfig(n_subjects=0)
    assert main(["demo", "--out", str(tmp_path), "--generators", "weak,giant", "--no-progress"]) == 2
    assert "generators" in capsys.readouterr().err
