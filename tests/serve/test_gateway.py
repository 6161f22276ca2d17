"""The gateway for real: the simulator and the gateway on 127.0.0.1 (uvicorn in threads), talked to
with the real ``openai`` client (and httpx for the requests the client cannot malform)."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from conftest import ENGINES, pool_file

from cascal.cli import main as cli_main
from cascal.embedding import load_embedder
from cascal.errors import ConfigError, EmbeddingError
from cascal.pipeline.answer import build_messages
from cascal.router import CascalRouter
from cascal.serve.server import build_gateway
from cascal.serve.settings import GatewaySettings
from cascal.simulate import serve_simulator
from cascal.simulate.chat_server import Fault


def free_dead_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def in_process_ranking(router_file, text: str) -> list[str]:
    router = CascalRouter.load(router_file)
    x = load_embedder(router.embedding_model).encode([text])
    routing = router.route(x, top_k=len(router.model_names_))
    return routing.top_models(0)


def client(gw, key: str = "EMPTY") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=20)


@pytest.fixture
def sim_pool(world, simulator, tmp_path):
    return pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])


def messages_of(q) -> list[dict]:
    return build_messages(q.question, q.options)


# ------------------------------------------------------------------------------------------ chat
@pytest.mark.parametrize("start_gateway", ENGINES, indirect=True)
def test_routed_completion_is_the_top_models_reply(start_gateway, sim_pool, simulator, questions, router_file):
    gw = start_gateway(sim_pool)
    c = client(gw)
    direct = openai.OpenAI(base_url=simulator.base_url, api_key="EMPTY", max_retries=0)
    for q in questions[:4]:
        raw = c.chat.completions.with_raw_response.create(model="cascal", messages=messages_of(q), temperature=0)
        reply = raw.parse()
        expected = in_process_ranking(router_file, messages_of(q)[-1]["content"])
        assert json.loads(raw.headers["x-cascal-route"]) == expected[:3]
        assert reply.model == expected[0] == raw.headers["x-cascal-model"]
        assert raw.headers["x-cascal-failovers"] == "0"
        same = direct.chat.completions.create(model=expected[0], messages=messages_of(q), temperature=0)
        assert reply.choices[0].message.content == same.choices[0].message.content
        assert reply.usage.completion_tokens == same.usage.completion_tokens
    # a pool model by name bypasses routing
    named = c.chat.completions.create(model="sim-model-3", messages=messages_of(questions[0]))
    assert named.model == "sim-model-3"
    listed = [m.id for m in c.models.list().data]
    assert listed[0] == "cascal" and sorted(listed[1:]) == sorted(gw.gateway.upstreams.names)


@pytest.mark.parametrize("start_gateway", ENGINES, indirect=True)
def test_streamed_completion_passes_events_through(start_gateway, sim_pool, simulator, questions, router_file):
    gw = start_gateway(sim_pool)
    q = questions[1]
    top = in_process_ranking(router_file, messages_of(q)[-1]["content"])[0]
    chunks = list(
        client(gw).chat.completions.create(
            model="cascal", messages=messages_of(q), stream=True, stream_options={"include_usage": True}
        )
    )
    direct = openai.OpenAI(base_url=simulator.base_url, api_key="EMPTY", max_retries=0)
    same = list(
        direct.chat.completions.create(
            model=top, messages=messages_of(q), stream=True, stream_options={"include_usage": True}
        )
    )
    assert {c.model for c in chunks} == {top}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(c.choices[0].delta.content or "" for c in same if c.choices) and text
    assert len(chunks) == len(same) and chunks[-1].usage.total_tokens == same[-1].usage.total_tokens


@pytest.mark.parametrize("start_gateway", ENGINES, indirect=True)
def test_vote_returns_the_plurality_with_every_letter(start_gateway, sim_pool, questions, router_file):
    gw = start_gateway(sim_pool)
    for q in questions[:3]:
        reply = client(gw).chat.completions.create(model="cascal-vote-3", messages=messages_of(q))
        vote = reply.model_extra["cascal"]["vote"]
        ranking = in_process_ranking(router_file, messages_of(q)[-1]["content"])
        assert [v["model"] for v in vote["votes"]] == ranking[:3]
        letters = [v["answer"] for v in vote["votes"]]
        counts = {x: letters.count(x) for x in letters if x}
        best = max(counts.values())
        winner = next(x for x in letters if x and counts[x] == best)  # ties: the higher-ranked model
        assert vote["answer"] == winner
        assert reply.model == next(v["model"] for v in vote["votes"] if v["answer"] == winner)
    with pytest.raises(openai.BadRequestError):
        client(gw).chat.completions.create(model="cascal-vote-99", messages=messages_of(questions[0]))


# ------------------------------------------------------------------------------------------ /v1/route
@pytest.mark.parametrize("start_gateway", ENGINES, indirect=True)
def test_route_endpoint_matches_router_and_cli(start_gateway, sim_pool, questions, router_file, capsys):
    gw = start_gateway(sim_pool, batch_wait=0.005)
    texts = [q.question for q in questions]
    router = CascalRouter.load(router_file)
    expected = router.route(load_embedder("hashing-256").encode(texts), top_k=len(router.model_names_))
    with httpx.Client(base_url=gw.url, timeout=20) as http:
        # concurrent requests are micro-batched; the rankings must not depend on the batch
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda t: http.post("/v1/route", json={"input": t}).json(), texts))
        for i, answer in enumerate(answers):
            assert answer["models"] == expected.top_models(i)
            assert [r["score"] for r in answer["ranking"]] == pytest.approx(
                [expected.scores[i, j] for j in expected.ranked[i]], abs=1e-12
            )
            assert answer["fallback"] == (answer["alpha"] > 0) and answer["subject"] in router.subject_names_
            assert sum(answer["subject_weights"].values()) == pytest.approx(1.0)
        many = http.post("/v1/route", json={"input": texts[:3]}).json()
        assert [d["models"] for d in many["data"]] == [expected.top_models(i) for i in range(3)]
        chat = http.post("/v1/route", json={"messages": [{"role": "user", "content": texts[0]}]}).json()
        assert chat["models"] == expected.top_models(0)
    for i in (0, 5):
        assert cli_main(["route", str(router_file), texts[i]]) == 0
        printed = [line.split()[-2] for line in capsys.readouterr().out.splitlines()[1:]]
        assert printed == expected.top_models(i)
    metrics = httpx.get(gw.url + "/metrics").text
    assert "cascal_routing_decisions_total" in metrics and "cascal_routing_batch_size_bucket" in metrics


# ------------------------------------------------------------------------------------------ failover
def test_failover_and_circuit_breaker_when_the_top_model_is_dead(
    start_gateway, world, simulator, questions, router_file, tmp_path, monkeypatch
):
    q = questions[2]
    ranking = in_process_ranking(router_file, messages_of(q)[-1]["content"])
    dead, second = ranking[0], ranking[1]
    monkeypatch.setenv("DEAD_MODEL_KEY", "sk-SECRET-never-shown-123")
    entries = [(n, free_dead_url() if n == dead else simulator.base_url) for n in world.model_names]
    pool = pool_file(tmp_path / "pool.yaml", entries)
    text = pool.read_text().replace(f"name: {dead}\n", f"name: {dead}\n    api_key_env: DEAD_MODEL_KEY\n")
    pool.write_text(text)
    log = tmp_path / "decisions.jsonl"
    gw = start_gateway(pool, breaker_failures=2, breaker_cooldown=60, log_decisions=str(log))
    c = client(gw)
    for _ in range(2):  # the breaker is closed: each request tries the dead model first
        raw = c.chat.completions.with_raw_response.create(model="cascal", messages=messages_of(q))
        assert raw.parse().model == second and raw.headers["x-cascal-failovers"] == "1"
    # two consecutive failures opened the breaker: the dead model is skipped, routing re-ranks
    raw = c.chat.completions.with_raw_response.create(model="cascal", messages=messages_of(q))
    assert raw.parse().model == second and raw.headers["x-cascal-failovers"] == "0"
    health = httpx.get(gw.url + "/health").json()
    assert health["breakers"][dead] == "open"
    # streaming fails over before the first byte too (the breaker is open, so close it by hand first)
    gw.gateway.upstreams.upstreams[dead].breaker.record_success()
    chunks = list(c.chat.completions.create(model="cascal", messages=messages_of(q), stream=True))
    assert {ch.model for ch in chunks} == {second}
    # asking for the dead model by name: no failover, an OpenAI-style 502
    with pytest.raises(openai.APIStatusError) as err:
        c.chat.completions.create(model=dead, messages=messages_of(q))
    assert err.value.status_code == 502 and "connection" in err.value.message
    metrics = httpx.get(gw.url + "/metrics").text
    assert f'cascal_upstream_errors_total{{kind="connection",model="{dead}"}}' in metrics
    assert "cascal_failovers_total 3.0" in metrics
    gw.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["failovers"] for r in records[:3]] == [1, 1, 0] and all("text" not in r for r in records)
    for blob in (metrics, log.read_text(), str(err.value), json.dumps(health)):
        assert "SECRET" not in blob


def test_decision_log_holds_the_text_only_when_asked(start_gateway, sim_pool, questions, tmp_path):
    log = tmp_path / "with_text.jsonl"
    gw = start_gateway(sim_pool, log_decisions=str(log), log_text=True)
    client(gw).chat.completions.create(model="cascal", messages=messages_of(questions[0]))
    gw.stop()
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["text"] == messages_of(questions[0])[-1]["content"]
    assert (
        record["model"] == record["ranking"][0]
        and record["completion_tokens"] > 0
        and len(record["query_sha256"]) == 16
    )


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("start_gateway", ENGINES, indirect=True)
def test_auth_and_every_bad_request_answer_openai_errors(start_gateway, sim_pool, questions, monkeypatch):
    gw = start_gateway(sim_pool, api_key="gateway-key-1", max_body_bytes=4096)
    msgs = messages_of(questions[0])
    with pytest.raises(openai.AuthenticationError):
        client(gw, "wrong-key").chat.completions.create(model="cascal", messages=msgs)
    assert client(gw, "gateway-key-1").chat.completions.create(model="cascal", messages=msgs).choices
    with pytest.raises(openai.NotFoundError) as err:
        client(gw, "gateway-key-1").chat.completions.create(model="gpt-nonexistent", messages=msgs)
    assert err.value.body["code"] == "model_not_found"
    auth = {"Authorization": "Bearer gateway-key-1"}
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        cases = [
            (http.post("/v1/chat/completions", json={"model": "cascal", "messages": msgs}), 401),
            (http.get("/metrics"), 401),
            (http.post("/v1/chat/completions", content=b"{not json", headers=auth), 400),
            (http.post("/v1/chat/completions", json={"model": "cascal"}, headers=auth), 400),
            (http.post("/v1/chat/completions", json=[1, 2], headers=auth), 400),
            (
                http.post(
                    "/v1/chat/completions", json={"model": "cascal", "messages": [{"role": "user"}]}, headers=auth
                ),
                400,
            ),
            (http.post("/v1/route", json={"input": ""}, headers=auth), 400),
            (http.post("/v1/route", json={"model": "cascal", "messages": msgs, "pad": "x" * 5000}, headers=auth), 413),
            (http.get("/v1/nowhere", headers=auth), 404),
            (http.get("/v1/chat/completions", headers=auth), 405),
        ]
        for response, status in cases:
            assert response.status_code == status, (response.request.url, response.text)
            error = response.json()["error"]
            assert isinstance(error["message"], str) and error["type"] and "gateway-key-1" not in response.text
        assert http.get("/health", headers=auth).json()["status"] == "ok"
        assert cases[0][0].headers["www-authenticate"] == "Bearer"


def test_serve_refuses_another_embedder_and_an_incomplete_pool(router_file, world, simulator, tmp_path):
    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    with pytest.raises(EmbeddingError, match="differs"):
        build_gateway(router_file, pool, GatewaySettings(port=0), embedder="hashing-128")
    short = pool_file(tmp_path / "short.yaml", [(n, simulator.base_url) for n in world.model_names[:-1]])
    with pytest.raises(ConfigError, match="routed model"):
        build_gateway(router_file, short, GatewaySettings(port=0))


# ------------------------------------------------------------------------------------------ shutdown
def test_graceful_shutdown_finishes_requests_in_flight(start_gateway, world, questions, tmp_path):
    slow = serve_simulator(world, faults=lambda req: Fault.timeout(1.0)).start()
    try:
        pool = pool_file(tmp_path / "slow.yaml", [(n, slow.base_url) for n in world.model_names])
        gw = start_gateway(pool)
        result: dict = {}

        def ask() -> None:
            try:
                result["reply"] = client(gw).chat.completions.create(model="cascal", messages=messages_of(questions[0]))
            except Exception as exc:  # noqa: BLE001
                result["error"] = exc

        worker = threading.Thread(target=ask)
        worker.start()
        deadline = time.monotonic() + 5
        while not slow.requests and time.monotonic() < deadline:  # the request reached the upstream
            time.sleep(0.01)
        assert slow.requests
        stopped = time.monotonic()
        gw.stop()  # graceful: waits for the request in flight
        worker.join(10)
        assert "error" not in result, result.get("error")
        assert result["reply"].choices[0].message.content
        assert time.monotonic() - stopped >= 0.5
        with pytest.raises(httpx.ConnectError):
            httpx.get(gw.url + "/health", timeout=2)
    finally:
        slow.stop()


def test_tune_gc_freezes_the_startup_heap_and_raises_the_first_threshold():
    import gc

    from cascal.serve.server import GC_THRESHOLDS, tune_gc

    thresholds = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_load_benchmark_table_reports_client_and_gateway_cpu():
    import os

    from cascal.bench.gateway_load import _process_cpu, format_results

    assert _process_cpu(os.getpid()) is None or _process_cpu(os.getpid()) >= 0
    route = {"decisions_per_s": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "requests": 300}
    results = {
        "route": {"hashing-256": {64: {**route, "client_cpu": 0.17, "server_cpu": None}}},
        "chat": {"gateway_p50_ms": 3.0, "direct_p50_ms": 0.4, "added_p50_ms": 2.6, "requests": 300},
    }
    table = format_results(results)
    assert "| hashing-256 | 64 | 100 | 1.00 | 2.00 | 17% | n/a |" in table


def test_load_benchmark_reports_the_gateways_resident_memory():
    import os
    import sys

    from cascal.bench.gateway_load import _process_rss_mib, format_results

    rss = _process_rss_mib(os.getpid())
    if sys.platform.startswith("linux"):
        with open("/proc/self/status", encoding="ascii") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        assert rss is not None and abs(rss - kib / 1024) < 64  # this process, read twice
    else:
        assert rss is None
    route = {"decisions_per_s": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "requests": 300}
    results = {
        "route": {"static:/x": {64: {**route, "client_cpu": 0.1, "server_cpu": 0.9}}},
        "gateway_rss_mib": {"static:/x": 267.4, "hashing-256": None},
        "chat": {"gateway_p50_ms": 3.0, "direct_p50_ms": 0.4, "added_p50_ms": 2.6, "requests": 300},
    }
    assert "gateway resident memory (VmRSS) after its /v1/route levels: static:/x 267 MiB" in format_results(results)


def test_load_benchmark_sums_memory_and_cpu_over_the_gateways_worker_processes():
    import os
    import subprocess
    import sys

    from cascal.bench.gateway_load import _process_cpu, _process_rss_mib, _process_tree, _tree_cpu, _tree_rss_mib

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    code = "import time; x = bytearray(80 * 1024 * 1024); [i for i in range(3_000_000)]; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while (_process_rss_mib(child.pid) or 0) < 80 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in _process_tree(os.getpid())
        own, tree = _process_rss_mib(os.getpid()), _tree_rss_mib(os.getpid())
        assert own is not None and tree is not None and tree >= own + 80  # the child's 80 MiB counted
        child_cpu = _process_cpu(child.pid)
        assert child_cpu is not None and child_cpu > 0
        tree_cpu, own_cpu = _tree_cpu(os.getpid()), _process_cpu(os.getpid())
        assert tree_cpu is not None and own_cpu is not None
        assert tree_cpu >= own_cpu + child_cpu - 0.02  # the child's CPU counted (clock ticks: 0.01 s)
    finally:
        child.kill()
        child.wait()


def test_load_benchmark_starts_the_gateway_with_its_decision_log(monkeypatch, tmp_path):
    from cascal.bench import gateway_load

    started = []

    class Started:
        def __init__(self, command, **kwargs):
            started.append(command)

    monkeypatch.setattr(gateway_load.subprocess, "Popen", Started)
    monkeypatch.setattr(gateway_load, "_wait_ready", lambda port, proc: None)
    gateway_load._start_gateway(tmp_path, tmp_path / "router.cascal", "embeddings")
    gateway_load._start_gateway(tmp_path, tmp_path / "router.cascal", "off")
    with_log, without = started
    assert with_log[with_log.index("--log-decisions") + 1] == str(tmp_path / "decisions.jsonl")
    assert "--log-embeddings" in with_log and "--log-decisions" not in without
