"""The drift experiment end to end, small: traffic through a real gateway, ``cascal coverage`` finds
and describes the subject it drifted to, a refresh for it (reloaded into the gateway) raises routing
accuracy there (true answers of the simulator) and keeps it on the old subjects."""

from __future__ import annotations

import json

import pytest

from cascal.demo.drift import DriftConfig
from cascal.errors import InvalidParameterError
from cascal.io.decision_log import DecisionLogReader, file_sha256
from cascal.llm.config import load_tasks

#: How far top-1 accuracy on the old subjects' traffic may fall after the refresh (2 of 60 queries).
OLD_SUBJECTS_TOLERANCE = 2 / 60


def rows(result: dict) -> dict[str, dict]:
    return {row["traffic"]: row for row in result["accuracy"]}


def test_refresh_raises_new_topic_accuracy_and_keeps_the_old_topics(small_drift):
    _, result = small_drift
    assert result["new_subjects"] == ["law"] and result["new_share"] == pytest.approx(1 / 3)
    assert result["traffic_key_matches_truth"] == 1.0  # the oracle generator's key is the truth
    by = rows(result)
    new, old = by["new subjects"], by["old subjects"]
    assert new["after"]["top1"] >= new["before"]["top1"] + 0.15
    assert new["after"]["top3"] > new["before"]["top3"]
    for k in ("top1", "top3"):
        assert old["after"][k] >= old["before"][k] - OLD_SUBJECTS_TOLERANCE
    assert new["after"]["top1"] <= new["oracle"]


def test_coverage_names_the_new_subject_and_the_reloaded_gateway_serves_the_refreshed_router(small_drift):
    out, result = small_drift
    # the tasks the refresh used are the coverage draft, described by the generator from the log's examples
    clusters = result["coverage"]["clusters"]
    assert [c["name"] for c in clusters] == ["law"] and clusters[0]["size"] >= 20
    assert load_tasks(out / "coverage" / "tasks.yaml").names == ["law"] == result["refresh"]["subjects"]
    # the gateway answered with the old router's hash, then after POST /admin/reload with the new file's
    served = result["served"]
    assert served["before"] == file_sha256(out / "refresh" / "previous.cascal")
    assert served["after"] == served["reload"]["router_sha256"] == file_sha256(out / "router.cascal")
    # every line of the decision log records the router that routed it: the traffic twice, before and after
    hashes = [line["router_sha256"] for line in DecisionLogReader(out / "decisions.jsonl", None)]
    assert hashes == [served["before"]] * 90 + [served["after"]] * 90
    assert any((out / "decisions.jsonl.embeddings").glob("part-*.npz"))


def test_refresh_pays_only_for_the_new_questions_and_reports_the_shadow_check(small_drift):
    out, result = small_drift
    refresh = result["refresh"]
    for stats in refresh["answering"].values():
        assert stats["requests_sent"] == refresh["generated"] and stats["cached"] == 0
    # the pool's answers on the new questions plus a few generator requests, nothing for the old questions
    assert 6 * refresh["generated"] <= refresh["requests"] <= 6 * refresh["generated"] + 20
    traffic = {row["subject"]: row for row in result["shadow"]["traffic"]}
    assert traffic["all"]["queries"] == 90
    # decisions changed where the traffic drifted, not on the subjects the router knew
    assert traffic["law"]["top1_changed"] > 0.5 and traffic["law"]["fallback_before"] > traffic["law"]["fallback_after"]
    assert traffic["biology"]["top1_changed"] <= 0.1 and traffic["chemistry"]["top1_changed"] <= 0.1
    consensus = result["shadow"]["new_questions"]
    assert consensus["top1_after"] > consensus["top1_before"]
    assert json.loads((out / "drift.json").read_text())["accuracy"] == result["accuracy"]
    assert "top-1 before" in result["table"] and "shadow check on 90 logged queries" in result["table"]


def test_drift_config_refuses_impossible_sizes():
    with pytest.raises(InvalidParameterError, match="n_old, n_new"):
        DriftConfig(n_old=5, n_new=2)
    with pytest.raises(InvalidParameterError, match="generator"):
        DriftConfig(generator="oracle")
