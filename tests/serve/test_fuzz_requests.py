"""Property test of the gateway's request side: for any body and headers a client sends, the gateway
answers without a 500, changes no circuit breaker unless it called an upstream, and puts no secret
(its own key, the pool's upstream keys) in a response.

The app runs in-process (Starlette's TestClient on :func:`cascal.serve.app.create_app`), its pool
on the simulator at 127.0.0.1. Bounded for CI: ``CASCAL_FUZZ_EXAMPLES`` examples (200 by default),
derandomized so a run is reproducible (``CASCAL_FUZZ_RANDOM=1`` explores new ones).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from cascal.serve.app import create_app  # noqa: E402
from cascal.serve.server import build_gateway  # noqa: E402
from cascal.serve.settings import GatewaySettings  # noqa: E402

GATEWAY_KEY = "gw-fuzz-secret-6f1c2a"
UPSTREAM_KEY = "sk-upstream-fuzz-9d41be"
KEY_ENV = "CASCAL_TEST_FUZZ_UPSTREAM_KEY"
SECRETS = (GATEWAY_KEY, UPSTREAM_KEY)

# ------------------------------------------------------------------ strategies
ODD_STRINGS = ["x \udc00", "\ud800", "\udfff tail", "\x00", "\u202e", "a" * 5000, "", " ", "cascal-vote-9"]
HUGE_NUMBERS = [10**4000, -(10**4000), float("nan"), float("inf"), float("-inf"), 1e308, 2**63, -1, 0]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(ODD_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8) | st.sampled_from(ODD_STRINGS), inner, max_size=4),
    ),
    max_leaves=12,
)

FIELDS = [
    "model", "messages", "stream", "stream_options", "n", "max_tokens", "temperature", "top_p", "top_k",
    "cascal_cost_weight", "input", "tools", "user", "seed", "logit_bias",
]  # fmt: skip
MODELS = ["cascal", "cascal-vote", "cascal-vote-2", "sim-model-1", "cascal-vote-0", "nope"]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def json_bodies(draw) -> bytes:
    """A chat or route body with random values at some fields, serialized as Python does (``NaN``,
    ``\\udc00`` escapes), sometimes spliced with deep nesting."""
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(MODELS)),
        "messages": [{"role": "user", "content": draw(st.text(max_size=30) | st.sampled_from(ODD_STRINGS))}],
    }
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    where = draw(st.sampled_from(["none", "content", "message", "parts"]))
    if where == "content":
        body["messages"][0]["content"] = draw(json_values)
    elif where == "message":
        body["messages"].append(draw(json_values))
    elif where == "parts":
        body["messages"][0]["content"] = [{"type": "text", "text": draw(json_values)}, draw(json_values)]
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body[field] = draw(json_values)
    raw = json.dumps(body)
    if draw(st.booleans()):
        raw = raw[:-1] + ', "deep": ' + deep(draw(st.sampled_from([63, 65, 999, 1000, 5000]))) + "}"
    return raw.encode("utf-8")


bodies = st.one_of(
    json_bodies(),
    json_bodies(),
    st.binary(max_size=300),
    st.builds(lambda n: b"[" * n, st.sampled_from([1000, 100_000])),
)

# header values as HTTP carries them: latin-1, no CR/LF (h11 and httpx refuse those outright)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
header_names = st.sampled_from(["authorization", "x-cascal-cost-weight", "content-type", "accept", "x-request-id"])


@st.composite
def header_sets(draw) -> dict:
    headers = {"authorization": f"Bearer {GATEWAY_KEY}"} if draw(st.integers(0, 4)) else {}
    for name in draw(st.lists(header_names, max_size=3, unique=True)):
        headers[name] = draw(header_values | st.sampled_from(["1e999", "nan", "-0", "9" * 5000, "Bearer " + "x" * 300]))
    return headers


# ------------------------------------------------------------------ the gateway under test
@pytest.fixture(scope="module")
def fuzzed(router_file, world, simulator, tmp_path_factory):
    """A gateway (key, decision log with text) on the simulator, upstream keys from the environment,
    each upstream's calls counted."""
    folder = tmp_path_factory.mktemp("fuzz")
    lines = ["defaults:", "  timeout: 5", "models:"]
    for name in world.model_names:
        lines += [f"  - name: {name}", f"    model: {name}", f"    base_url: {simulator.base_url}"]
        lines += [f"    api_key_env: {KEY_ENV}"]
    (folder / "pool.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.environ[KEY_ENV] = UPSTREAM_KEY
    try:
        settings_ = GatewaySettings(
            port=0, api_key=GATEWAY_KEY, log_decisions=str(folder / "log.jsonl"), log_text=True, max_failover=2
        )
        gateway = build_gateway(router_file, folder / "pool.yaml", settings_)
    finally:
        del os.environ[KEY_ENV]
    calls = {"n": 0}
    for upstream in gateway.upstreams.upstreams.values():
        for method in ("complete", "open_stream"):
            original = getattr(upstream, method)

            async def counted(body, _original=original):
                calls["n"] += 1
                return await _original(body)

            setattr(upstream, method, counted)
    with TestClient(create_app(gateway), raise_server_exceptions=False) as http:
        yield gateway, http, calls


def breaker_states(gateway) -> dict:
    return {n: (u.breaker.state, u.breaker._consecutive) for n, u in gateway.upstreams.upstreams.items()}


@settings(
    max_examples=int(os.environ.get("CASCAL_FUZZ_EXAMPLES", "200")),
    deadline=timedelta(seconds=5),
    derandomize=not os.environ.get("CASCAL_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    path=st.sampled_from(["/v1/chat/completions", "/v1/route", "/v1/route/", "/v1/models", "/v1/x"]),
    body=bodies,
    headers=header_sets(),
)
def test_no_client_input_is_a_500_moves_a_breaker_uncalled_or_leaks_a_secret(fuzzed, path, body, headers):
    gateway, http, calls = fuzzed
    before, called = breaker_states(gateway), calls["n"]
    raw_headers = {name: value.encode("latin-1") for name, value in headers.items()}  # bytes: non-ASCII too
    response = http.post(path, content=body, headers=raw_headers, follow_redirects=False)
    assert response.status_code != 500, response.text
    assert not 300 <= response.status_code < 400, response.headers
    if response.status_code >= 500:  # only the pool may fail a request: then it was asked
        assert calls["n"] > called, response.text
    if calls["n"] == called:
        assert breaker_states(gateway) == before
    shown = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    for secret in SECRETS:
        assert secret not in shown
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
