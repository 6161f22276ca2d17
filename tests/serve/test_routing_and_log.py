"""The gateway's routing decisions against the router and its kernel (subject weights included), and
the decision log's lines."""

from __future__ import annotations

import json
import time

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
        "id",
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
    assert "prompt_tokens" not in second and "text" not in second and "subject" not in second
    assert first["id"] != second["id"] and first["id"].split("-")[0] == second["id"].split("-")[0]
    with_text = DecisionLog(tmp_path / "text.jsonl", log_text=True)
    with_text.write(DecisionRecord("route", "the question", ["m1"]))
    with_text.close()
    assert json.loads((tmp_path / "text.jsonl").read_text())["text"] == "the question"


def test_routed_lines_carry_the_coverage_fields_and_the_sidecar_their_embeddings(router, questions, tmp_path):
    from cascal.io.decision_embeddings import EmbeddingSidecar, default_sidecar, read_sidecar

    embedder = load_embedder(router.embedding_model)
    texts = [q.question for q in questions[:5]]
    decisions = RouteEngine(router, embedder).decide(texts)
    X = np.asarray(embedder.encode(texts), dtype=np.float32)
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, embeddings=EmbeddingSidecar(default_sidecar(path), part_rows=2))
    for text, d in zip(texts, decisions):
        log.write(DecisionRecord("route", text, d.ranking, decision=d))
    log.write(DecisionRecord("chat", "asked by name", ["m1"]))  # not routed: no fields, no embedding
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line, d, x in zip(lines, decisions, X):
        assert (line["subject"], line["niche"]) == (d.subject, d.niche)
        assert line["subject_weight"] == pytest.approx(d.subject_weights[d.subject], abs=1e-6)
        assert line["fallback_weight"] == pytest.approx(d.alpha, abs=1e-6)
        # the logged niche is the one the kernel measured its distance to
        niches = router.niches_[d.subject]
        distances = [
            1.0 - float(x @ n.centroid) / float(np.linalg.norm(x) * np.linalg.norm(n.centroid)) for n in niches
        ]
        assert int(np.argmin(distances)) == d.niche
        assert line["nearest_distance"] == pytest.approx(min(distances), abs=1e-5)
        assert "text" not in line
    assert "subject" not in lines[-1]
    parts = sorted(default_sidecar(path).glob("part-*.npz"))
    assert len(parts) == 3  # 2 + 2 + the last one written at close
    stored = read_sidecar(default_sidecar(path), [line["id"] for line in lines], dim=X.shape[1])
    assert set(stored) == {line["id"] for line in lines[:-1]}
    for line, x in zip(lines, X):
        np.testing.assert_array_equal(stored[line["id"]], x)
    assert not any("asked by name" in p.read_bytes().decode("latin-1") for p in parts)


def test_the_writer_thread_keeps_writes_off_the_caller_and_drops_beyond_a_full_queue(tmp_path):
    import threading

    path = tmp_path / "decisions.jsonl"
    dropped: list[int] = []
    log = DecisionLog(path, max_pending=4, on_drop=dropped.append)
    release, entered = threading.Event(), threading.Event()

    def slow_redact(line: str) -> str:  # a disk that hangs: the writer thread waits here
        entered.set()
        assert release.wait(30)
        return line.replace("secret-key", "[redacted]")

    log.redact = slow_redact
    log.write(DecisionRecord("route", "first", ["m1"]))
    assert entered.wait(30)  # the writer thread took the first line and is stuck on it
    for i in range(10):  # the caller never waits: 4 lines fit in the queue, the other 6 are dropped
        log.write(DecisionRecord("route", f"q{i} secret-key", ["m1"]))
    assert log.dropped == 6 and dropped == [1] * 6
    assert path.read_text() == ""  # nothing written while the writer is stuck
    release.set()
    log.flush()  # a reader mid-run: every line queued so far is in the file
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["query_sha256"] for line in lines] == [
        query_hash(t) for t in ["first"] + [f"q{i} secret-key" for i in range(4)]
    ]
    log.write(DecisionRecord("route", "last", ["m1"]))
    log.close()
    assert len(path.read_text().splitlines()) == 6 and log.dropped == 6


def test_the_redaction_runs_on_every_line_the_thread_writes(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, log_text=True)
    log.redact = lambda line: line.replace("sk-live-123", "[redacted]")
    for i in range(200):
        log.write(DecisionRecord("chat", f"my key is sk-live-123 ({i})", ["m1"]))
    log.close()
    text = path.read_text()
    assert "sk-live-123" not in text and text.count("[redacted]") == 200


@pytest.mark.parametrize("pipeline", [1, 2])
def test_the_next_batch_is_embedded_while_one_is_in_flight(router, questions, pipeline):
    """With ``pipeline=2`` a second batch starts embedding while the first is still being embedded
    (the embedder below lets a batch finish only once another one is inside it, or after 2 s);
    with ``pipeline=1`` the second waits for the first, so the first waits its full 2 s."""
    import asyncio
    import threading

    inner = load_embedder(router.embedding_model)
    both_inside = threading.Barrier(2)

    class Waiting:
        name = inner.name

        def encode(self, texts):
            try:
                both_inside.wait(timeout=2.0)
            except threading.BrokenBarrierError:
                pass
            return inner.encode(texts)

    async def scenario():
        engine = RouteEngine(router, Waiting(), pipeline=pipeline)
        await engine.start()
        try:
            started = time.perf_counter()
            first = asyncio.create_task(engine.route(questions[0].question))
            await asyncio.sleep(0.05)  # the first batch is in the embedder by now
            second = asyncio.create_task(engine.route(questions[1].question))
            decisions = await asyncio.gather(first, second)
            return decisions, time.perf_counter() - started
        finally:
            await engine.stop()

    decisions, seconds = asyncio.run(scenario())
    expected = RouteEngine(router, inner).decide([questions[0].question, questions[1].question])
    assert [d.ranking for d in decisions] == [d.ranking for d in expected]
    if pipeline == 2:
        assert seconds < 1.5 and not both_inside.broken
    else:
        assert seconds >= 2.0 and both_inside.broken
