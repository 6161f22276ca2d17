"""Client errors: whatever a client sends (unencodable text, deep or huge JSON, wrongly typed fields,
a body it never finishes, odd paths) is answered with a 4xx naming the field, never a 500, and
never counts against an upstream's circuit breaker."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from conftest import pool_file
from starlette.testclient import TestClient

from cascal.serve.app import create_app
from cascal.serve.errors import APIError
from cascal.serve.server import build_gateway
from cascal.serve.settings import GatewaySettings

KEY = "gateway-key-7"
AUTH = {"Authorization": f"Bearer {KEY}"}
SURROGATE_CHAT = b'{"model": "cascal", "messages": [{"role": "user", "content": "x \\udc00"}]}'


def new_gateway(router_file, world, simulator, folder):
    pool = pool_file(folder / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    settings = GatewaySettings(port=0, api_key=KEY, log_decisions=str(folder / "decisions.jsonl"), log_text=True)
    return build_gateway(router_file, pool, settings)


@pytest.fixture(scope="module")
def gateway(router_file, world, simulator, tmp_path_factory):
    """One gateway for the module's requests (none of them may open a breaker or reach a failover)."""
    return new_gateway(router_file, world, simulator, tmp_path_factory.mktemp("client_errors"))


@pytest.fixture
def own_gateway(router_file, world, simulator, tmp_path):
    return new_gateway(router_file, world, simulator, tmp_path)


@pytest.fixture(scope="module")
def http(gateway):
    with TestClient(create_app(gateway), raise_server_exceptions=False) as client:
        yield client


def sample(gateway, name: str, **labels) -> float:
    return gateway.metrics.registry.get_sample_value(name, labels) or 0.0


def upstream_errors(gateway) -> float:
    metric = gateway.metrics.registry.get_sample_value
    return sum(
        metric("cascal_upstream_errors_total", {"model": m, "kind": k}) or 0.0
        for m in gateway.upstreams.names
        for k in ("malformed", "connection", "timeout")
    )


def breakers(gateway) -> set:
    return {u.breaker.state for u in gateway.upstreams.upstreams.values()}


def assert_refused(response, param, status=400):
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param, response.text


# ------------------------------------------------------------------ lone surrogates
@pytest.mark.parametrize(
    "body, param",
    [
        (SURROGATE_CHAT, "messages[0].content"),
        (SURROGATE_CHAT.replace(b'"cascal"', b'"cascal", "stream": true'), "messages[0].content"),
        (SURROGATE_CHAT.replace(b'"cascal"', b'"cascal-vote-3"'), "messages[0].content"),
        (SURROGATE_CHAT.replace(b'"cascal"', b'"sim-model-1"'), "messages[0].content"),
        (
            b'{"model": "cascal", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
            "messages[0].content[0].text",
        ),
        (b'{"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "user": "\\udfff"}', "user"),
        (b'{"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "\\udc00": 1}', "'\\udc00'"),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_the_field_and_opens_no_breaker(gateway, http, body, param):
    for _ in range(gateway.settings.breaker_failures + 1):
        response = http.post("/v1/chat/completions", content=body, headers=AUTH)
        assert_refused(response, param)
        assert response.json()["error"]["code"] == "invalid_text"
    assert breakers(gateway) == {"closed"}
    assert upstream_errors(gateway) == 0
    # the pool still answers
    ok = http.post(
        "/v1/chat/completions", json={"model": "cascal", "messages": [{"role": "user", "content": "hi"}]}, headers=AUTH
    )
    assert ok.status_code == 200


def test_a_valid_surrogate_pair_is_text_not_an_error(http):
    body = b'{"model": "cascal", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    assert http.post("/v1/chat/completions", content=body, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "body, param",
    [
        (b'{"input": "x \\udc00"}', "input"),
        (b'{"input": ["ok", "x \\udc00"]}', "input[1]"),
        (b'{"messages": [{"role": "user", "content": "x \\udc00"}]}', "messages[0].content"),
    ],
)
def test_a_lone_surrogate_on_route_with_the_decision_log_is_a_400(gateway, http, body, param):
    assert_refused(http.post("/v1/route", content=body, headers=AUTH), param)
    assert sample(gateway, "cascal_requests_total", endpoint="route", status="500") == 0


def test_an_unencodable_body_reaching_the_pool_is_the_requests_error_not_the_upstreams(own_gateway):
    """Defence behind the parser: a body that cannot be encoded never leaves the gateway, so it is
    refused without a failover and without touching any breaker."""
    gateway = own_gateway
    pool = gateway.upstreams
    body = {"model": "cascal", "messages": [{"role": "user", "content": "x \udc00"}]}

    async def ask() -> list:
        errors = []
        for _ in range(4):
            for call in (pool.complete, pool.stream):
                with pytest.raises(APIError) as info:
                    await call(pool.names, body, 3)
                errors.append(info.value)
        await pool.aclose()
        return errors

    errors = asyncio.run(ask())
    assert {e.status for e in errors} == {400}
    assert all("could not be built" in e.message and e.message.endswith("(UnicodeEncodeError)") for e in errors)
    assert {e.code for e in errors} == {"invalid_request_body"}
    assert breakers(gateway) == {"closed"}
    assert upstream_errors(gateway) == 0
    assert sample(gateway, "cascal_failovers_total") == 0


# ------------------------------------------------------------------ deep and huge JSON
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route"])
@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeply_nested_json_is_a_400(http, path, depth):
    body = b'{"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * depth + b"]" * depth
    response = http.post(path, content=body + b"}", headers=AUTH)
    assert response.status_code == 400, response.text
    assert "nested deeper" in response.json()["error"]["message"]


HUGE = "9" * 4000


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route"])
@pytest.mark.parametrize("value", [HUGE, "-" + HUGE, "1e999", "true", '"0.5"', "[]", "null"])
def test_a_cost_weight_that_is_not_a_finite_number_is_a_400_naming_it(http, path, value):
    body = '{"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "cascal_cost_weight": %s}' % value
    assert_refused(http.post(path, content=body.encode(), headers=AUTH), "cascal_cost_weight")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_literals_anywhere_are_a_400(http, path, literal):
    body = '{"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "temperature": %s}' % literal
    response = http.post(path, content=body.encode(), headers=AUTH)
    assert response.status_code == 400 and literal in response.json()["error"]["message"]


@pytest.mark.parametrize("value", ["+1e999", "9" * 9000, "nan", "-1"])
def test_a_cost_weight_header_that_is_not_a_finite_number_is_a_400(http, value):
    body = {"model": "cascal", "messages": [{"role": "user", "content": "hi"}]}
    response = http.post("/v1/chat/completions", json=body, headers={**AUTH, "x-cascal-cost-weight": value})
    assert response.status_code == 400 and response.json()["error"]["param"] == "x-cascal-cost-weight"


@pytest.mark.parametrize("model", ["cascal-vote-" + "9" * 5000, "cascal-vote-" + "0" * 5000 + "9", "x" * 100_000])
def test_a_huge_model_name_is_a_4xx_with_a_short_message(http, model):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    response = http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code in (400, 404) and response.json()["error"]["param"] == "model"
    assert len(response.text) < 1000


def test_huge_integers_in_pass_through_fields_are_forwarded(http):
    body = '{"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "seed": %s}' % HUGE
    assert http.post("/v1/chat/completions", content=body.encode(), headers=AUTH).status_code == 200


# ------------------------------------------------------------------ typed fields
@pytest.mark.parametrize("stream", ["false", "true", 0, 1, [], {}, "yes"])
def test_stream_must_be_a_boolean(http, stream):
    body = {"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    response = http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert_refused(response, "stream")
    assert "must be a boolean" in response.json()["error"]["message"]


def test_stream_null_is_not_streamed(http):
    body = {"model": "cascal", "messages": [{"role": "user", "content": "hi"}], "stream": None}
    response = http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"


# ------------------------------------------------------------------ a client that goes away
@pytest.mark.parametrize("path, name", [("/v1/chat/completions", "chat"), ("/v1/route", "route")])
def test_a_client_disconnect_is_counted_499_without_an_answer_or_traceback(own_gateway, caplog, path, name):
    gateway = own_gateway
    app = create_app(gateway)
    sent: list = []
    messages = iter(
        [{"type": "http.request", "body": b'{"model": "cas', "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-length", b"1000")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "app": app,
    }
    with caplog.at_level(logging.DEBUG, logger="cascal.serve"):
        asyncio.run(app(scope, receive, send))
    assert sent == []  # nobody to answer
    assert sample(gateway, "cascal_requests_total", endpoint=name, status="499") == 1
    assert sample(gateway, "cascal_requests_total", endpoint=name, status="500") == 0
    assert sample(gateway, "cascal_requests_in_flight") == 0
    records = [r for r in caplog.records if r.name == "cascal.serve"]
    assert len(records) == 1 and records[0].levelno <= logging.INFO and records[0].exc_info is None
    assert "disconnected" in records[0].getMessage()


# ------------------------------------------------------------------ paths
@pytest.mark.parametrize("path", ["/v1/route/", "/v1/chat/completions/", "/v1/models/", "/health/", "/v1/nowhere"])
def test_no_redirect_no_host_reflection_and_the_key_before_any_path(http, path):
    evil = {"host": "evil.example"}
    for method in ("GET", "POST"):
        anonymous = http.request(method, path, headers=evil, content=b"{}", follow_redirects=False)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        assert "location" not in anonymous.headers and "evil" not in anonymous.text
        known = http.request(method, path, headers={**evil, **AUTH}, content=b"{}", follow_redirects=False)
        assert known.status_code == 404, (method, path, known.status_code)
        assert "location" not in known.headers and "evil" not in known.text
        assert known.json()["error"]["code"] == "not_found"


def test_a_wrong_method_needs_the_key_before_it_is_told_405(http):
    assert http.get("/v1/chat/completions").status_code == 401
    assert http.get("/v1/chat/completions", headers=AUTH).status_code == 405


# ------------------------------------------------------------------ one client's text, one request's error
def test_a_text_the_embedder_refuses_fails_only_its_own_request_in_a_batch(router_file):
    from cascal.embedding import load_embedder
    from cascal.router import CascalRouter
    from cascal.serve.routing import RouteEngine

    router = CascalRouter.load(router_file)
    inner = load_embedder(router.embedding_model)

    class Picky:
        name = "picky"

        def encode(self, texts):
            if any("poison" in t for t in texts):
                raise ValueError("the embedder cannot take this text")
            return inner.encode(texts)

    async def scenario():
        engine = RouteEngine(router, Picky(), batch_wait=0.05)
        await engine.start()
        try:
            tickets = [engine.expect() for _ in range(3)]
            held = [t.__enter__() for t in tickets]  # all three announced: they form one batch
            texts = ["Which enzyme unwinds DNA?", "poison", "What is 2 + 2?"]
            results = await asyncio.gather(
                *(engine.route(text, ticket) for text, ticket in zip(texts, held)), return_exceptions=True
            )
            for t in tickets:
                t.__exit__(None, None, None)
            return results
        finally:
            await engine.stop()

    good, bad, other = asyncio.run(scenario())
    assert isinstance(bad, ValueError)
    assert not isinstance(good, BaseException) and not isinstance(other, BaseException)
    assert good.ranking and other.ranking


def test_route_takes_at_most_max_inputs_texts(http):
    from cascal.serve.settings import GatewaySettings

    cap = GatewaySettings().max_route_inputs
    response = http.post("/v1/route", json={"input": ["a"] * (cap + 1)}, headers=AUTH)
    assert_refused(response, "input")
    assert http.post("/v1/route", json={"input": ["a"] * 3}, headers=AUTH).status_code == 200


def test_the_decision_log_never_fails_on_an_unencodable_text(tmp_path):
    from cascal.serve.decision_log import DecisionLog, DecisionRecord, query_hash

    log = DecisionLog(tmp_path / "log.jsonl", log_text=True)
    log.write(DecisionRecord("route", "x \udc00", ["m1"]))
    log.close()
    line = json.loads((tmp_path / "log.jsonl").read_text(encoding="utf-8"))
    assert line["text"] == "x \udc00" and line["query_sha256"] == query_hash("x \udc00")


def test_a_client_disconnect_on_a_real_server_is_499_and_one_quiet_line(
    router_file, world, simulator, tmp_path, caplog
):
    import socket
    import time

    from cascal.serve.server import GatewayThread

    gateway = new_gateway(router_file, world, simulator, tmp_path)
    with GatewayThread(gateway) as server, caplog.at_level(logging.DEBUG):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            head = (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            )
            sock.sendall(head.encode() + b'{"model": "cascal", "mess')
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while sample(gateway, "cascal_requests_total", endpoint="chat", status="499") < 1:
            assert time.monotonic() < deadline, "the disconnect was never counted"
            time.sleep(0.05)
    assert sample(gateway, "cascal_requests_total", endpoint="chat", status="500") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.text
