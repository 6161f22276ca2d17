"""The pool's forwarding against real misbehaving endpoints on 127.0.0.1, without a gateway: every
kind of upstream failure is named, counted and failed over in ranking order; a refusal comes back as
the upstream sent it, cut and redacted; a stream opens only on a usable first event; a reply carries
the pool model's name."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Optional

import pytest
from misbehaving_upstream import QUESTION

from cascal.llm.config import load_pool
from cascal.serve.errors import APIError
from cascal.serve.metrics import GatewayMetrics
from cascal.serve.upstream import UpstreamPool

KEY = "sk-failover-SECRET-24680"


def dead_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.fixture
def make_pool(upstream, tmp_path, monkeypatch):
    """``make_pool(behaviours, fields=None, **kwargs)``: a pool whose model ``m-<behaviour>`` asks the
    misbehaving upstream for ``<behaviour>`` (``dead``: a refused port; ``slow`` and ``stall_body``
    with a 0.3 s timeout unless ``fields`` gives them others), every one with the key ``KEY``."""
    monkeypatch.setenv("FAILOVER_KEY", KEY)

    def make(behaviours: list[str], fields: Optional[dict] = None, **kwargs) -> UpstreamPool:
        lines = ["models:"]
        for b in behaviours:
            url = dead_url() if b == "dead" else upstream.base_url
            lines += [f"  - name: m-{b}", f"    model: {b}", f"    base_url: {url}", "    api_key_env: FAILOVER_KEY"]
            own = (fields or {}).get(b, {"timeout": 0.3} if b in ("slow", "stall_body") else {})
            lines += [f"    {k}: {v}" for k, v in own.items()]
        path: Path = tmp_path / "pool.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return UpstreamPool(load_pool(path), GatewayMetrics(), **kwargs)

    return make


def sample(pool: UpstreamPool, name: str, **labels) -> float:
    return pool.metrics.registry.get_sample_value(name, labels) or 0.0


def run(pool: UpstreamPool, work):
    """Run ``work(pool)`` on a fresh event loop and close the pool's clients."""

    async def go():
        try:
            return await work(pool)
        finally:
            await pool.aclose()

    return asyncio.run(go())


def test_each_failure_kind_is_named_counted_and_failed_over_in_order(make_pool, upstream):
    failing = ["busy", "no_choices", "not_json", "a_list", "dead", "slow", "stall_body", "cut_body"]
    pool = make_pool([*failing, "ok"], breaker_failures=1)
    ranking = [f"m-{b}" for b in [*failing, "ok"]]

    async def work(pool):
        first = await pool.complete(ranking, {"messages": QUESTION}, len(ranking))
        # a whole reply is asked for whatever the body's ``stream`` says
        again = await pool.complete(ranking, {"messages": QUESTION, "stream": True}, 1)
        return first, again

    first, again = run(pool, work)
    kinds = ["http_429", "empty_choices", "malformed", "malformed", "connection", "timeout", "timeout", "connection"]
    assert [(a.model, a.error) for a in first.attempts] == [*zip(ranking, kinds), ("m-ok", None)]
    assert first.model == "m-ok" and first.body["model"] == "m-ok" and first.failovers == 8
    assert first.body["choices"][0]["message"]["content"] == "Hello world"
    # every failure opened its model's breaker (one failure allowed): the next request goes straight
    # to the healthy model, within a single try
    assert [(a.model, a.error) for a in again.attempts] == [("m-ok", None)] and again.failovers == 0
    assert again.body["choices"][0]["message"]["content"] == "Hello world"
    for name, kind in zip(ranking, kinds):
        assert sample(pool, "cascal_upstream_errors_total", model=name, kind=kind) == 1, name
        assert sample(pool, "cascal_circuit_open", model=name) == 1
        assert pool.upstreams[name].breaker.state == "open"
    assert sample(pool, "cascal_circuit_open", model="m-ok") == 0
    assert sample(pool, "cascal_failovers_total") == 8
    assert sample(pool, "cascal_upstream_answers_total", model="m-ok") == 2
    assert sample(pool, "cascal_upstream_latency_seconds_count", model="m-ok") == 2
    assert 0 < sample(pool, "cascal_upstream_latency_seconds_sum", model="m-ok") < 60  # seconds per reply, summed
    assert repr(pool.upstreams["m-ok"]) == "Upstream('m-ok', model='ok')"


def test_no_answer_within_max_tries_is_a_502_naming_each_try(make_pool, upstream):
    pool = make_pool(["busy", "dead", "no_choices"])
    asked = len(upstream.received)

    async def work(pool):
        errors = []
        for ranking, tries in ((pool.names, 2), ([], 3)):
            with pytest.raises(APIError) as err:
                await pool.complete(ranking, {"messages": QUESTION}, tries)
            errors.append(err.value)
        return errors

    tried, nothing = run(pool, work)
    assert (tried.status, tried.kind, tried.code) == (502, "upstream_error", "upstream_unavailable")
    assert tried.message == "no pool model could answer (m-busy: http_429; m-dead: connection)"
    assert upstream.received[asked:] == ["busy"]  # the third model was never asked
    assert nothing.status == 502 and nothing.message == "no pool model could answer (no model available)"
    # a failure below the breaker's threshold leaves it closed
    assert {u.breaker.state for u in pool.upstreams.values()} == {"closed"}
    assert sample(pool, "cascal_circuit_open", model="m-busy") == 0


def test_a_refusal_is_returned_as_sent_without_failover_or_breaker(make_pool, upstream):
    pool = make_pool(["too_large", "no_message", "verbose", "ok"], breaker_failures=1)
    asked = len(upstream.received)

    async def work(pool):
        errors = []
        for first in ("m-too_large", "m-no_message", "m-verbose"):
            with pytest.raises(APIError) as err:
                await pool.complete([first, "m-ok"], {"messages": QUESTION}, 2)
            errors.append(err.value)
        return errors

    plain, bare, verbose = run(pool, work)
    assert (plain.status, plain.code) == (413, "upstream_refused")
    assert plain.message == "model 'm-too_large' refused the request"  # a body that is not JSON
    assert (bare.status, bare.message) == (422, "model 'm-no_message' refused the request")  # JSON, no message
    # the upstream's message, its key redacted before the cut to 500 characters
    assert verbose.status == 422
    assert verbose.message == "model 'm-verbose' refused the request: " + ("x" * 600 + " Bearer [redacted]")[:500]
    verbose_key_first = pool.redactor.text("x" * 600 + f" Bearer {KEY}")[:500]
    assert KEY not in verbose.message and verbose_key_first in verbose.message
    assert upstream.received[asked:] == ["too_large", "no_message", "verbose"]  # no failover to the healthy model
    assert {u.breaker.state for u in pool.upstreams.values()} == {"closed"}
    assert sample(pool, "cascal_upstream_errors_total", model="m-verbose", kind="http_422") == 1
    assert sample(pool, "cascal_failovers_total") == 0


def test_a_stream_opens_on_the_first_usable_event_and_is_relayed_renamed(make_pool):
    pool = make_pool(["busy", "dead", "error_first", "list_first", "garbage_first", "silent", "tight"])

    async def work(pool):
        opened = await pool.stream(pool.names, {"messages": QUESTION, "stream": True}, 7)
        text = b"".join([piece async for piece in opened.events()]).decode()
        return opened, text

    opened, text = run(pool, work)
    assert [(a.model, a.error) for a in opened.attempts] == [
        ("m-busy", "http_429"),
        ("m-dead", "connection"),
        ("m-error_first", "malformed"),
        ("m-list_first", "malformed"),
        ("m-garbage_first", "malformed"),
        ("m-silent", "empty_stream"),
        ("m-tight", None),
    ]
    assert opened.model == "m-tight" and opened.error is None
    # the comment line and ``data:[DONE]`` pass as sent; each event (sent as ``data:{...}``) is
    # rewritten with the pool name
    assert text.startswith(": keep-alive\n\n") and text.endswith("\ndata:[DONE]\n\n")
    events = [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: {")]
    assert [e["choices"][0]["delta"]["content"] for e in events] == ["Hel", "lo"]
    assert {e["model"] for e in events} == {"m-tight"}
    assert sample(pool, "cascal_upstream_errors_total", model="m-silent", kind="empty_stream") == 1


def test_a_stream_of_nothing_but_done_is_an_empty_reply(make_pool):
    pool = make_pool(["done_only"])

    async def work(pool):
        opened = await pool.stream(pool.names, {"messages": QUESTION, "stream": True}, 1)
        return opened, b"".join([piece async for piece in opened.events()])

    opened, raw = run(pool, work)
    assert raw == b"data: [DONE]\n\n" and opened.error is None and opened.attempts[0].error is None
    assert opened.usage is None  # no event carried one


def test_a_reply_or_first_event_later_than_the_request_deadline_fails_over(make_pool):
    # the upstream never answers; the client's own timeout (5 s) is not what ends the wait
    pool = make_pool(["slow", "ok"], fields={"slow": {"timeout": 5, "request_deadline": 0.4}})
    body = {"messages": QUESTION}

    async def work(pool):
        return await pool.complete(pool.names, body, 2), await pool.stream(pool.names, {**body, "stream": True}, 2)

    reply, opened = run(pool, work)
    for answer in (reply, opened):
        assert [(a.model, a.error) for a in answer.attempts] == [("m-slow", "deadline"), ("m-ok", None)]


def test_a_relayed_stream_releases_its_upstream_connection(make_pool, upstream):
    pool = make_pool(["done_open"])

    async def work(pool):
        opened = await pool.stream(pool.names, {"messages": QUESTION, "stream": True}, 1)
        raw = b"".join([piece async for piece in opened.events()])
        waited = 0.0  # the upstream keeps the connection open: the gateway must close it
        while "done_open" not in upstream.closed_at and waited < 5:
            await asyncio.sleep(0.05)
            waited += 0.05
        return raw, "done_open" in upstream.closed_at  # read before the pool closes its clients

    raw, released = run(pool, work)
    assert raw.endswith(b"data: [DONE]\n\n") and released


def test_a_reply_quoting_a_pool_key_comes_back_redacted(make_pool):
    pool = make_pool(["echo_ok"])  # no gateway: the pool's own redactor, no gateway key added

    async def work(pool):
        return await pool.complete(pool.names, {"messages": QUESTION}, 1)

    reply = run(pool, work)
    assert reply.body["choices"][0]["message"]["content"] == "you sent Bearer [redacted]"
