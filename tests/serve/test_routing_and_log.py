"""The gateway's routing decisions against the router and its kernel (subject weights included), and
the decision log's lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cascal.embedding import load_embedder
from cascal.kernels import route_batch
from cascal.router import CascalRouter
from cascal.serve.decision_log import DecisionLog, DecisionRecord, query_hash
from cascal.serve.routing import RouteEngine


@pytest.fixture(scope="module")
def router(router_file):
    return CascalRouter.load(router_file)


def test_decisions_are_the_routers_with_the_kernels_subject_weights(router, questions):
    assert router.subject_temp_ > 0  # the session router assigns soft
    embedder = load_embedder(router.embedding_model)
    texts = [q.question for q in questions[:12]]
    decisions = RouteEngine(router, embedder).decide(texts)
    X = np.asarray(embedder.encode(texts), dtype=np.float32)
    details = router.route_details(X, top_k=len(router.model_names_))
    kernel = route_batch(X, router.tables_, router.route_params(len(router.model_names_)), subject_weights=True)
    for i, d in enumerate(decisions):
        assert list(d.ranking) == [router.model_names_[j] for j in details.ranked[i]]
        assert d.subject == router.subject_names_[details.subject[i]]
        weights = np.array([d.subject_weights[s] for s in router.subject_names_])
        np.testing.assert_array_equal(weights, kernel.subject_weights[i])  # the kernel's, bit for bit
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert max(d.subject_weights, key=d.subject_weights.get) == d.subject


def test_a_hard_router_reports_no_subject_weights(router_file, questions):
    hard = CascalRouter.load(router_file)
    hard.subject_temp_ = 0.0
    (d,) = RouteEngine(hard, load_embedder(hard.embedding_model)).decide([questions[0].question])
    assert d.subject_weights is None and d.to_json()["subject_weights"] is None


def test_decision_log_lines(tmp_path):
    path = tmp_path / "log" / "decisions.jsonl"
    log = DecisionLog(path)
    log.write(
        DecisionRecord(
            "chat",
            "What is the pH of pure water?",
            ("m2", "m1"),
            model="m1",
            failovers=1,
            latency_ms=12.34567,
            usage={"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": "14"},
            extra={"stream": True},
            router_sha256="ab" * 32,
        )
    )
    log.write(DecisionRecord("route", "x", ["m1"], usage={"prompt_tokens": "many"}))
    log.close()
    log.write(DecisionRecord("route", "after close", ["m1"]))  # dropped, not an error
    first, second = [json.loads(line) for line in path.read_text().splitlines()]
    assert list(first) == [
        "time",
        "endpoint",
        "router_sha256",
        "query_sha256",
        "ranking",
        "model",
        "failovers",
        "status",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "stream",
    ]
    assert first["query_sha256"] == query_hash("What is the pH of pure water?") and len(first["query_sha256"]) == 16
    assert (first["ranking"], first["model"], first["failovers"], first["status"]) == (["m2", "m1"], "m1", 1, 200)
    assert (first["latency_ms"], first["prompt_tokens"], first["completion_tokens"]) == (12.346, 11, 3)
    assert first["stream"] is True and first["time"].endswith("+00:00")
    assert first["router_sha256"] == "ab" * 32 and second["router_sha256"] is None  # on every line
    assert second == {**second, "endpoint": "route", "model": None, "failovers": 0, "status": 200}
    assert "prompt_tokens" not in second and "text" not in second
    with_text = DecisionLog(tmp_path / "text.jsonl", log_text=True)
    with_text.write(DecisionRecord("route", "the question", ["m1"]))
    with_text.close()
    assert json.loads((tmp_path / "text.jsonl").read_text())["text"] == "the question"
