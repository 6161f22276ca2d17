"""End to end: a gateway (uvicorn + the simulator) logs its decisions with ``--log-embeddings``, and
``cascal coverage`` finds the traffic of a topic the router's tasks never named, and only that."""

from __future__ import annotations

import hashlib
import json
import random

import httpx
import pytest
from conftest import pool_file

from cascal.cli import main
from cascal.generation.parser import parse_questions
from cascal.generation.prompt import build_messages
from cascal.io.decision_embeddings import default_sidecar
from cascal.llm.config import load_tasks
from cascal.simulate import SUBJECTS, SimulatedResponder
from cascal.simulate.server import pool_yaml

#: the router of the session is trained on the first two subjects; this one it never saw
PLANTED = SUBJECTS[2]


def held_out(world, subject, n: int) -> list[str]:
    """``n`` questions on ``subject`` from generation attempts the training set did not use."""
    responder = SimulatedResponder(world)
    out: list[str] = []
    attempt = 50
    while len(out) < n:
        reply = responder.reply(
            "sim-generator-strong", build_messages(subject.key, subject.description, 20, attempt=attempt)
        )
        out += [q.question for q in parse_questions(reply.text)[0]]
        attempt += 1
    return out[:n]


@pytest.fixture(scope="module")
def traffic(world):
    covered = held_out(world, SUBJECTS[0], 30) + held_out(world, SUBJECTS[1], 30)
    return covered, held_out(world, PLANTED, 30)


def serve_traffic(start_gateway, simulator, world, tmp_path, traffic, **logging):
    covered, planted = traffic
    pool = pool_file(tmp_path / "pool.yaml", [(m, simulator.base_url) for m in world.model_names])
    log = tmp_path / "decisions.jsonl"
    gateway = start_gateway(pool, log_decisions=str(log), log_embeddings=True, **logging)
    mixed = covered + planted
    random.Random(0).shuffle(mixed)
    response = httpx.post(gateway.url + "/v1/route", json={"input": mixed}, timeout=60)
    assert response.status_code == 200
    for q in (covered[0], planted[0]):
        chat = {"model": "cascal", "messages": [{"role": "user", "content": q}]}
        assert httpx.post(gateway.base_url + "/chat/completions", json=chat, timeout=60).status_code == 200
    gateway.stop()  # closes the log and writes the sidecar's last part
    return log


def test_coverage_finds_the_planted_topic_and_nothing_of_the_covered_traffic(
    start_gateway, simulator, world, tmp_path, traffic, router_file, capsys
):
    covered, planted = traffic
    log = serve_traffic(start_gateway, simulator, world, tmp_path, traffic, log_text=True)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 92 and all("fallback_weight" in line and "nearest_distance" in line for line in lines)
    assert list(default_sidecar(log).glob("part-*.npz"))
    out = tmp_path / "coverage"
    args = ["coverage", str(log), "--router", str(router_file), "--out", str(out), "--min-size", "10", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr()
    # the gateway records the router file's hash on every line, so the reader checks each one
    router_hash = hashlib.sha256(router_file.read_bytes()).hexdigest()
    assert {line["router_sha256"] for line in lines} == {router_hash}
    assert "uncovered_01" in printed.out and "do not record router_sha256" not in printed.err
    report = json.loads((out / "coverage.json").read_text())
    text_of = {line["id"]: line["text"] for line in lines}
    planted_ids = {i for i, t in text_of.items() if t in set(planted)}
    clustered = [i for c in report["clusters"] for i in c["ids"]]
    assert clustered and set(clustered) <= planted_ids  # nothing of the covered traffic
    biggest = report["clusters"][0]
    assert biggest["sampled"] >= 0.8 * len(planted_ids)
    assert all(e in planted for e in biggest["examples"]) and len(biggest["examples"]) == 5
    assert biggest["nearest_subject"] in (SUBJECTS[0].key, SUBJECTS[1].key)
    assert report["sample"]["embedding_source"].startswith("sidecar")
    assert sum(s["count"] for s in report["subjects"]) == report["lines"]["routed"] == 92
    tasks = load_tasks(out / "tasks.yaml")  # the draft is a tasks file `cascal generate` reads
    assert tasks.names == [c["name"] for c in report["clusters"]]
    assert (out / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --describe: the simulator's generator names the cluster from its examples, once (cached)
    generators = tmp_path / "generators.yaml"
    generators.write_text(pool_yaml(simulator.base_url, world, generators=True))
    sent = len(simulator.request_log)
    for _ in range(2):
        assert main([*args, "--describe", "--generator-pool", str(generators)]) == 0
    assert len(simulator.request_log) - sent == len(report["clusters"])
    described = load_tasks(out / "tasks.yaml")
    assert PLANTED.key in described.names
    assert described.subjects[PLANTED.key] == PLANTED.description


def test_without_log_text_no_text_is_written_and_clusters_come_from_the_sidecar(
    start_gateway, simulator, world, tmp_path, traffic, router_file, capsys
):
    covered, planted = traffic
    log = serve_traffic(start_gateway, simulator, world, tmp_path, traffic)
    written = log.read_bytes() + b"".join(p.read_bytes() for p in default_sidecar(log).iterdir())
    for q in covered + planted:
        assert q.encode("utf-8") not in written
    out = tmp_path / "coverage"
    args = ["coverage", str(log), "--router", str(router_file), "--out", str(out), "--min-size", "10", "--no-progress"]
    assert main(args) == 0
    report = json.loads((out / "coverage.json").read_text())
    assert report["clusters"] and report["clusters"][0]["examples"] == []
    assert "no query text was logged" in load_tasks(out / "tasks.yaml").subjects["uncovered_01"]
    generators = tmp_path / "generators.yaml"
    generators.write_text(pool_yaml(simulator.base_url, world, generators=True))
    assert main([*args, "--describe", "--generator-pool", str(generators)]) == 2
    assert "--log-text" in capsys.readouterr().err


def test_log_embeddings_needs_a_decision_log():
    from cascal.errors import InvalidParameterError
    from cascal.serve.settings import GatewaySettings

    with pytest.raises(InvalidParameterError, match="log_embeddings: needs log_decisions"):
        GatewaySettings(log_embeddings=True)


def test_describe_merges_clusters_the_generator_names_alike(simulator, world, traffic, tmp_path):
    """One topic split in two clusters (as the drift demo's history was) comes back as one subject to
    generate for; a name that is a router subject is suffixed instead of merged into it."""
    from cascal.coverage.analysis import Cluster, CoverageReport, CoverageSettings
    from cascal.coverage.describe import describe_clusters
    from cascal.llm.config import load_pool

    _, planted = traffic

    def cluster(name, texts, size, distance):
        return Cluster(
            name=name,
            size=size,
            sampled=len(texts),
            share=size / 100,
            nearest_subject=SUBJECTS[0].key,
            subject_distance=distance,
            niche_distance=distance + 0.01,
            mean_fallback_weight=0.3 if size > 10 else 0.6,
            routed_subjects={SUBJECTS[0].key: len(texts)},
            examples=texts[:5],
            ids=[f"{name}-{i}" for i in range(len(texts))],
        )

    parts = [
        cluster("uncovered_01", planted[:20], 20, 0.30),
        cluster("uncovered_02", planted[20:], 10, 0.25),
        cluster("uncovered_03", held_out(world, SUBJECTS[0], 6), 6, 0.40),
    ]
    subjects = [{"subject": s.key, "count": 40, "uncovered": 0} for s in SUBJECTS[:2]]
    report = CoverageReport(
        log="decisions.jsonl", router="r.cascal", router_sha256="0" * 64, settings=CoverageSettings(),
        cut=0.3, lines=100, routed=100, unverified=0, damage=None, uncovered=36, mostly_fallback=0,
        subjects=subjects, clusters=parts, clusters_below_floor=0, sampled=36,
        embedding_source="sidecar", missing_embeddings=0,
    )  # fmt: skip
    generators = tmp_path / "generators.yaml"
    generators.write_text(pool_yaml(simulator.base_url, world, generators=True))
    generator = load_pool(generators).models[0]
    assert describe_clusters(report, generator, cache_path=tmp_path / "cache.sqlite") == 3
    names = [c.name for c in report.clusters]
    assert names == [PLANTED.key, f"{SUBJECTS[0].key}_2"]
    merged = report.clusters[0]
    assert (merged.size, merged.sampled) == (30, 30) and merged.share == pytest.approx(0.30)
    assert sorted(merged.ids) == sorted(
        [f"uncovered_01-{i}" for i in range(20)] + [f"uncovered_02-{i}" for i in range(10)]
    )
    assert merged.subject_distance == 0.25  # the part nearest a router subject
    assert merged.mean_fallback_weight == pytest.approx((20 * 0.3 + 10 * 0.6) / 30)
    assert merged.examples[:2] == [planted[0], planted[20]] and len(merged.examples) == 5
    assert merged.routed_subjects == {SUBJECTS[0].key: 30}
