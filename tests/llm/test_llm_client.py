"""The async chat client against a misbehaving server: retries, Retry-After, fatal errors, the cache."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sqlite3
import time
import tracemalloc
import warnings
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.llm.cache import MAX_TOKEN_COUNT, ReplyWarning, ResponseCache, cache_key, token_count
from cascal.llm.client import MAX_BODY_BYTES, ChatClient, Completion, EndpointError, RequestFailed, Stopped
from cascal.llm.config import ModelConfig, RetryPolicy
from cascal.simulate.chat_server import ChatReply, ChatRequest, ChatServer, Fault

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02, jitter=0.0)
MESSAGES = [{"role": "user", "content": "Pick one. (A) x (B) y"}]
LOGPROBS = [-0.25, -0.5, -1.5, -0.75]


def responder(req: ChatRequest) -> ChatReply:
    return ChatReply("The answer is (B).", token_logprobs=LOGPROBS)


def model(server: ChatServer, **kw: object) -> ModelConfig:
    return ModelConfig(name="pool-a", base_url=server.base_url, model="model-a", timeout=kw.pop("timeout", 2.0), **kw)  # type: ignore[arg-type]


def complete(
    cfg: ModelConfig,
    retry: RetryPolicy = FAST,
    cache: Optional[ResponseCache] = None,
    messages=MESSAGES,
    variant: int = 0,
    bound: float = 20.0,
    **client_kw: object,
) -> Completion:
    """One ``complete`` call, given up (``asyncio.TimeoutError``) after ``bound`` seconds so that a
    client that hangs fails the test instead of stalling it."""

    async def go() -> Completion:
        async with ChatClient(cfg, retry, cache=cache, **client_kw) as client:  # type: ignore[arg-type]
            return await asyncio.wait_for(client.complete(messages, variant=variant), bound)

    return asyncio.run(go())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stream", [False, True])
def test_clean_reply_carries_text_mean_logprob_and_tokens(stream):
    with ChatServer(responder) as server:
        reply = complete(model(server, stream=stream))
        assert len(server.request_log) == 1
    assert reply.text == "The answer is (B)."
    assert reply.mean_logprob == pytest.approx(sum(LOGPROBS) / len(LOGPROBS))
    assert reply.completion_tokens == len(LOGPROBS) and not reply.cached


@pytest.mark.parametrize("stream", [False, True])
def test_no_logprobs_gives_nan(stream):
    with ChatServer(lambda req: ChatReply("The answer is (A)")) as server:
        reply = complete(model(server, stream=stream))
    assert math.isnan(reply.mean_logprob)


def test_non_finite_token_logprobs_are_left_out_of_the_mean():
    reply = ChatReply("a b c", token_logprobs=[-1.0, float("-inf"), -3.0])
    with ChatServer(lambda req: reply) as server:
        got = complete(model(server))
    assert got.mean_logprob == pytest.approx(-2.0)


TRANSIENT = [
    Fault.http_500(),
    Fault.rate_limit(0.05),
    Fault.timeout(3.0),
    Fault.truncated(),
    Fault.malformed_json(),
    Fault.empty_choices(),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", TRANSIENT, ids=lambda f: f.kind)
def test_each_transient_fault_is_retried_until_a_clean_reply(fault, stream):
    # the first two requests fail, the third succeeds
    with ChatServer(responder, faults=[fault, fault]) as server:
        reply = complete(model(server, stream=stream, timeout=1.0))
        log = server.requests
    assert reply.text == "The answer is (B)."
    assert [r.fault for r in log] == [fault.kind, fault.kind, None]
    assert [r.attempt for r in log] == [0, 1, 2]


@pytest.mark.parametrize("stream", [False, True])
def test_slow_stream_is_read_to_the_end(stream):
    with ChatServer(responder, faults=[Fault.slow_stream(0.02)]) as server:
        reply = complete(model(server, stream=stream))
        assert len(server.request_log) == 1
    assert reply.text == "The answer is (B)." and reply.completion_tokens == len(LOGPROBS)


def test_retry_after_is_honoured():
    with ChatServer(responder, faults=[Fault.rate_limit(0.4), Fault.rate_limit(0.3)]) as server:
        reply = complete(model(server))
        times = [r.received_at for r in server.requests]
    assert reply.text.endswith("(B).")
    assert len(times) == 3
    # FAST's own backoff is 0.01-0.02 s: the gaps come from Retry-After
    assert times[1] - times[0] >= 0.38
    assert times[2] - times[1] >= 0.28
    assert times[1] - times[0] < 5.0


def test_retry_after_is_capped_by_the_policy():
    capped = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, jitter=0.0, max_retry_after=0.1)
    with ChatServer(responder, faults=[Fault.rate_limit(30.0)]) as server:
        start = time.monotonic()
        complete(model(server), retry=capped)
        elapsed = time.monotonic() - start
        assert len(server.request_log) == 2
    assert elapsed < 5.0


def test_persistent_server_errors_raise_request_failed_after_all_attempts():
    with ChatServer(responder, faults=lambda req: Fault.http_500()) as server:
        with pytest.raises(RequestFailed, match="no usable reply after 4 attempt"):
            complete(model(server))
        assert len(server.request_log) == FAST.max_attempts


def test_persistent_rate_limit_is_an_endpoint_error():
    with ChatServer(responder, faults=lambda req: Fault.rate_limit(0.01)) as server:
        with pytest.raises(EndpointError, match="still rate-limited"):
            complete(model(server))
        assert len(server.request_log) == FAST.max_attempts


def test_unreachable_endpoint_names_endpoint_and_model():
    port = closed_port()
    cfg = ModelConfig(name="pool-a", base_url=f"http://127.0.0.1:{port}/v1", model="model-a", timeout=1.0)
    with pytest.raises(EndpointError) as info:
        complete(cfg)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/v1" in message and "'pool-a'" in message and "'model-a'" in message
    assert "unreachable after 4 attempt" in message


def test_rejected_request_fails_at_once():
    with ChatServer(responder) as server:
        wrong = ModelConfig(name="pool-a", base_url=server.base_url + "/wrong-root", model="model-a")
        with pytest.raises(EndpointError, match="rejected with HTTP 404"):
            complete(wrong)
        assert server.request_log == []  # the request never reached the chat route


def test_backoff_waits_grow_exponentially():
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=0.5, jitter=0.0)

    async def go() -> None:
        with ChatServer(responder, faults=lambda req: Fault.http_500()) as server:
            async with ChatClient(model(server), policy, sleep=record) as client:
                with pytest.raises(RequestFailed):
                    await client.complete(MESSAGES)

    asyncio.run(go())
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.5])


def test_concurrency_bound_is_respected():
    import threading

    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(req: ChatRequest) -> ChatReply:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return ChatReply("The answer is (A)")

    async def go() -> None:
        with ChatServer(slow) as server:
            async with ChatClient(model(server, max_concurrency=3), FAST) as client:
                await asyncio.gather(*[client.complete([{"role": "user", "content": f"q{i}"}]) for i in range(15)])

    asyncio.run(go())
    assert state["peak"] == 3


def test_stopped_client_sends_nothing_new_but_serves_the_cache(tmp_path):
    async def go(server: ChatServer, cache: ResponseCache) -> Completion:
        async with ChatClient(model(server), FAST, cache=cache) as client:
            await client.complete(MESSAGES)
            client.stop()
            with pytest.raises(Stopped):
                await client.complete([{"role": "user", "content": "new prompt"}])
            return await client.complete(MESSAGES)

    with ChatServer(responder) as server, ResponseCache(tmp_path / "c.sqlite") as cache:
        again = asyncio.run(go(server, cache))
        assert len(server.request_log) == 1
    assert again.cached


def test_cache_serves_repeats_without_requests(tmp_path):
    with ChatServer(responder) as server, ResponseCache(tmp_path / "c.sqlite") as cache:
        cfg = model(server)
        first = complete(cfg, cache=cache)
        second = complete(cfg, cache=cache)
        other_variant = complete(cfg, cache=cache, variant=1)
        assert len(server.request_log) == 2  # the variant is a separate cached request
        assert not first.cached and second.cached and not other_variant.cached
        assert (second.text, second.mean_logprob, second.completion_tokens) == (
            first.text,
            first.mean_logprob,
            first.completion_tokens,
        )
        # a different sampling parameter is a different prompt
        complete(ModelConfig(**{**cfg.__dict__, "temperature": 0.5}), cache=cache)
        assert len(server.request_log) == 3
        assert len(cache) == 3


def test_failures_are_not_cached(tmp_path):
    with ChatServer(responder, faults=[Fault.http_500()] * 4) as server, ResponseCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(RequestFailed):
            complete(model(server), cache=cache)
        assert len(cache) == 0
        assert complete(model(server), cache=cache).text.endswith("(B).")
        assert len(cache) == 1


def test_cache_key_depends_on_every_part_but_the_endpoint():
    base = dict(name="pool-a", model="m", messages=MESSAGES, params={"temperature": 0.0}, variant=0)
    key = cache_key(**base)
    for change in (
        {"name": "pool-b"},
        {"model": "m2"},
        {"messages": [{"role": "user", "content": "other"}]},
        {"messages": MESSAGES + [{"role": "user", "content": "more"}]},
        {"params": {"temperature": 0.1}},
        {"params": {"temperature": 0.0, "seed": 1}},
        {"variant": 1},
    ):
        assert cache_key(**{**base, **change}) != key, change


def test_cache_survives_a_server_restart_on_another_port(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        with ChatServer(responder) as first:
            complete(model(first), cache=cache)
        with ChatServer(responder) as second:
            again = complete(model(second), cache=cache)
            assert again.cached and second.request_log == []


def test_cache_persists_and_first_write_wins(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(
            "k",
            model="m",
            base_url="u",
            request={"x": 1},
            text="first",
            mean_logprob=math.nan,
            prompt_tokens=3,
            completion_tokens=None,
        )
        cache.put(
            "k",
            model="m",
            base_url="u",
            request={"x": 1},
            text="second",
            mean_logprob=-1.0,
            prompt_tokens=3,
            completion_tokens=4,
        )
    with ResponseCache(path) as again:
        hit = again.get("k")
        assert (
            hit is not None and hit.text == "first" and math.isnan(hit.mean_logprob) and hit.completion_tokens is None
        )
        assert "k" in again and "nope" not in again and len(again) == 1
        assert list(again.requests()) == [("k", {"x": 1})]
    with pytest.raises(ValueError, match="is a directory"):
        ResponseCache(tmp_path)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a usable SQLite cache"):
        ResponseCache(tmp_path / "junk.sqlite")


# ----------------------------------------------------------------------------- round trip property
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


@pytest.fixture(scope="module")
def echo_server():
    """One server for every example: it replies with whatever ``holder["reply"]`` holds."""
    holder: dict[str, ChatReply] = {}
    with ChatServer(lambda req: holder["reply"]) as server:
        yield server, holder


@settings(max_examples=40, deadline=None)
@given(
    text=_text,
    logprobs=st.one_of(st.none(), st.lists(st.floats(-50, 0), min_size=1, max_size=12)),
    stream=st.booleans(),
)
def test_any_reply_survives_the_wire(echo_server, text, logprobs, stream):
    """Arbitrary unicode text (LaTeX, newlines, quotes, emoji) and logprobs come back unchanged,
    streamed or not."""
    server, holder = echo_server
    holder["reply"] = ChatReply(text, token_logprobs=logprobs)
    got = complete(model(server, stream=stream))
    assert got.text == text
    if logprobs is None:
        assert math.isnan(got.mean_logprob)
    else:
        assert got.mean_logprob == pytest.approx(sum(logprobs) / len(logprobs), abs=1e-9)


# ----------------------------------------------------------------------------- hostile servers
@pytest.mark.parametrize("stream", [False, True])
def test_a_trickling_server_is_cut_off_by_the_request_deadline(stream):
    """One byte every 0.05 s never trips the 1 s idle timeout; the 0.4 s deadline ends each attempt
    and the attempt is retried like a timeout (the body would take over 15 s to trickle out)."""
    with ChatServer(responder, faults=[Fault.trickle(0.05), Fault.trickle(0.05)]) as server:
        start = time.monotonic()
        reply = complete(model(server, stream=stream, timeout=1.0, request_deadline=0.4), bound=8.0)
        elapsed = time.monotonic() - start
        log = server.requests
    assert reply.text == "The answer is (B)."
    assert [r.fault for r in log] == ["trickle", "trickle", None]
    assert 0.8 <= elapsed < 4.0


@pytest.mark.parametrize("stream", [False, True])
def test_a_pause_in_the_body_longer_than_timeout_is_a_timeout(stream):
    """The body is read outside the openai client: a silence mid-body still trips ``timeout``."""
    with ChatServer(responder, faults=lambda req: Fault.trickle(1.0)) as server:
        start = time.monotonic()
        with pytest.raises(RequestFailed, match="paused for more than 0.2 s"):
            complete(
                model(server, stream=stream, timeout=0.2), retry=RetryPolicy(max_attempts=2, base_delay=0.01), bound=8.0
            )
        assert len(server.request_log) == 2
    assert time.monotonic() - start < 3.0


def test_a_server_that_always_trickles_fails_the_prompt_after_every_attempt():
    with ChatServer(responder, faults=lambda req: Fault.trickle(0.05)) as server:
        start = time.monotonic()
        with pytest.raises(RequestFailed, match="deadline of 0.3 s"):
            complete(model(server, timeout=1.0, request_deadline=0.3), bound=8.0)
        elapsed = time.monotonic() - start
        assert len(server.request_log) == FAST.max_attempts
    assert elapsed < 4.0


BAD_COUNTS = [
    -1e23,
    -(10**23),
    10**30,
    MAX_TOKEN_COUNT + 1,
    -5,
    3.5,
    float("nan"),
    float("inf"),
    "12",
    True,
    [4],
    {"n": 4},
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
def test_usage_numbers_that_are_not_token_counts_are_dropped_and_the_reply_cached(tmp_path, stream, value):
    fault = Fault.bad_usage(completion_tokens=value, prompt_tokens=value)
    with ChatServer(responder, faults=[fault]) as server, ResponseCache(tmp_path / "c.sqlite") as cache:
        cfg = model(server, stream=stream)
        with pytest.warns(ReplyWarning) as caught:
            reply = complete(cfg, cache=cache)
        messages = [str(w.message) for w in caught]
        assert any("usage.completion_tokens" in m for m in messages) and any(
            "usage.prompt_tokens" in m for m in messages
        )
        assert reply.text == "The answer is (B)." and reply.completion_tokens is None and reply.prompt_tokens is None
        assert reply.mean_logprob == pytest.approx(sum(LOGPROBS) / len(LOGPROBS))
        assert len(cache) == 1
        again = complete(cfg, cache=cache)  # a rerun pays nothing
        assert again.cached and again.text == reply.text and again.completion_tokens is None
        assert len(server.request_log) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_usage_that_is_not_an_object_is_dropped(stream):
    body = {
        "choices": [
            {
                "message": {"content": "The answer is (A)."},
                "delta": {"content": "The answer is (A)."},
                "finish_reason": "stop",
            }
        ],
        "usage": "lots",
    }
    data = (b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n") if stream else json.dumps(body).encode()
    with ChatServer(responder, faults=[Fault.raw_body(data)]) as server:
        with pytest.warns(ReplyWarning, match="dropped usage 'lots'"):
            reply = complete(model(server, stream=stream))
    assert reply.text == "The answer is (A)." and reply.completion_tokens is None


@pytest.mark.parametrize("stream", [False, True])
def test_integral_float_counts_are_read_as_counts(stream):
    with ChatServer(responder, faults=[Fault.bad_usage(completion_tokens=7.0, prompt_tokens=0)]) as server:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReplyWarning)
            reply = complete(model(server, stream=stream))
    assert reply.completion_tokens == 7 and isinstance(reply.completion_tokens, int) and reply.prompt_tokens == 0


def test_token_count_accepts_counts_only():
    assert [token_count(v) for v in (0, 12, 12.0, MAX_TOKEN_COUNT)] == [0, 12, 12, MAX_TOKEN_COUNT]
    assert all(token_count(v) is None for v in BAD_COUNTS + [None, -0.5, 1e300])


def test_the_cache_never_refuses_a_reply_over_its_counts(tmp_path):
    """Bad counts given to the cache directly are stored as NULL, and bad rows already on disk
    (written before counts were checked) are read back as unknown."""
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        with pytest.warns(ReplyWarning, match="not a token count"):
            stored = cache.put(
                "k",
                model="m",
                base_url="u",
                request={},
                text="t",
                mean_logprob=math.inf,
                prompt_tokens=-(10**23),
                completion_tokens=10**30,
            )  # type: ignore[arg-type]
        assert (stored.prompt_tokens, stored.completion_tokens) == (None, None) and math.isnan(stored.mean_logprob)
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO responses VALUES ('old', 'm', 'u', '{}', 't', -0.5, 'twelve', 3.5, 0)")
    with ResponseCache(path) as cache:
        with pytest.warns(ReplyWarning):
            old = cache.get("old")
        assert old is not None and (old.prompt_tokens, old.completion_tokens, old.mean_logprob) == (None, None, -0.5)


@pytest.mark.parametrize("stream", [False, True])
def test_impossible_logprobs_are_left_out_of_the_mean_with_a_warning(stream):
    reply = ChatReply("a b c d", token_logprobs=[-1.0, 1e300, float("nan"), -3.0])
    with ChatServer(lambda req: reply) as server:
        with pytest.warns(ReplyWarning, match="not token log-probabilities"):
            got = complete(model(server, stream=stream))
    assert got.mean_logprob == pytest.approx(-2.0)


def test_integer_logprobs_too_large_for_a_float_are_dropped():
    """JSON integers have no size limit; one with 400 digits cannot even become a float."""
    big = "9" * 400
    body = (
        '{"choices": [{"message": {"content": "The answer is (A)."}, "logprobs": {"content": '
        f'[{{"logprob": -{big}}}, {{"logprob": {big}}}, {{"logprob": -2}}]}}}}], "usage": {{"completion_tokens": {big}}}}}'
    )
    with ChatServer(responder, faults=[Fault.raw_body(body.encode())]) as server:
        with pytest.warns(ReplyWarning):
            got = complete(model(server))
    assert got.text == "The answer is (A)." and got.mean_logprob == -2.0 and got.completion_tokens is None


def test_huge_finite_logprobs_do_not_overflow_the_mean():
    reply = ChatReply("a b", token_logprobs=[-1e308, -1e308])
    with ChatServer(lambda req: reply) as server:
        got = complete(model(server))
    assert got.mean_logprob == pytest.approx(-1e308)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "fault",
    [Fault.deep_json(200_000), Fault.wrong_shape(), Fault.reset(), Fault.giant_body(50 * 2**20)],
    ids=lambda f: f.kind,
)
def test_unreadable_replies_are_failed_attempts_retried_like_a_500(fault, stream):
    with ChatServer(responder, faults=[fault]) as server:
        reply = complete(model(server, stream=stream), bound=10.0)
        log = server.requests
    assert reply.text == "The answer is (B)." and reply.completion_tokens == len(LOGPROBS)
    assert [r.fault for r in log] == [fault.kind, None]


@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_that_stays_unreadable_fails_the_prompt(stream):
    with ChatServer(responder, faults=lambda req: Fault.deep_json(200_000)) as server:
        with pytest.raises(RequestFailed, match="nested too deep"):
            complete(model(server, stream=stream))
        assert len(server.request_log) == FAST.max_attempts


@pytest.mark.parametrize("stream", [False, True])
def test_a_giant_body_is_not_read_into_memory(stream):
    """A 50 MiB reply is refused at MAX_BODY_BYTES: the client holds a bounded part of it at most
    (a plain body announces its length and is refused before any of it is read)."""
    assert MAX_BODY_BYTES < 50 * 2**20
    # the server writes the padding from one 64 KiB block: what is traced is the client's
    with ChatServer(responder, faults=[None, Fault.giant_body(50 * 2**20)]) as server:
        complete(model(server, stream=stream))  # warm up imports and the connection pool
        tracemalloc.start()
        try:
            reply = complete(model(server, stream=stream), bound=10.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [r.fault for r in server.requests] == [None, "giant_body", None]
    assert reply.text == "The answer is (B)."
    assert peak < 3 * MAX_BODY_BYTES, f"peak {peak / 2**20:.0f} MiB"


def test_a_giant_error_body_is_not_read_either():
    """Error bodies are read by the openai client itself; the cap holds for them too."""
    giant = Fault.raw_body(b'{"error": {"message": "' + b"x" * (3 * MAX_BODY_BYTES) + b'"}}', status=500)
    with ChatServer(responder, faults=[giant]) as server:
        tracemalloc.start()
        try:
            reply = complete(model(server), bound=10.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [r.fault for r in server.requests] == ["raw_body", None]
    assert reply.text == "The answer is (B)." and peak < MAX_BODY_BYTES  # the 48 MiB body was not read


@pytest.mark.parametrize("stream", [False, True])
def test_the_body_cap_is_configurable(stream):
    with ChatServer(responder, faults=[Fault.giant_body(5000)]) as server:
        with pytest.raises(RequestFailed, match="larger than 3000 bytes"):
            complete(model(server, stream=stream), retry=RetryPolicy(max_attempts=1), max_body_bytes=3000)
        assert complete(model(server, stream=stream), max_body_bytes=3000).text == "The answer is (B)."
    with pytest.raises(ValueError, match="max_body_bytes"):
        ChatClient(model(server), max_body_bytes=0)


@pytest.mark.parametrize("stream", [False, True])
def test_text_with_a_lone_surrogate_is_cached(tmp_path, stream):
    """JSON may escape a lone surrogate; such text cannot be encoded, so it is stored with U+FFFD."""
    with (
        ChatServer(lambda req: ChatReply("odd \ud800 text. The answer is (C).")) as server,
        ResponseCache(tmp_path / "c.sqlite") as cache,
    ):
        reply = complete(model(server, stream=stream), cache=cache)
        again = complete(model(server, stream=stream), cache=cache)
    assert reply.text == "odd \ufffd text. The answer is (C)." and again.cached and again.text == reply.text


@pytest.mark.parametrize("stream", [False, True])
def test_a_stream_error_event_is_a_failed_attempt(stream):
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    data = (b"data: " + json.dumps(error).encode() + b"\n\n") if stream else json.dumps(error).encode()
    with ChatServer(responder, faults=[Fault.raw_body(data)]) as server:
        assert complete(model(server, stream=stream)).text == "The answer is (B)."
        assert len(server.request_log) == 2


def test_multi_line_sse_data_and_comments_are_read():
    chunk = {
        "choices": [{"delta": {"content": "The answer is (D)."}, "finish_reason": "stop"}],
        "usage": {"completion_tokens": 5},
    }
    text = json.dumps(chunk, indent=1)  # one JSON value over several data: lines
    data = (
        b": keep-alive comment\r\n"
        + b"".join(b"data: " + line.encode() + b"\r\n" for line in text.split("\n"))
        + b"\r\n"
    )
    with ChatServer(responder, faults=[Fault.raw_body(data + b"data: [DONE]\r\n\r\n")]) as server:
        reply = complete(model(server, stream=True))
        assert len(server.request_log) == 1
    assert reply.text == "The answer is (D)." and reply.completion_tokens == 5


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "choices",
                    "message",
                    "delta",
                    "content",
                    "logprobs",
                    "logprob",
                    "usage",
                    "finish_reason",
                    "completion_tokens",
                    "prompt_tokens",
                    "error",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def raw_server():
    """One server for every example: each request gets the body ``holder["body"]`` verbatim."""
    holder: dict[str, bytes] = {}
    with ChatServer(responder, faults=lambda req: Fault.raw_body(holder["body"])) as server:
        yield server, holder


@settings(max_examples=60, deadline=None)
@given(values=st.lists(_json, min_size=1, max_size=3), stream=st.booleans())
def test_any_json_reply_gives_a_completion_or_a_failed_prompt(raw_server, values, stream):
    """Whatever JSON the server sends (any shape, NaN, huge numbers), the client returns a completion
    or raises RequestFailed: no other exception, no crash."""
    server, holder = raw_server
    if stream:
        holder["body"] = b"".join(b"data: " + json.dumps(v).encode() + b"\n\n" for v in values) + b"data: [DONE]\n\n"
    else:
        holder["body"] = json.dumps(values[0]).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReplyWarning)
        try:
            got = complete(model(server, stream=stream), retry=RetryPolicy(max_attempts=1))
        except RequestFailed:
            return
    assert isinstance(got.text, str)
    assert math.isnan(got.mean_logprob) or got.mean_logprob <= 0
    for count in (got.prompt_tokens, got.completion_tokens):
        assert count is None or (isinstance(count, int) and 0 <= count <= MAX_TOKEN_COUNT)
