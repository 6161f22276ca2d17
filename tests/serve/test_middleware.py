"""The middleware every endpoint sits behind: the API key on every endpoint, a handler's bug as an
OpenAI-style JSON 500 that is counted like any response, and streamed responses passing through."""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import pool_file
from starlette.testclient import TestClient

from cascal.serve.app import ENDPOINTS, create_app
from cascal.serve.errors import APIError
from cascal.serve.middleware import AnswerErrors, CountRequests
from cascal.serve.server import build_gateway
from cascal.serve.settings import GatewaySettings

KEY = "gateway-key-9"


@pytest.fixture
def gateway(router_file, world, simulator, tmp_path):
    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    return build_gateway(router_file, pool, GatewaySettings(port=0, api_key=KEY))


def counted(gateway, endpoint: str, status: int) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "cascal_requests_total", {"endpoint": endpoint, "status": str(status)}
    )
    return value or 0.0


def test_every_endpoint_needs_the_key(gateway):
    with TestClient(create_app(gateway)) as http:
        for path, method, name, _ in ENDPOINTS:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                response = http.request(method, path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json() == {
                    "error": {
                        "message": "missing or incorrect API key (send Authorization: Bearer <key>)",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                }
            assert counted(gateway, name, 401) == 3
            allowed = http.request(method, path, headers={"Authorization": f"Bearer {KEY}"})
            assert allowed.status_code != 401, path
            assert counted(gateway, name, allowed.status_code) == 1
        # the routes' 404 and 405 are the router's, outside the endpoints' middleware, and need the
        # key too: without it a client learns no path or method
        assert http.get("/v1/nowhere").status_code == 401
        assert http.get("/v1/chat/completions").status_code == 401
        assert http.get("/v1/nowhere", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
        assert http.get("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}).status_code == 405
    assert gateway.metrics.registry.get_sample_value("cascal_requests_in_flight") == 0


@pytest.mark.parametrize("path", ["/v1/route", "/v1/chat/completions"])
def test_a_handler_bug_answers_a_json_500_and_is_counted(gateway, monkeypatch, caplog, path):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(gateway.engine, "decide", broken)  # runs inside the batcher, for both endpoints
    body = {"model": "cascal", "messages": [{"role": "user", "content": "Which enzyme unwinds DNA?"}]}
    name = "route" if path == "/v1/route" else "chat"
    with TestClient(create_app(gateway)) as http, caplog.at_level(logging.ERROR):
        response = http.post(path, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"message": "internal error (ZeroDivisionError)", "type": "server_error", "param": None, "code": None}
    }
    assert "a bug" not in response.text and "Traceback" not in response.text
    assert "internal error" in caplog.text and "ZeroDivisionError" in caplog.text  # logged with its traceback
    assert counted(gateway, name, 500) == 1
    latency = gateway.metrics.registry.get_sample_value("cascal_request_latency_seconds_count", {"endpoint": name})
    assert latency == 1
    assert gateway.metrics.registry.get_sample_value("cascal_requests_in_flight") == 0


# ------------------------------------------------------------------ the middleware on plain ASGI apps
def run(app, scope=None) -> list[dict]:
    """Call ``app`` with an HTTP scope; the messages it sent."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope or {"type": "http", "method": "GET", "path": "/x", "headers": []}, receive, send))
    return sent


async def streaming_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    raise ConnectionResetError("upstream went away")


def test_an_error_after_the_response_started_is_not_answered_twice():
    sent: list[dict] = []

    async def record(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    with pytest.raises(ConnectionResetError):
        asyncio.run(AnswerErrors(streaming_app)({"type": "http", "path": "/x", "headers": []}, receive, record))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


def test_a_response_passes_through_the_error_middleware_untouched():
    async def ok(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    assert run(AnswerErrors(ok)) == [
        {"type": "http.response.start", "status": 204, "headers": []},
        {"type": "http.response.body", "body": b""},
    ]


def test_an_api_error_is_answered_with_its_status_json_and_headers():
    async def refusing(scope, receive, send) -> None:
        raise APIError(429, "slow down", "rate_limit_error", code="busy", headers={"retry-after": "1"})

    start, body = run(AnswerErrors(refusing))
    assert start["status"] == 429 and (b"retry-after", b"1") in start["headers"]
    assert body["body"] == b'{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"busy"}}'


def test_request_metrics_count_at_the_response_head_and_hold_in_flight_to_the_end(gateway):
    class App:
        state = type("State", (), {"gateway": gateway})()

    in_flight = []

    async def slow_stream(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        in_flight.append(gateway.metrics.registry.get_sample_value("cascal_requests_in_flight"))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    messages = run(CountRequests(slow_stream, endpoint="chat"), {"type": "http", "app": App(), "headers": []})
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert in_flight == [1] and gateway.metrics.registry.get_sample_value("cascal_requests_in_flight") == 0
    assert counted(gateway, "chat", 200) == 1
