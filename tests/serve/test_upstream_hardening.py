"""The gateway's exchange with its upstreams under attack and failure: keys never leave it, deadlines
end slow upstreams, a client that leaves cancels the paid call, any model name survives the response
header, half-open breakers are probed one request at a time, and a cut stream says so."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import openai
import pytest
from misbehaving_upstream import QUESTION

from cascal.errors import ConfigError
from cascal.llm.config import load_pool
from cascal.serve.breaker import CircuitBreaker
from cascal.serve.errors import APIError
from cascal.serve.metrics import GatewayMetrics
from cascal.serve.upstream import UpstreamPool

UPSTREAM_KEY = "sk-upstream-SECRET-0123456789"
GATEWAY_KEY = "gw-key-SECRET-9876543210"


def write_pool(path: Path, world, simulator, extra: list[tuple[str, str, str]], **fields) -> Path:
    """The simulated pool (what the router routes to) plus ``(name, upstream model, base_url)``
    entries that use the key ``UPSTREAM_KEY`` and ``fields`` (timeout, request_deadline)."""
    lines = ["models:"]
    for name in world.model_names:
        lines += [f"  - name: {name}", f"    model: {name}", f"    base_url: {simulator.base_url}"]
    for name, model, url in extra:
        lines += [f"  - name: {json.dumps(name)}", f"    model: {model}", f"    base_url: {url}"]
        lines += ["    api_key_env: HARDENING_UPSTREAM_KEY"] + [f"    {k}: {v}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def gateway(start_gateway, world, simulator, upstream, tmp_path, monkeypatch):
    """``gateway(extra, **pool_fields)``: a gateway with its own key over the simulated pool plus the
    misbehaving upstream's models, with a decision log keeping the query text."""
    monkeypatch.setenv("HARDENING_UPSTREAM_KEY", UPSTREAM_KEY)

    def start(extra, settings=None, **fields):
        pool = write_pool(tmp_path / "pool.yaml", world, simulator, extra, **fields)
        log = tmp_path / "decisions.jsonl"
        return start_gateway(pool, api_key=GATEWAY_KEY, log_decisions=str(log), log_text=True, **(settings or {}))

    return start


def client(gw, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=GATEWAY_KEY, max_retries=0, **kwargs)


# ------------------------------------------------------------------------------------ keys
def test_upstream_keys_never_reach_the_client_or_the_logs(gateway, upstream, tmp_path, caplog):
    gw = gateway([("echo", "echo", upstream.base_url)])
    c = client(gw)
    # an upstream 400 echoing Authorization: passed on as a refusal, the key redacted
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model="echo", messages=QUESTION)
    assert "Authorization" in err.value.message and "[redacted]" in err.value.message
    raw400 = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "echo", "messages": QUESTION},
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    assert raw400.status_code == 400
    # a stream whose content and error event echo it: every event redacted
    streamed = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "echo", "messages": QUESTION, "stream": True},
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    assert streamed.text.count("[redacted]") == 2
    # a question quoting the gateway's own key: the decision log hides it
    c.chat.completions.create(model="cascal", messages=[{"role": "user", "content": f"my key is {GATEWAY_KEY}"}])
    # the gateway's error loggers hide keys in messages and tracebacks
    with caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError(f"boom {UPSTREAM_KEY}")
        except RuntimeError:
            logging.getLogger("cascal.serve").exception("failed with %s", GATEWAY_KEY)
    gw.stop()
    log = (tmp_path / "decisions.jsonl").read_text()
    assert "[redacted]" in log and "[redacted]" in caplog.text
    for blob in (
        err.value.message,
        raw400.text,
        json.dumps(dict(raw400.headers)),
        streamed.text,
        json.dumps(dict(streamed.headers)),
        log,
        caplog.text,
    ):
        assert UPSTREAM_KEY not in blob and GATEWAY_KEY not in blob


# ------------------------------------------------------------------------------- deadlines
def test_request_deadline_ends_a_trickling_upstream(gateway, upstream):
    gw = gateway([("trickle", "trickle", upstream.base_url)], timeout=0.5, request_deadline=1.5)
    c = client(gw, timeout=10)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:  # a whole reply: the total time is bounded
        c.chat.completions.create(model="trickle", messages=QUESTION)
    assert err.value.status_code == 502 and "deadline" in err.value.message
    assert time.monotonic() - started < 4
    # a stream: the first event arrives, then the trickle exceeds the idle gap and the stream is cut
    started = time.monotonic()
    stream = c.chat.completions.create(model="trickle", messages=QUESTION, stream=True)
    with pytest.raises(openai.APIError, match="cut"):
        for _ in stream:
            pass
    assert time.monotonic() - started < 4


def test_a_client_that_leaves_cancels_the_upstream_call(gateway, upstream):
    gw = gateway([("slow", "slow", upstream.base_url)], timeout=20, request_deadline=30)
    left = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "slow", "messages": QUESTION},
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            timeout=1.0,
        )
    left = time.monotonic()
    while "slow" not in upstream.closed_at and time.monotonic() - left < 5:
        time.sleep(0.05)
    assert "slow" in upstream.closed_at, "the upstream call kept running after its client left"
    assert upstream.closed_at["slow"] - left < 3


# ----------------------------------------------------------------------------- model names
def test_a_non_ascii_model_name_reaches_the_client_in_the_header(gateway, upstream):
    name = "模型-ü"
    gw = gateway([(name, "ok", upstream.base_url)])
    before = upstream.received.count("ok")
    raw = client(gw).chat.completions.with_raw_response.create(model=name, messages=QUESTION)
    assert raw.status_code == 200 and raw.parse().model == name
    header = raw.headers["x-cascal-model"]
    assert header.isascii() and unquote(header) == name
    assert upstream.received.count("ok") == before + 1  # paid once, the reply delivered
    with client(gw).chat.completions.with_streaming_response.create(model=name, messages=QUESTION, stream=True) as s:
        assert unquote(s.headers["x-cascal-model"]) == name
        assert "[DONE]" in "".join(s.iter_lines())


@pytest.mark.parametrize("bad", ["a\r\nb", "a\nX-Injected: 1", "tab\there", "nul\x00", "sep\u2028x", "rtl\u202ex"])
def test_pool_names_with_control_characters_are_refused(tmp_path, bad):
    path = tmp_path / "pool.yaml"
    path.write_text(
        f"models:\n  - name: {json.dumps(bad)}\n    model: m\n    base_url: http://127.0.0.1:1/v1\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"pool\.yaml.*name.*control characters"):
        load_pool(path)


# ------------------------------------------------------------------------------ breakers
def test_half_open_breakers_admit_one_probe_and_cost_no_healthy_candidate(upstream, tmp_path):
    bad, good = ["bad1", "bad2", "bad3"], ["good1", "good2", "good3"]
    lines = ["models:"]
    for name in bad + good:
        model = "fail" if name in bad else "ok"
        lines += [f"  - name: {name}", f"    model: {model}", f"    base_url: {upstream.base_url}"]
    (tmp_path / "pool.yaml").write_text("\n".join(lines) + "\n")
    now = [0.0]

    async def run():
        pool = UpstreamPool(load_pool(tmp_path / "pool.yaml"), GatewayMetrics())
        for u in pool.upstreams.values():
            u.breaker = CircuitBreaker(1, 30.0, clock=lambda: now[0])
        for name in bad:
            assert pool.upstreams[name].breaker.record_failure()
        now[0] = 31.0  # every cool-down over: the three bad models are half-open
        received = len(upstream.received)

        async def ask():
            try:
                return await pool.complete(bad + good, {"messages": QUESTION}, 3)
            except APIError as error:
                return error

        results = await asyncio.gather(*(ask() for _ in range(20)))
        seen = upstream.received[received:]
        # one request alone, one try allowed: it probes all three, then still gets a healthy model
        now[0] = 62.0
        alone = await pool.complete(bad + good, {"messages": QUESTION}, 1)
        await pool.aclose()
        return pool, results, seen, alone

    pool, results, seen, alone = asyncio.run(run())
    assert [r for r in results if isinstance(r, APIError)] == []
    assert {r.model for r in results} <= set(good)
    assert seen.count("fail") == 3  # one probe per half-open model
    assert all(pool.upstreams[n].breaker.state == "open" for n in bad)
    # each request that probed went on to a healthy model: a probe did not use up its tries
    assert sum(len(r.attempts) - 1 for r in results) == 3
    assert [a.model for a in alone.attempts] == bad + ["good1"] and alone.model == "good1"


# ------------------------------------------------------------------------------- streams
@pytest.mark.parametrize("model", ["cut", "cut_chunked"])
def test_a_stream_cut_by_the_upstream_ends_with_an_error_event(gateway, upstream, model):
    gw = gateway([(model, model, upstream.base_url)])
    stream = client(gw, timeout=10).chat.completions.create(model=model, messages=QUESTION, stream=True)
    got = []
    with pytest.raises(openai.APIError, match="cut"):
        for event in stream:
            got.append(event.choices[0].delta.content)
    assert got == ["Hello", " wor"]
    raw = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": model, "messages": QUESTION, "stream": True},
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        timeout=10,
    )
    assert '"code":"upstream_stream_cut"' in raw.text and "[DONE]" not in raw.text
