"""Unit tests of what leaves the gateway (redaction, header encoding), of a relayed stream's ending
and of cancelling upstream work when the client leaves, without servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import unquote

import openai
import pytest

from cascal.serve.errors import APIError
from cascal.serve.outbound import MASK, RedactingFilter, Redactor, header_value
from cascal.serve.upstream import OpenStream, UpstreamFailure, unless_disconnected

KEY = "sk-live-abcdef123456"


def test_the_redactor_hides_each_key_in_text_bytes_and_json_values():
    r = Redactor([KEY, "other-secret-key", None, "EMPTY", "short"])
    assert r.text(f"Bearer {KEY}; again {KEY}") == f"Bearer {MASK}; again {MASK}"
    assert r.bytes(f'{{"m": "{KEY}"}}'.encode()) == f'{{"m": "{MASK}"}}'.encode()
    assert r.value({"a": [KEY, 1, {"other-secret-key": None}]}) == {"a": [MASK, 1, {MASK: None}]}
    assert r.value(("x", KEY)) == ["x", MASK]
    # the placeholder and short strings are not secrets: ordinary text stays whole
    assert r.text("EMPTY short") == "EMPTY short"
    assert bool(r) and not Redactor([None, "EMPTY", "abc"])
    assert Redactor().text(KEY) == KEY


def test_the_redactor_replaces_a_longer_key_whole_and_json_escaped_forms():
    r = Redactor(["secret-1", "secret-1-longer"])
    assert r.text("secret-1-longer") == MASK
    quoted = Redactor(['pa"ss\\word-42'])
    assert quoted.text(json.dumps({"k": 'pa"ss\\word-42'})) == json.dumps({"k": MASK})
    unicode = Redactor(["clé-secrète-9"])
    assert unicode.text(json.dumps("clé-secrète-9")) == json.dumps(MASK)


def test_the_logging_filter_redacts_message_arguments_and_traceback():
    record = logging.LogRecord("cascal.serve", logging.ERROR, __file__, 1, "key %s", (KEY,), None)
    try:
        raise RuntimeError(KEY)
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    record.stack_info = f"stack {KEY}"
    assert RedactingFilter(Redactor([KEY])).filter(record) is True
    text = logging.Formatter().format(record)
    assert KEY not in text and text.count(MASK) == 3 and record.args is None
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (KEY,), None)
    assert RedactingFilter(Redactor()).filter(plain) and plain.getMessage() == f"key {KEY}"


@pytest.mark.parametrize("name", ["模型-ü", "a b%c", "sim-model-1", "org/model:v1", "x\r\ny"])
def test_header_values_are_visible_ascii_and_decode_back(name):
    value = header_value(name)
    assert value.isascii() and all(32 < ord(c) < 127 for c in value)
    assert unquote(value) == name
    if name in ("sim-model-1", "org/model:v1"):
        assert value == name


async def _lines(items, stall=None, fail=None):
    for item in items:
        yield item
    if fail is not None:
        raise fail
    if stall is not None:
        await asyncio.sleep(stall)


def _collect(stream: OpenStream) -> bytes:
    async def run():
        return b"".join([piece async for piece in stream.events()])

    return asyncio.run(run())


def _stream(lines, stack=None, **kwargs) -> OpenStream:
    it = lines.__aiter__()
    return OpenStream("pool-m", stack or contextlib.AsyncExitStack(), [], it, **kwargs)


def test_a_stream_with_done_passes_through_renamed_and_redacted():
    body = {"choices": [{"delta": {"content": f"k={KEY}"}}], "model": "up", "usage": {"total_tokens": 3}}
    s = _stream(_lines([f"data: {json.dumps(body)}", "", "data: [DONE]", "", "data: after"]), redactor=Redactor([KEY]))
    out = _collect(s).decode()
    assert '"model":"pool-m"' in out and KEY not in out and MASK in out
    assert out.endswith("data: [DONE]\n\n") and "after" not in out
    assert s.error is None and s.usage == {"total_tokens": 3}


def test_a_stream_passes_other_lines_and_non_ascii_text_as_sent_and_releases_its_connection():
    released = []

    async def release():
        released.append(True)
        raise ConnectionResetError("the upstream connection was already gone")

    stack = contextlib.AsyncExitStack()
    stack.push_async_callback(release)
    body = {"choices": [{"delta": {"content": "Grüße, 模型"}}], "model": "up"}
    lines = [": ping", "data: not json", "", f"data: {json.dumps(body, ensure_ascii=False)}", "", "data: [DONE]", ""]
    s = _stream(_lines(lines), stack)
    out = _collect(s).decode()  # a connection that fails to close does not break the finished stream
    assert out.startswith(": ping\ndata: not json\n\n") and "Grüße, 模型" in out
    assert released == [True] and s.error is None and s.usage is None


def test_an_upstream_failure_is_named_by_its_kind_and_retryable_unless_refused():
    assert str(UpstreamFailure("http_500", 500)) == "http_500" and UpstreamFailure("http_500", 500).retryable
    assert not any(UpstreamFailure(f"http_{s}", s).retryable for s in (400, 413, 422))
    assert not UpstreamFailure("unsent_TypeError", unsent=True).retryable


# the lines' generator is made in the test: one made at collection would be spent by a first run
@pytest.mark.parametrize(
    "items, ending, kwargs, error",
    [
        (['data: {"a": 1}', ""], {}, {}, "truncated"),
        (['data: {"a": 1}'], {"fail": ConnectionResetError()}, {}, "ConnectionResetError"),
        (['data: {"a": 1}'], {"fail": openai.OpenAIError("gone")}, {}, "OpenAIError"),  # no status, no timeout
        (['data: {"a": 1}', ""], {"stall": 5}, {"idle": 0.05}, "idle"),
    ],
)
def test_a_stream_cut_before_done_ends_with_an_error_event(items, ending, kwargs, error):
    s = _stream(_lines(items, **ending), **kwargs)
    out = _collect(s).decode()
    assert s.error == error and "[DONE]" not in out
    last = out.rstrip("\n").splitlines()[-1]
    event = json.loads(last[len("data: ") :])
    assert event["error"] == {
        "message": f"the stream from model 'pool-m' was cut ({error}); the reply is incomplete",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_stream_cut",
    }
    assert out.endswith("\n\n") and '\n\ndata: {"error"' in out


def test_a_cut_stream_names_a_non_ascii_model_as_text():
    s = OpenStream("模型-ü", contextlib.AsyncExitStack(), [], _lines(['data: {"a": 1}', ""]).__aiter__())
    assert "the stream from model '模型-ü' was cut (truncated)" in _collect(s).decode()


def test_a_stream_of_an_upstream_failure_reports_its_kind():
    async def failing():
        yield 'data: {"a": 1}'
        raise UpstreamFailure("http_500", 500)

    s = _stream(failing())
    assert b"upstream_stream_cut" in _collect(s) and s.error == "http_500"


def test_unless_disconnected_returns_the_work_while_the_client_stays():
    async def run():
        async def receive():
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        async def work():
            await asyncio.sleep(0.01)
            return 42

        return await unless_disconnected(receive, work())

    assert asyncio.run(run()) == 42


def test_unless_disconnected_cancels_the_work_when_the_client_leaves():
    cancelled = []

    async def run():
        messages = iter([{"type": "http.request"}, {"type": "http.disconnect"}])

        async def receive():
            await asyncio.sleep(0.01)
            return next(messages)

        async def work():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        await unless_disconnected(receive, work())

    with pytest.raises(APIError) as err:
        asyncio.run(run())
    assert err.value.status == 499 and cancelled == [True]
    assert (err.value.code, err.value.message) == ("client_closed_request", "the client closed the request")


def test_unless_disconnected_passes_the_works_error_on():
    async def run():
        async def receive():
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        async def work():
            raise APIError(502, "none")

        await unless_disconnected(receive, work())

    with pytest.raises(APIError, match="none"):
        asyncio.run(run())


def _pool(tmp_path, names):
    from cascal.llm.config import load_pool
    from cascal.serve.metrics import GatewayMetrics
    from cascal.serve.upstream import UpstreamPool

    lines = ["models:"] + [f"  - name: {n}\n    model: {n}\n    base_url: http://127.0.0.1:9/v1" for n in names]
    (tmp_path / "pool.yaml").write_text("\n".join(lines) + "\n")
    return UpstreamPool(load_pool(tmp_path / "pool.yaml"), GatewayMetrics())


def test_a_probe_ended_by_a_refusal_or_a_cancel_frees_the_half_open_slot(tmp_path):
    from cascal.serve.breaker import CircuitBreaker

    now = [0.0]
    pool = _pool(tmp_path, ["a", "b"])
    a = pool.upstreams["a"]
    a.breaker = CircuitBreaker(1, 10.0, clock=lambda: now[0])
    a.breaker.record_failure()
    now[0] = 10.0

    async def refuse(body):
        raise UpstreamFailure("http_400", 400, {"error": {"message": f"bad {KEY}"}})

    async def hang(body):
        await asyncio.sleep(10)

    async def run():
        a.complete = refuse
        with pytest.raises(APIError) as err:
            await pool.complete(["a", "b"], {}, 1)
        assert err.value.status == 400 and a.breaker.state == "half_open" and not a.breaker.probing
        # an OpenAI-style error body: its message is passed on
        assert err.value.message == f"model 'a' refused the request: bad {KEY}"
        a.complete = hang
        task = asyncio.ensure_future(pool.complete(["a", "b"], {}, 1))
        await asyncio.sleep(0.01)
        assert a.breaker.probing
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not a.breaker.probing and a.breaker.state == "half_open"
        await pool.aclose()

    asyncio.run(run())


def test_candidates_are_the_closed_models_or_the_whole_ranking(tmp_path):
    pool = _pool(tmp_path, ["a", "b", "c"])
    pool.upstreams["b"].breaker.failures = 1
    pool.upstreams["b"].breaker.record_failure()
    assert pool.candidates(["c", "b", "a"]) == ["c", "a"]
    assert pool.candidates(["b"]) == ["b"]


def test_a_model_that_answers_its_probe_is_closed_and_no_longer_reported_open(tmp_path):
    from cascal.serve.breaker import CircuitBreaker

    now = [0.0]
    pool = _pool(tmp_path, ["a", "b"])
    a = pool.upstreams["a"]
    a.breaker = CircuitBreaker(1, 10.0, clock=lambda: now[0])

    def gauge(name: str) -> float:
        return pool.metrics.registry.get_sample_value("cascal_circuit_open", {"model": name})

    async def fail(body):
        raise UpstreamFailure("http_500", 500)

    async def answer(body):
        return {"choices": [{"message": {"content": "ok"}}], "model": "a"}

    async def run():
        a.complete = fail
        with pytest.raises(APIError):
            await pool.complete(["a"], {}, 1)
        opened = (a.breaker.state, gauge("a"))
        now[0] = 10.0  # cool-down over: the next request probes it, and it answers
        a.complete = answer
        reply = await pool.complete(["a", "b"], {}, 1)
        await pool.aclose()
        return opened, reply

    opened, reply = asyncio.run(run())
    assert opened == ("open", 1.0)
    assert reply.model == "a" and a.breaker.state == "closed" and (gauge("a"), gauge("b")) == (0.0, 0.0)


def test_a_pool_built_without_breaker_settings_has_the_gateways_defaults(tmp_path):
    from cascal.llm.config import load_pool
    from cascal.serve.metrics import GatewayMetrics
    from cascal.serve.settings import GatewaySettings
    from cascal.serve.upstream import UpstreamPool

    defaults = GatewaySettings()
    pool = _pool(tmp_path, ["a", "模型"])
    breakers = {(u.breaker.failures, u.breaker.cooldown) for u in pool.upstreams.values()}
    assert breakers == {(defaults.breaker_failures, defaults.breaker_cooldown)}
    # the header values are ready without a gateway adding its key
    assert pool.header_values == {"a": "a", "模型": "%E6%A8%A1%E5%9E%8B"}
    asyncio.run(pool.aclose())
    tuned = UpstreamPool(load_pool(tmp_path / "pool.yaml"), GatewayMetrics(), breaker_failures=2, breaker_cooldown=5.0)
    assert {(u.breaker.failures, u.breaker.cooldown) for u in tuned.upstreams.values()} == {(2, 5.0)}
    asyncio.run(tuned.aclose())


def test_when_no_breaker_is_closed_every_model_is_tried_in_order(tmp_path):
    pool = _pool(tmp_path, ["a", "b", "c"])
    for u in pool.upstreams.values():
        u.breaker.failures = 1
        u.breaker.record_failure()

    async def fail(body):
        raise UpstreamFailure("http_503", 503)

    async def answer(body):
        return {"choices": [{"message": {"content": "ok"}}]}

    pool.upstreams["a"].complete = fail
    pool.upstreams["b"].complete = answer

    async def run():
        reply = await pool.complete(["a", "b", "c"], {}, 2)
        await pool.aclose()
        return reply

    reply = asyncio.run(run())
    assert [(a.model, a.error) for a in reply.attempts] == [("a", "http_503"), ("b", None)]


def test_closing_the_pool_closes_every_client_even_when_one_fails(tmp_path):
    pool = _pool(tmp_path, ["a", "b"])

    async def broken():
        raise ConnectionResetError("already gone")

    pool.upstreams["a"].aclose = broken
    asyncio.run(pool.aclose())
    assert pool.upstreams["b"].client.is_closed()
