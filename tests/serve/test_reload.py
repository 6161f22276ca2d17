"""Hot reload of a running gateway (``POST /admin/reload``; SIGHUP in test_reload_load.py): a new
router and pool are checked beside the running ones and swapped in; a refused reload keeps the old
ones serving and says why; circuit breakers of the models that stay are kept."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from conftest import pool_file
from reload_files import (
    EXTRA,
    install,
    nan_router,
    offline_ranking,
    other_embedder_router,
    sha256,
    train_second_router,
    truncated_router,
)

from cascal.errors import ReloadError
from cascal.pipeline.answer import build_messages
from cascal.pipeline.reload import reload_gateway
from cascal.serve.app import create_app
from cascal.serve.server import build_gateway
from cascal.serve.settings import GatewaySettings
from cascal.simulate.chat_server import Fault

KEY = "reload-test-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def router_b(world, tmp_path_factory):
    return train_second_router(world, tmp_path_factory.mktemp("reload") / "router_b.cascal")


@pytest.fixture
def served(router_file, world, simulator, tmp_path):
    """The paths a gateway serves from (router A over the six models), and the pools to install."""
    router = tmp_path / "served" / "router.cascal"
    router.parent.mkdir()
    install(router_file, router)
    p6 = pool_file(tmp_path / "p6.yaml", [(n, simulator.base_url) for n in world.model_names])
    p5 = pool_file(tmp_path / "p5.yaml", [(n, simulator.base_url) for n in world.model_names if n != EXTRA])
    pool = router.parent / "pool.yaml"
    install(p6, pool)
    return {"router": router, "pool": pool, "p6": p6, "p5": p5}


def reload(gw, key: str = KEY) -> httpx.Response:
    return httpx.post(gw.url + "/admin/reload", headers={"Authorization": f"Bearer {key}"}, timeout=60)


def route(gw, text: str) -> dict:
    response = httpx.post(gw.url + "/v1/route", json={"input": text}, headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def health(gw) -> dict:
    return httpx.get(gw.url + "/health", headers=AUTH, timeout=30).json()


def metric(gw, name: str, labels: dict) -> float | None:
    return gw.gateway.metrics.registry.get_sample_value(name, labels)


def router_info(gw) -> list[str]:
    text = httpx.get(gw.url + "/metrics", headers=AUTH, timeout=30).text
    return [line for line in text.splitlines() if line.startswith("cascal_router_info{")]


def test_admin_reload_swaps_router_and_pool(start_gateway, served, router_file, router_b, questions, tmp_path):
    log = tmp_path / "decisions.jsonl"
    gw = start_gateway(served["pool"], router=served["router"], api_key=KEY, log_decisions=str(log))
    a, b = sha256(router_file), sha256(router_b)
    text = questions[0].question
    first = route(gw, text)
    assert first["router_sha256"] == a
    assert tuple(first["models"]) == offline_ranking(str(router_file), (), text)
    body = health(gw)
    assert body["router"]["sha256"] == a and body["router"]["dropped"] == [] and body["last_reload_error"] is None
    assert body["reloadable"] is True
    (info,) = router_info(gw)
    assert f'sha256="{a}"' in info and info.endswith(" 1.0")

    install(router_b, served["router"])
    install(served["p5"], served["pool"])
    response = reload(gw)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["router_sha256"] == b and answer["previous_router_sha256"] == a
    assert answer["pool"] == gw.gateway.upstreams.names and EXTRA not in answer["pool"]
    second = route(gw, text)
    assert second["router_sha256"] == b
    assert tuple(second["models"]) == offline_ranking(str(router_b), (), text)
    (info,) = router_info(gw)  # the old label set is gone
    assert f'sha256="{b}"' in info and a not in info and f'models="{",".join(answer["router"]["models"])}"' in info
    assert metric(gw, "cascal_reloads_total", {"outcome": "success"}) == 1
    assert metric(gw, "cascal_reloads_total", {"outcome": "failure"}) == 0

    # router A over the five-model pool: the model the pool lacks is dropped from routing at once
    install(router_file, served["router"])
    answer = reload(gw).json()
    assert answer["router"]["dropped"] == [EXTRA] and answer["router_sha256"] == a
    third = route(gw, text)
    assert EXTRA not in third["models"]
    assert tuple(third["models"]) == offline_ranking(str(router_file), (EXTRA,), text)
    assert health(gw)["router"]["dropped"] == [EXTRA]

    chat = openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0, timeout=20)
    raw = chat.chat.completions.with_raw_response.create(
        model="cascal", messages=build_messages(questions[1].question, questions[1].options)
    )
    assert raw.headers["x-cascal-router"] == a
    gw.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["router_sha256"] for line in lines] == [a, b, a, a]
    assert [line["endpoint"] for line in lines] == ["route", "route", "route", "chat"]


def test_reload_needs_a_configured_key(start_gateway, served):
    open_gw = start_gateway(served["pool"], router=served["router"])
    response = httpx.post(open_gw.url + "/admin/reload", timeout=30)
    unknown = httpx.post(open_gw.url + "/admin/nothing", timeout=30)
    assert response.status_code == 404 == unknown.status_code
    assert response.json()["error"]["code"] == "not_found"
    assert metric(open_gw, "cascal_reloads_total", {"outcome": "success"}) == 0
    assert health(open_gw)["reloadable"] is False

    with pytest.raises(ReloadError, match="no reload endpoint"):  # the client `cascal refresh` uses
        reload_gateway(open_gw.url, KEY)

    keyed = start_gateway(served["pool"], router=served["router"], api_key=KEY)
    assert reload(keyed, key="not-the-key").status_code == 401
    assert httpx.post(keyed.url + "/admin/reload", timeout=30).status_code == 401
    assert metric(keyed, "cascal_reloads_total", {"outcome": "success"}) == 0
    assert reload(keyed).status_code == 200
    assert reload_gateway(keyed.url, KEY)["router_sha256"] == sha256(served["router"])


def test_a_gateway_that_cannot_reload_answers_501(router_file, served):
    from starlette.testclient import TestClient

    gateway = build_gateway(router_file, served["pool"], GatewaySettings(port=0, api_key=KEY), reloadable=False)
    with TestClient(create_app(gateway)) as http:
        response = http.post("/admin/reload", headers=AUTH)
    assert response.status_code == 501 and response.json()["error"]["code"] == "reload_unavailable"


BROKEN = {
    "truncated router": lambda s, w, sim, tmp, src: ("router", truncated_router(src, tmp / "t.cascal"), "truncated"),
    "NaN router": lambda s, w, sim, tmp, src: ("router", nan_router(src, tmp / "n.cascal"), "subject_reps"),
    "other embedder": lambda s, w, sim, tmp, src: (
        "router",
        other_embedder_router(src, tmp / "e.cascal"),
        "hashing-128",
    ),
    "unreadable pool.yaml": lambda s, w, sim, tmp, src: (
        "pool",
        _write(tmp / "bad.yaml", "models: [\n"),
        "pool.yaml: not valid YAML",
    ),
    "pool with a bad field": lambda s, w, sim, tmp, src: (
        "pool",
        _write(tmp / "field.yaml", "models:\n  - name: sim-model-1\n    model: m\n    base_url: 7\n"),
        "base_url",
    ),
    "pool without the routed models": lambda s, w, sim, tmp, src: (
        "pool",
        pool_file(tmp / "other.yaml", [("someone-else", sim.base_url)]),
        "none of the router's models",
    ),
    "key variable unset": lambda s, w, sim, tmp, src: (
        "pool",
        _write(
            tmp / "key.yaml",
            "models:\n"
            + "".join(
                f"  - name: {n}\n    model: {n}\n    base_url: {sim.base_url}\n    api_key_env: CASCAL_TEST_UNSET_KEY\n"
                for n in w.model_names
            ),
        ),
        "CASCAL_TEST_UNSET_KEY",
    ),
}


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_broken_file_keeps_the_old_state_serving(
    start_gateway, served, router_file, world, simulator, tmp_path, questions, monkeypatch
):
    monkeypatch.delenv("CASCAL_TEST_UNSET_KEY", raising=False)
    gw = start_gateway(served["pool"], router=served["router"], api_key=KEY)
    a = sha256(router_file)
    for done, case in enumerate(BROKEN, start=1):
        which, broken, named = BROKEN[case](served, world, simulator, tmp_path, router_file)
        install(broken, served[which])
        response = reload(gw)
        assert response.status_code == 409, (case, response.text)
        error = response.json()["error"]
        assert error["code"] == "reload_failed" and error["type"] == "reload_error"
        assert named in error["message"] and a in error["message"], case  # why, and which router serves
        body = health(gw)
        assert body["status"] == "ok" and body["router"]["sha256"] == a, case
        assert named in body["last_reload_error"], case
        assert metric(gw, "cascal_reloads_total", {"outcome": "failure"}) == done
        assert route(gw, questions[0].question)["router_sha256"] == a  # the old router still routes
        # mended files reload, and the error is cleared
        install(router_file, served["router"])
        install(served["p6"], served["pool"])
        assert reload(gw).status_code == 200, case
        assert health(gw)["last_reload_error"] is None
        assert metric(gw, "cascal_reloads_total", {"outcome": "success"}) == done


def test_circuit_breakers_survive_a_reload(start_gateway, served, world, simulator, tmp_path):
    gw = start_gateway(served["pool"], router=served["router"], api_key=KEY, breaker_failures=1, breaker_cooldown=600)
    upstreams = gw.gateway.upstreams.upstreams
    for name in ("sim-model-2", "sim-model-3", EXTRA):
        assert upstreams[name].breaker.record_failure()
    # sim-model-3 moves to another endpoint, EXTRA leaves the pool
    moved = [(n, simulator.base_url) for n in world.model_names if n not in ("sim-model-3", EXTRA)]
    moved.append(("sim-model-3", simulator.base_url.replace("127.0.0.1", "localhost")))
    install(pool_file(tmp_path / "moved.yaml", moved), served["pool"])
    assert reload(gw).status_code == 200
    breakers = health(gw)["breakers"]
    assert breakers["sim-model-2"] == "open"  # same name, same endpoint: kept open
    assert breakers["sim-model-3"] == "closed"  # another endpoint: a new breaker
    assert EXTRA not in breakers  # removed: forgotten
    assert metric(gw, "cascal_circuit_open", {"model": "sim-model-2"}) == 1
    assert metric(gw, "cascal_circuit_open", {"model": EXTRA}) is None
    install(served["p6"], served["pool"])
    assert reload(gw).status_code == 200
    breakers = health(gw)["breakers"]
    assert breakers["sim-model-2"] == "open" and breakers[EXTRA] == "closed"  # back as a new model


def test_concurrent_reloads_run_one_after_the_other(start_gateway, served, monkeypatch):
    import cascal.serve.gateway as gateway_module

    spans: list[tuple[float, float]] = []
    real = gateway_module.load_state

    def slow_load_state(*args, **kwargs):
        started = time.monotonic()
        time.sleep(0.2)
        try:
            return real(*args, **kwargs)
        finally:
            spans.append((started, time.monotonic()))

    monkeypatch.setattr(gateway_module, "load_state", slow_load_state)
    gw = start_gateway(served["pool"], router=served["router"], api_key=KEY)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(reload(gw).status_code)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4 and len(spans) == 4
    spans.sort()
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))  # never overlapping
    assert metric(gw, "cascal_reloads_total", {"outcome": "success"}) == 4


def test_a_stream_in_flight_finishes_on_the_state_it_started_with(
    start_gateway, served, world, tmp_path, questions, router_file
):
    from cascal.simulate import serve_simulator

    slow = serve_simulator(world, faults=lambda request: Fault.slow_stream(0.05) if request.model == EXTRA else None)
    with slow:
        entries = [(n, slow.base_url) for n in world.model_names]
        install(pool_file(tmp_path / "slow6.yaml", entries), served["pool"])
        gw = start_gateway(served["pool"], router=served["router"], api_key=KEY)
        old = gw.gateway.upstreams.upstreams[EXTRA]
        client = openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0, timeout=30)
        messages = build_messages(questions[0].question, questions[0].options)
        with client.chat.completions.with_streaming_response.create(model=EXTRA, messages=messages, stream=True) as s:
            lines = s.iter_lines()
            first = next(lines)
            install(pool_file(tmp_path / "slow5.yaml", entries[:-1]), served["pool"])
            assert reload(gw).status_code == 200  # EXTRA leaves the pool while its stream runs
            assert EXTRA not in health(gw)["pool"]
            assert not old.client.is_closed()  # still held by the stream
            rest = [line for line in lines if line]
            assert s.headers["x-cascal-router"] == sha256(router_file)
        assert first.startswith("data:") and rest[-1] == "data: [DONE]"
        assert not any('"error"' in line for line in rest)
        deadline = time.monotonic() + 10
        while not old.client.is_closed() and time.monotonic() < deadline:  # closed once no request holds it
            time.sleep(0.05)
        assert old.client.is_closed()
